"""``dropbench`` end to end, as a subprocess, on tiny datasets in the real file formats (bad
inputs, which stop before training, in this process: ``dropbench_here``)."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tinyrun import SMALL_MODEL, TINY, comparable, run_dirs

SCALARS = ["train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"]


def head_commit() -> str:
    """The commit of the checkout these tests run in (CI runs them in a clone)."""
    repo = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def read_scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.parametrize("model", ["mlp", "cnn", "lstm"])
@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_run_trains_and_records_every_model_on_both_image_families(dropbench, tmp_path, model, dataset):
    done = dropbench("run", *SMALL_MODEL[model], f"dataset={dataset}", *TINY, "reg=dropout", "p=0.3")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    for part in (dataset, model, "dropout", "p0.3", "seed0"):
        assert part in run_dir.parts
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert resolved["p"] == 0.3 and resolved["reg"]["layers"]["drop"]["p"] == 0.3
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "finished"
    assert record["config"] == {
        "dataset": dataset,
        "model": model,
        "reg": "dropout",
        "optimizer": "adam",
        "schedule": "cosine",
        "p": 0.3,
        "wd": 0.0,
        "l1": 0.0,
        "max_norm": None,
        "seed": 0,
        "epochs": 2,
        "patience": None,
        "batch_size": 16,
        "lr": 0.001,
        "eval.mc_samples": None,
        "eval.ood": None,
    }
    assert [row["epoch"] for row in record["history"]] == [1, 2]
    assert record["data"]["train"] == 100 and record["data"]["val"] == 20 and record["data"]["test"] == 40
    assert record["data"]["shape"] == ([1, 28, 28] if dataset == "mnist" else [3, 32, 32])
    assert set(SCALARS + ["test_last/acc", "test_last/loss"]) <= set(record["final"])
    assert 0.0 <= record["final"]["test/acc"] <= 1.0 and record["train_samples_per_s"] > 0
    assert record["version"] and record["git_commit"].startswith(head_commit())
    scalars = read_scalars(run_dir)
    for tag in SCALARS[:4]:
        assert scalars[tag] == pytest.approx([row[tag] for row in record["history"]])
    assert scalars["test/acc"] == pytest.approx([record["final"]["test/acc"]])


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar100"])
def test_run_on_the_other_datasets(dropbench, tmp_path, dataset):
    done = dropbench("run", *SMALL_MODEL["mlp"], f"dataset={dataset}", *TINY, "epochs=1")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["data"]["classes"] == (100 if dataset == "cifar100" else 10)


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(dropbench, tmp_path):
    args = ["run", *SMALL_MODEL["mlp"], *TINY, "reg=dropout"]
    records = []
    for seed in (0, 0, 1):
        done = dropbench(*args, f"seed={seed}", f"results_dir=r{len(records)}")
        assert done.returncode == 0, done.stderr
        [run_dir] = run_dirs(tmp_path / f"r{len(records)}")
        records.append(comparable(json.loads((run_dir / "metrics.json").read_text())))
    assert records[0] == records[1]
    assert records[0]["history"] != records[2]["history"]


def test_mc_dropout_adds_test_mc_metrics(dropbench, tmp_path):
    done = dropbench("run", *SMALL_MODEL["mlp"], *TINY, "epochs=1", "eval.mc_samples=4")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    for split in ("test", "test_mc"):
        assert {f"{split}/{m}" for m in ("acc", "nll", "ece")} <= set(final)
    assert final["test_mc/nll"] != final["test/nll"]
    assert "test_mc/ece" in read_scalars(run_dir)


def test_dropout_paper_options_run_end_to_end(dropbench, tmp_path):
    done = dropbench(
        "run", *SMALL_MODEL["mlp"], *TINY, "epochs=1", "reg.input_p=0.2", "reg.form=original", "max_norm=3.0"
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert resolved["reg"]["layers"]["input_drop"] == {
        "_target_": "dropbench.regularizers.Dropout",
        "_partial_": True,
        "p": 0.2,
        "form": "original",
    }
    assert json.loads((run_dir / "metrics.json").read_text())["config"]["max_norm"] == 3.0


@pytest.mark.parametrize(
    ("model", "reg"),
    [
        ("cnn", "spatial"),
        ("lstm", "spatial"),
        ("lstm", "variational"),
        ("lstm", "naive"),
        ("cnn", "conv_dropout"),
        ("mlp", "dropconnect"),
        ("cnn", "dropconnect"),
        ("lstm", "dropconnect"),
    ],
)
def test_structured_dropouts_run_on_the_models_they_fit(dropbench, tmp_path, model, reg):
    done = dropbench(
        "run", *SMALL_MODEL[model], *TINY, "epochs=1", f"reg={reg}", "p=0.2", "eval.mc_samples=2"
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["config"]["reg"] == reg and "test_mc/acc" in record["final"]


def test_dropconnect_modes_place_the_layers_they_name(dropbench, tmp_path):
    done = dropbench(
        "run",
        *SMALL_MODEL["mlp"],
        *TINY,
        "epochs=1",
        "reg=dropconnect",
        "reg.mask=batch",
        "reg.inference=gaussian",
        "reg.samples=50",
        "eval.mc_samples=2",
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    linear = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())["reg"]["layers"]["linear"]
    assert (linear["mask"], linear["inference"], linear["samples"]) == ("batch", "gaussian", 50)


BAD_INPUTS = {
    "p=1.0": "p=1.0",
    "p=-0.1": "p=-0.1",
    "p=abc": "p='abc'",
    "model=transformer": "model='transformer'",
    "dataset=imagenet": "dataset='imagenet'",
    "reg=batchnorm": "reg='batchnorm'",
    "optimizer=lbfgs": "optimizer='lbfgs'",
    "schedule=step": "schedule='step'",
    "wd=-0.01": "wd=-0.01",
    "l1=-0.01": "l1=-0.01 is invalid; l1 must be a finite number >= 0",
    "epochs=0": "epochs=0",
    "patience=0": "patience=0 is invalid; patience must be a whole number >= 1",
    "batch_size=0": "batch_size=0",
    "device=tpu": "device='tpu'",
    "eval.mc_samples=0": "eval.mc_samples=0",
    "max_norm=-1": "max_norm=-1",
    "reg=spatial": "reg=spatial does not apply to model=mlp",
    "reg=dropconnect reg.mask=unit": "mask='unit'",
    "reg=dropconnect reg.inference=median": "inference='median'",
    "reg=variational": "reg=variational does not apply to model=mlp",
    "reg=naive": "reg=naive does not apply to model=mlp",
    "reg=conv_dropout": "reg=conv_dropout does not apply to model=mlp",
    "reg.form=gaussian": "form='gaussian'",
    "reg=none eval.mc_samples=5": "eval.mc_samples=5",
    "force=maybe": "force='maybe'",
    "dataset.train_size=0": "dataset.train_size=0",
    "dataset.train_size=100000": "dataset.train_size=100000",
    "experiment=nonsense": "experiment='nonsense'",
    "epoch=3": "epoch=3 sets nothing: no setting is named epoch; did you mean epochs?",
    "lrr=0.1": "did you mean lr?",
    "schedule.foo=1": "no setting is named schedule.foo",
    "model.hiden=[8]": "did you mean model.hidden?",
    "lr=nan": "lr=nan",
    "wd=inf": "wd=inf",
    "max_norm=nan": "max_norm=nan",
    "seed=18446744073709551616": "seed=18446744073709551616",
    "model.hidden=800": "model.hidden=800 is invalid; model.hidden must be a list, like its default "
    "[800, 800]",
    "optimizer=sgd optimizer.momentum=abc": "optimizer.momentum='abc' is invalid; optimizer.momentum must be",
    "optimizer=sgd optimizer.momentum=-1": "optimizer=SGD: Invalid momentum value: -1",
    "dataset.val_size=abc": "dataset.val_size='abc' is invalid",
    "eval.ood=imagenet": "eval.ood='imagenet' is invalid; valid: cifar10, cifar100, fashion_mnist, mnist",
    "eval.ood=mnist": "eval.ood=mnist is this run's own dataset; valid here: fashion_mnist",
    "eval.ood=cifar10": "eval.ood=cifar10 has 3x32x32 images, and dataset=mnist has 1x28x28; valid here: "
    "fashion_mnist",
    "dataset=cifar10 eval.ood=fashion_mnist": "valid here: cifar100",
    "+epoch=3": "+epoch=3 sets nothing: no setting is named epoch; did you mean epochs?",
    "++epoch=3": "++epoch=3 sets nothing: no setting is named epoch; did you mean epochs?",
    "+foo=1": "+foo=1 sets nothing: no setting is named foo",
    "+reg.foo=1": "no setting is named reg.foo",
    "+epochs=3": "+epochs=3 adds epochs, which exists already; use epochs=3",
    "reg.input_p=1.5": "reg.input_p=1.5 is out of range; reg.input_p is the drop probability",
    "dataset.train_size=abc": "dataset.train_size='abc' is invalid; dataset.train_size must be a whole",
    "model.activation=gelu": "model.activation='gelu' is invalid; valid: relu, tanh, sigmoid",
    "model.norm=layer": "model.norm='layer' is invalid; valid: none, batch",
    "reg.place=middle": "reg.place='middle' is invalid; valid: after, before",
    "reg=dropconnect reg.inference=gaussian model.activation=tanh": "reg.inference='gaussian' has a closed "
    "form for a ReLU (or no activation), not tanh; use reg.inference='gaussian_sampled'",
    "reg.layer_p=[0.3,0.5]": "reg.layer_p=[0.3, 0.5] has 2 rates and model=mlp has 1 hidden layer "
    "(model.hidden=[32]); give 1 rate, or use reg.layer_p=null",
    "reg.layer_p=[1.5]": "reg.layer_p[0]=1.5 is out of range; reg.layer_p[0] is the drop probability",
    "reg.layer_p=0.3": "reg.layer_p=0.3 is invalid; reg.layer_p must be a list",
    "reg.layer_p=[0.3] p=0.3": "p=0.3 sets nothing when reg.layer_p=[0.3] gives each hidden layer its rate",
    "reg=dropconnect reg.layer_p=[0.3]": "no setting is named reg.layer_p",
    "reg=dropconnect model.norm=batch": "model.norm=batch puts a norm between a layer and its activation",
}


@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_input_fails_with_one_line_and_leaves_no_run(dropbench_here, tmp_path, bad):
    done = dropbench_here("run", *SMALL_MODEL["mlp"], *TINY, *bad.split())
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropbench: error: "), done.stderr
    assert BAD_INPUTS[bad] in lines[0]
    assert any(hint in lines[0] for hint in ("valid", "must be", "[0, 1)", "use ", "did you mean", "--help"))
    assert "Traceback" not in done.stderr + done.stdout
    assert not list((tmp_path / "results").rglob("metrics.json")) and not run_dirs(tmp_path / "results")
    assert not list((tmp_path / "results").rglob("*"))  # not even the empty folders of the run's path


@pytest.mark.parametrize(
    "bad, named",
    [
        (["reg.input_p=1.5"], "reg.input_p=1.5"),
        (["dataset.train_size=abc"], "dataset.train_size='abc'"),
        (["model.activation=gelu"], "model.activation='gelu'"),
        (["model=cnn", "model.norm=layer"], "model.norm='layer'"),
        (["reg=dropconnect", "reg.mask=unit"], "reg.mask='unit'"),
        (["model=lstm", "model.hidden=8", "reg=variational", "reg.p_hidden=2"], "reg.p_hidden=2"),
    ],
)
def test_a_bad_group_setting_is_named_by_its_full_key_before_any_data_loads(
    dropbench_here, tmp_path, bad, named
):
    # no data there and no download: had the data loaded first, the error would be about the data
    done = dropbench_here("run", *TINY, f"dataset.root={tmp_path / 'empty'}", "dataset.download=false", *bad)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"dropbench: error: {named} is ")


@pytest.mark.parametrize(
    "bad, named",
    [
        (["reg=dropconnect", "model.norm=batch"], "model.norm=batch puts a norm between a layer and its"),
        (
            ["model=cnn", "model.channels=[4]", "model.fc=[8]", "reg=dropconnect", "model.norm=batch"],
            "model.norm=batch puts a norm between a layer and its",
        ),
        (["model=lstm", "model.hidden=8", "reg.place=before"], "reg.place=before: the LSTM"),
        (["model=autoencoder", "model.hidden=8", "reg.place=before"], "reg.place=before: the autoencoder"),
        (
            ["reg.layer_p=[0.3]"],
            "reg.layer_p=[0.3] has 1 rate and model=mlp has 2 hidden layers (model.hidden=[800, 800]); "
            "give 2 rates, or use reg.layer_p=null",
        ),
    ],
)
def test_what_the_model_refuses_fails_before_data_loads_and_leaves_no_run(dropbench, tmp_path, bad, named):
    # no data there, no download and an empty cache: had the data loaded first, the error would be about it
    done = dropbench("run", *TINY, f"dataset.root={tmp_path / 'empty'}", "dataset.download=false", *bad)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"dropbench: error: {named}") and "use " in line
    assert not list((tmp_path / "results").rglob("*"))


def test_per_layer_rates_run_end_to_end_each_list_in_a_folder_and_a_label_of_its_own(dropbench, tmp_path):
    from dropbench.report.labels import add_labels
    from dropbench.report.runs import runs_frame, scan

    recipe = [*TINY, "epochs=1", "model.hidden=[16,8]", "reg.input_p=0.2"]
    done = dropbench("run", *recipe, "reg.layer_p=[0.3,0.5]")
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    assert run_dir.parent.name.endswith(",reg.input_p=0.2,reg.layer_p=[0.3,0.5]")
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["resolved_config"]["reg"]["layer_p"] == [0.3, 0.5] and record["config"]["p"] == 0.5
    again = dropbench("run", *recipe, "reg.layer_p=[0.3,0.5]")
    assert again.returncode == 0 and f"skip {run_dir}" in again.stdout
    other = dropbench("run", *recipe, "reg.layer_p=[0.5,0.3]")
    assert other.returncode == 0, other.stderr
    assert len(run_dirs(tmp_path / "results")) == 2
    runs, problems = scan([tmp_path / "results"])
    assert not problems
    labels = add_labels(runs_frame(runs))["label"]
    assert sorted(labels) == ["dropout (layer_p=[0.3, 0.5])", "dropout (layer_p=[0.5, 0.3])"]


def test_hydras_own_settings_may_still_be_added_and_set_or_added(dropbench):
    done = dropbench("run", "--cfg", "hydra", "+hydra.job.env_set.DROPBENCH_X=1", "++epochs=3")
    assert done.returncode == 0, done.stderr
    assert "DROPBENCH_X: '1'" in done.stdout or "DROPBENCH_X: 1" in done.stdout


def test_unwritable_results_dir_is_a_one_line_error(dropbench, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    done = dropbench("run", *TINY, f"results_dir={tmp_path / 'a_file' / 'results'}")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "results_dir=" in done.stderr and "not writable" in done.stderr


def test_offline_without_data_is_a_one_line_error_naming_the_places(dropbench, tmp_path):
    empty = tmp_path / "empty"
    done = dropbench("run", *TINY, f"dataset.root={empty}", "dataset.download=false")
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "mnist" in line.lower() and str(empty) in line
    assert not list((tmp_path / "results").rglob("metrics.json"))


def test_help_lists_commands_and_hydra_flags_pass_through(dropbench):
    top = dropbench("--help")
    assert top.returncode == 0 and "run" in top.stdout
    unknown = dropbench("train")
    assert unknown.returncode != 0 and "valid commands: run" in unknown.stderr
    run_help = dropbench("run", "--help")
    assert run_help.returncode == 0
    configs = Path(__file__).resolve().parent.parent / "configs"
    for group in ("model", "reg", "dataset"):
        choices = ", ".join(sorted(p.stem for p in (configs / group).glob("*.yaml")))
        assert f"{group}: {choices}" in run_help.stdout
    job = dropbench("run", "--cfg", "job", "model=cnn", "p=0.2")
    assert job.returncode == 0
    assert "_target_: dropbench.models.CNN" in job.stdout and "p: 0.2" in job.stdout
