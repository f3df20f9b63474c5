"""The benchmark grid: which (model, dataset, regularizer) configurations, at what size, built how.

A *group* is one model on one dataset; its configurations differ only in the regularizer, so
they share the data, the bound and the rounds in which they are timed (:mod:`.measure`). The
grid's groups run every regularizer at p = 0.5; one more group, ``per_p``, runs the MLP on
MNIST with dropout and per-example DropConnect at every p of issue 15's targets.
Everything is built as ``dropbench run`` builds it: the real config, composed with Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from benchkit.dropconnect import P_VALUES, QUICK_P_VALUES
from dropbench.build import build_training as build_run_training
from dropbench.build import check_config, compose_config, load_data
from dropbench.combinations import invalid_pairs
from dropbench.data import DataSplits
from dropbench.schema import Knobs
from dropbench.train import Training

MODELS = ("mlp", "cnn", "lstm")
#: one dataset per family: 28 x 28 x 1 and 32 x 32 x 3
DATASETS = ("mnist", "cifar10")
#: (reg, DropConnect mask) in the order they are timed within a round; none first, the reference
REGS = (
    ("none", None),
    ("dropout", None),
    ("dropconnect", "batch"),
    ("dropconnect", "example"),
    ("spatial", None),
    ("variational", None),
)
BATCH_SIZE = 128
DROP_P = 0.5  # every regularizer's drop probability (dropbench's default)
#: training examples of every group but MLP on MNIST, which runs on the full 55,000
SUBSET = 10_000
#: --quick: a few batches per epoch
QUICK_TRAIN = 384
#: --quick: small models, so the smoke test stays short (the full run uses the configs' sizes)
QUICK_MODELS = {
    "mlp": ["model.hidden=[64]"],
    "cnn": ["model.channels=[8,16]", "model.fc=[32]"],
    "lstm": ["model.hidden=16"],
}
#: --quick: all valid pairs on MNIST, and the CNN on CIFAR-10 for the augmented baseline
QUICK_GROUPS = (("mlp", "mnist"), ("cnn", "mnist"), ("lstm", "mnist"), ("cnn", "cifar10"))
QUICK_CIFAR_REGS = ("none", "dropout")
#: groups that also train the dropout model through a torchvision DataLoader
BASELINE_GROUPS = (("mlp", "mnist"), ("cnn", "cifar10"))
#: the group measured at every p (dropout and per-example DropConnect), if its pair is measured
PER_P_GROUP = ("mlp", "mnist")


@dataclass(frozen=True)
class Config:
    """One row of the benchmark."""

    model: str
    dataset: str
    reg: str
    mask: str | None = None  # DropConnect: "batch" (one mask per mini-batch) or "example"
    p: float = DROP_P  # reg=none ignores it (and keeps the default)

    @property
    def label(self) -> str:
        mask = f"-{self.mask}" if self.mask else ""
        return f"{self.model}/{self.dataset}/{self.reg}{mask}" + (f" p={self.p}" if self.p != DROP_P else "")

    def overrides(self) -> list[str]:
        chosen = [f"model={self.model}", f"dataset={self.dataset}", f"reg={self.reg}", f"p={self.p}"]
        return chosen + ([f"reg.mask={self.mask}"] if self.mask else [])


@dataclass
class Group:
    """One model on one dataset, with the configurations measured together."""

    model: str
    dataset: str
    configs: list[Config]
    train_size: int | None  # None: the whole training split
    common: list[str] = field(default_factory=list)  # overrides shared by every configuration
    kind: str = "grid"  # or "per_p": the configurations of PER_P_GROUP at every p

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}" + (f" ({self.kind})" if self.kind != "grid" else "")

    @property
    def has_baseline(self) -> bool:
        regs = {c.reg for c in self.configs}
        return self.kind == "grid" and (self.model, self.dataset) in BASELINE_GROUPS and "dropout" in regs


def valid_configs(model: str, dataset: str) -> list[Config]:
    """Every regularizer that applies to ``model`` (dropbench.combinations), with DropConnect's masks."""
    configs = []
    for reg, mask in REGS:
        if (model, reg) in invalid_pairs():
            continue
        if model == "lstm" and mask == "example":
            continue  # the LSTM's DropConnect is weight drop: one mask per batch, reg.mask unused
        configs.append(Config(model, dataset, reg, mask))
    return configs


def select(values: tuple[str, ...], wanted: set[str]) -> list[str]:
    """``values`` filtered by ``wanted`` when it names any of them, else all of them."""
    chosen = [v for v in values if v in wanted]
    return chosen or list(values)


def plan(only: set[str], quick: bool, device: str, subset: int = SUBSET) -> list[Group]:
    """The groups to measure. ``only`` may name models, datasets and regularizers (they intersect);
    reg=none and reg=dropout always stay, since the ratios are taken against them."""
    regs = set(select(tuple(r for r, _ in REGS), only)) | {"none", "dropout"}
    pairs = [(m, d) for m in select(MODELS, only) for d in select(DATASETS, only)]
    if quick:
        pairs = [p for p in pairs if p in QUICK_GROUPS]
    groups = []
    for model, dataset in pairs:
        keep = regs & set(QUICK_CIFAR_REGS) if quick and dataset == "cifar10" else regs
        configs = [c for c in valid_configs(model, dataset) if c.reg in keep]
        size = QUICK_TRAIN if quick else None if (model, dataset) == ("mlp", "mnist") else subset
        groups.append(Group(model, dataset, configs, size, common_overrides(model, size, quick, device)))
    if PER_P_GROUP in pairs and "dropconnect" in regs:
        groups.append(per_p_group(groups[pairs.index(PER_P_GROUP)], quick))
    return groups


def per_p_group(grid: Group, quick: bool) -> Group:
    """Dropout and per-example DropConnect at every p (--quick: two), sized as ``grid``."""
    configs = []
    for p in QUICK_P_VALUES if quick else P_VALUES:
        configs += [Config(grid.model, grid.dataset, "dropout", p=p)]
        configs += [Config(grid.model, grid.dataset, "dropconnect", "example", p)]
    return Group(grid.model, grid.dataset, configs, grid.train_size, grid.common, kind="per_p")


def common_overrides(model: str, train_size: int | None, quick: bool, device: str) -> list[str]:
    """Overrides shared by a group's configurations (and by the start-up and sweep runs)."""
    overrides = [
        f"batch_size={BATCH_SIZE}",
        f"p={DROP_P}",
        f"device={device}",
        # checksums are not what is measured; the parsed-tensor cache is keyed by this setting,
        # and the shared CIFAR-10 copy needs it (../shared/data/README.md)
        "dataset.verify=false",
        "dataset.download=false",
        f"dataset.train_size={'null' if train_size is None else train_size}",
    ]
    if quick:
        overrides += ["dataset.val_size=20", *QUICK_MODELS[model]]
    return overrides


@dataclass
class Built:
    """A configuration's checked knobs and what ``train_epoch`` trains (``dropbench.build``)."""

    cfg: DictConfig
    knobs: Knobs
    training: Training

    @property
    def model(self):
        return self.training.model


def build_config(overrides: list[str], data: DataSplits | None = None) -> tuple[Built, DataSplits]:
    """Build one configuration; loads the data unless the group's ``data`` is given."""
    cfg = compose_config(overrides)
    knobs = check_config(cfg)
    if data is None:
        data = load_data(cfg, knobs)
    return Built(cfg, knobs, build_run_training(cfg, knobs, data)), data
