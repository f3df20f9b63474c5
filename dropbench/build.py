"""The public build API: a config from overrides, and from it data, model, regularizer,
optimizer and schedule, exactly as ``dropbench run`` builds them.

The Hydra task (:mod:`dropbench.app`), the benchmarks and the tests all build through here:

    cfg = compose_config(["model=cnn", "reg=spatial", "p=0.2"])
    knobs = check_config(cfg)
    data = load_data(cfg, knobs)
    training = build_training(cfg, knobs, data)

yaml ``_target_`` is the registry; this module (with :mod:`dropbench.placement`, which places
the reg's layers, and the entry point) is the only one that reads a DictConfig. Everything it
returns is plain typed objects.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from torch import nn

from dropbench import warmup
from dropbench.combinations import check_combination
from dropbench.data import SOURCE_SHAPES, DataSplits, OodImages, load_ood_images
from dropbench.errors import ConfigError, DataError
from dropbench.placement import (
    check_idle_settings,
    check_reg_layers,
    check_replaced_settings,
    instantiate_group,
    instantiate_model,
)
from dropbench.preflight import config_dir
from dropbench.regularizers import (
    apply_max_norm,
    hidden_weights,
    l1_penalty,
    l2_parameter_groups,
    penalised_weights,
)
from dropbench.schedules import per_step
from dropbench.schema import DEFINING, GROUPS, Knobs, check_knobs, dataset_names, declared_defaults
from dropbench.tasks import stochastic_layers, task_of
from dropbench.train import Training, capture_mode, capture_step


def compose_config(overrides: list[str]) -> DictConfig:
    """The config ``dropbench run OVERRIDES`` would run (Hydra's compose API, no run folder)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def check_config(cfg: DictConfig, choices: dict[str, str] | None = None) -> Knobs:
    """The checked knobs of ``cfg``; with ``choices`` (the group choices, as Hydra's runtime
    choices give them) it also refuses an invalid model x reg pair, a setting the reg's layers
    refuse or that per-layer values replace, and whatever the model refuses (:func:`check_model`)."""
    knobs = check_knobs(OmegaConf.to_container(cfg, resolve=True))
    if choices is not None:
        check_combination(choices["model"], choices["reg"])
        check_group_types(cfg, choices)
        check_reg_layers(cfg)
        check_replaced_settings(cfg, declared_defaults(choices))
        check_model(cfg, knobs, choices)
    if capture_mode(knobs.compile, knobs.device):
        warmup.start()  # torch.compile's one-time costs while the data loads
    make_optimizer(cfg, [torch.zeros(1, requires_grad=True)], knobs.lr)  # its settings, before any data
    if knobs.ood is not None:
        check_ood(cfg.dataset.name, cfg.dataset.source, knobs.ood)
    return knobs


def dataset_file(name: str) -> dict[str, Any]:
    """``configs/dataset/NAME.yaml`` as written (its own settings, not config.yaml's shared ones)."""
    return OmegaConf.to_container(OmegaConf.load(config_dir() / "dataset" / f"{name}.yaml"))


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape else "unknown-shape"


def check_ood(own: str, source: str, ood: str) -> None:
    """``eval.ood`` names another dataset whose images have the run's image shape (declared by
    their sources), so that the model can read them; before any data is loaded."""
    shape = SOURCE_SHAPES.get(source)
    fitting = [
        name
        for name in dataset_names()
        if name != own and SOURCE_SHAPES.get(dataset_file(name).get("source")) == shape
    ]
    if ood in fitting:
        return
    if ood == own:
        why = "is this run's own dataset"
    else:
        theirs = SOURCE_SHAPES.get(dataset_file(ood).get("source"))
        why = f"has {shape_text(theirs)} images, and dataset={own} has {shape_text(shape)}"
    raise ConfigError(f"eval.ood={ood} {why}; valid here: {', '.join(fitting) or 'none'}")


def kind(value: Any) -> str | None:
    """The kind of a yaml default a setting must keep: a number, a list, text or a boolean."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str) and "${" not in value:
        return "text"
    return None  # null or an interpolation: no kind to keep


def check_group_types(cfg: DictConfig, choices: dict[str, str]) -> None:
    """Each setting of the chosen group files keeps the kind of its default (``model.hidden=800``
    for ``[800, 800]`` is a one-line error naming the key), before any data is loaded."""
    shared = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"), resolve=False)
    for group in (s.key for s in GROUPS if s.role in DEFINING):
        path = config_dir() / group / f"{choices[group]}.yaml"
        # the group file's settings, and those config.yaml gives every choice (dataset.val_size)
        defaults = {
            **(shared.get(group) or {}),
            **OmegaConf.to_container(OmegaConf.load(path), resolve=False),
        }
        given = OmegaConf.to_container(cfg[group], resolve=True)
        for key, default in defaults.items():
            wanted, value = kind(default), given.get(key)
            if key.startswith("_") or wanted is None or value is None or kind(value) == wanted:
                continue
            name = f"{group}.{key}"
            raise ConfigError(
                f"{name}={value!r} is invalid; {name} must be {wanted}, like its default {default!r}"
            )


def make_optimizer(cfg: DictConfig, params: Any, lr: float) -> torch.optim.Optimizer:
    """The optimizer group's optimizer over ``params``; a bad setting (optimizer.momentum=abc)
    is a one-line ConfigError naming the group."""
    factory = instantiate_group("optimizer", cfg.optimizer)
    try:
        return factory(params, lr=lr)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"optimizer={cfg.optimizer._target_.rsplit('.', 1)[-1]}: {error}") from None


def load_data(cfg: DictConfig, knobs: Knobs) -> DataSplits:
    """The dataset's splits as tensors on the run's device, with ``eval.ood``'s test images."""
    data = instantiate_group("dataset", cfg.dataset, device=knobs.device)
    if knobs.ood is not None:
        data.ood = load_ood(cfg, knobs.ood, data, knobs.device)
    return data


#: The run's own settings of where data lives and whether to trust it, which its OOD dataset shares.
SHARED_DATA_SETTINGS = ("root", "cache_dir", "download", "verify")


def load_ood(cfg: DictConfig, name: str, data: DataSplits, device: torch.device) -> OodImages:
    """The OOD dataset's test images, found where the run's data is found (``dataset.root``...)
    and normalised with the run's training statistics; a shape the model cannot read is a
    DataError before any training."""
    own = dataset_file(name)
    shared = {key: cfg.dataset[key] for key in SHARED_DATA_SETTINGS}
    images = load_ood_images(
        name=name,
        source=own["source"],
        system_dirs=own.get("system_dirs") or {},
        install_hint=own.get("install_hint"),
        mean=data.mean,
        std=data.std,
        device=device,
        **shared,
    )
    if tuple(images.x.shape[1:]) != data.shape:  # the sources' declared shapes were checked already
        found = shape_text(tuple(images.x.shape[1:]))
        raise DataError(f"eval.ood={name}: its images are {found}, the run's {shape_text(data.shape)}")
    return images


def check_model(cfg: DictConfig, knobs: Knobs, choices: dict[str, str]) -> None:
    """Build the model once on the meta device (no memory, no random numbers drawn) at the image
    shape its dataset's source declares, so that what the model refuses fails before any data
    loads: a combination of settings (``model.norm=batch`` with DropConnect's layers, which
    apply the activation themselves; ``reg.place=before`` on a model whose drop layers have one
    place), a ``reg.layer_p`` of the wrong length, an evaluation its task has not, a reg setting
    that only layers the model never builds would take (:func:`check_idle_settings`). The model
    is the one place that knows what it can build; nothing here repeats its rules."""
    shape = SOURCE_SHAPES.get(cfg.dataset.source)
    if shape is None:
        return  # no declared shape: the model is checked when it is built
    built: set[str] = set()
    with torch.device("meta"):
        model = instantiate_model(cfg, shape, num_classes=10, built=built)  # no check depends on the count
    check_idle_settings(cfg, built, declared_defaults(choices), choices["reg"])
    check_task(model, knobs)


def build_model(cfg: DictConfig, knobs: Knobs, data: DataSplits) -> nn.Module:
    """The model with its regularizer in place, seeded by the run's seed, on the run's device."""
    torch.manual_seed(knobs.seed)  # weight init and regularizer masks
    model = instantiate_model(cfg, data.shape, data.num_classes).to(knobs.device)
    check_task(model, knobs)
    return model


def check_task(model: nn.Module, knobs: Knobs) -> None:
    """The evaluations asked for (MC dropout, OOD detection) are ones this model can give."""
    if knobs.mc_samples and not task_of(model).supports_mc:
        raise ConfigError(
            f"eval.mc_samples={knobs.mc_samples}: MC averaging is for classifiers, and this model's task "
            f"is {task_of(model).name}; use eval.mc_samples=null"
        )
    if knobs.ood is not None and not task_of(model).supports_ood:
        raise ConfigError(
            f"eval.ood={knobs.ood}: OOD detection ranks classifier predictions, and this model's task "
            f"is {task_of(model).name}; use eval.ood=null"
        )
    if knobs.mc_samples and not stochastic_layers(model):
        raise ConfigError(
            f"eval.mc_samples={knobs.mc_samples} needs a regularizer that draws masks, and this run's "
            "reg draws none; use e.g. reg=dropout, or eval.mc_samples=null"
        )


def constrain_max_norm(model: nn.Module, optimizer: torch.optim.Optimizer, c: float) -> None:
    """Project every hidden unit's incoming weights onto ||w|| <= c after every step (the Dropout paper)."""
    try:
        groups = hidden_weights(model)
    except ValueError as error:
        raise ConfigError(f"max_norm={c}: {error}; use max_norm=null") from None
    optimizer.register_step_post_hook(lambda *_: apply_max_norm(groups, c))


def build_training(cfg: DictConfig, knobs: Knobs, data: DataSplits) -> Training:
    """Model (with its regularizer), optimizer over L2 parameter groups, per-step schedule,
    generator, with ``l1`` > 0 the L1 penalty as a loss term (:mod:`dropbench.regularizers.l1`),
    and where ``compile`` is on, the compiled step (:func:`dropbench.train.capture_step`)."""
    model = build_model(cfg, knobs, data)
    optimizer = instantiate_group("optimizer", cfg.optimizer)(
        l2_parameter_groups(model, knobs.wd), lr=knobs.lr
    )
    if knobs.max_norm is not None:
        constrain_max_norm(model, optimizer, knobs.max_norm)
    total_steps = knobs.epochs * math.ceil(len(data.train_y) / knobs.batch_size)
    scheduler = per_step(optimizer, instantiate_group("schedule", cfg.schedule), total_steps)
    generator = torch.Generator(device=knobs.device).manual_seed(knobs.seed)  # shuffling, augmentation
    penalty = partial(l1_penalty, penalised_weights(model), knobs.l1) if knobs.l1 > 0 else None
    task = task_of(model).bind(data)
    captured = capture_step(model, task, knobs.device) if capture_mode(knobs.compile, knobs.device) else None
    return Training(model, optimizer, scheduler, generator, task, penalty, captured)
