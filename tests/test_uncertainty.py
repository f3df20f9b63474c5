"""Predictive uncertainty, OOD detection scores and reliability bins, on constructed cases."""

import json
import math
import shutil
from functools import partial

import pytest
import torch
from fakedata import fake_splits
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tinyrun import SMALL_MODEL, TINY, run_dirs

from dropbench.build import build_training, check_config, compose_config
from dropbench.data import DataSplits, OodImages
from dropbench.errors import ConfigError
from dropbench.metrics import (
    auroc,
    confidence_bins,
    detection_metrics,
    entropy,
    expected_calibration_error,
    fpr_at_tpr,
    predictive_uncertainty,
    reliability,
    uncertainty_metrics,
)
from dropbench.models import MLP
from dropbench.regularizers import Dropout
from dropbench.report.plots import pool_bins
from dropbench.tasks import Classification, mc_ladder, predict, stochastic_layers


def mean_log_probs(passes: torch.Tensor) -> torch.Tensor:
    return passes.logsumexp(0) - math.log(len(passes))


def test_entropy_is_zero_when_certain_and_log_k_when_uniform():
    certain = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).log()  # log 0 = -inf must not give NaN
    uniform = torch.full((1, 4), 0.25).log()
    assert entropy(torch.cat([certain, uniform])).tolist() == pytest.approx([0.0, math.log(4)])


def test_mutual_information_is_zero_when_every_pass_agrees_and_large_when_they_disagree():
    agree = torch.tensor([0.7, 0.2, 0.1]).log().expand(5, 1, 3)  # (T=5, N=1, K=3)
    one_hot = torch.eye(2).log()  # two passes, each certain of a different class
    disagree = torch.stack([one_hot[0], one_hot[1]])[:, None, :]  # (T=2, N=1, K=2)
    same = predictive_uncertainty(agree, mean_log_probs(agree))
    assert same["mi"].item() == pytest.approx(0.0, abs=1e-6)
    assert same["prob_std"].item() == pytest.approx(0.0, abs=1e-6)
    assert same["entropy"].item() == pytest.approx(same["expected_entropy"].item())
    split = predictive_uncertainty(disagree, mean_log_probs(disagree))
    # each pass is certain (expected entropy 0), their average is uniform (entropy log 2): MI log 2
    assert split["expected_entropy"].item() == pytest.approx(0.0)
    assert split["entropy"].item() == pytest.approx(math.log(2))
    assert split["mi"].item() == pytest.approx(math.log(2))
    assert split["prob_std"].item() == pytest.approx(0.5)  # the chosen class: 1 in one pass, 0 in the other


def test_prob_std_follows_the_predicted_class_over_the_passes():
    probs = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]], [[0.7, 0.3]]])  # T=3, N=1: class 0 predicted
    scores = predictive_uncertainty(probs.log(), mean_log_probs(probs.log()))
    assert scores["prob_std"].item() == pytest.approx(torch.tensor([0.9, 0.5, 0.7]).std(correction=0).item())


def test_uncertainty_metrics_average_over_all_correct_and_wrong_examples():
    scores = {"entropy": torch.tensor([0.0, 1.0, 2.0, 3.0])}
    correct = torch.tensor([True, True, False, True])
    metrics = uncertainty_metrics(scores, correct, "test")
    assert metrics == {
        "test/entropy": 1.5,
        "test/entropy_correct": pytest.approx(4 / 3),
        "test/entropy_wrong": 2.0,
    }
    none_wrong = uncertainty_metrics(scores, torch.ones(4, dtype=torch.bool), "test")
    assert math.isnan(none_wrong["test/entropy_wrong"])  # recorded as null


def test_identical_score_distributions_give_auroc_one_half():
    scores = torch.tensor([0.1, 0.4, 0.4, 0.9, 2.0])
    assert auroc(scores, scores.clone()) == 0.5
    assert auroc(torch.zeros(3), torch.zeros(7)) == 0.5  # all tied


def test_perfect_separation_gives_auroc_one_and_no_false_positives():
    inside, outside = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 0.6, 0.7, 0.8])
    assert detection_metrics(inside, outside, "mi_mc") == {"ood/auroc_mi_mc": 1.0, "ood/fpr95_mi_mc": 0.0}
    assert auroc(outside, inside) == 0.0  # the score the wrong way round
    assert fpr_at_tpr(outside, inside) == 1.0


def test_auroc_and_fpr95_with_ties_by_hand():
    positives, negatives = torch.tensor([1.0, 2.0, 2.0]), torch.tensor([0.0, 2.0])
    # pairs (pos, neg): (1,0) 1, (1,2) 0, (2,0) 1, (2,2) 1/2, twice: 4 of 6
    assert auroc(negatives, positives) == pytest.approx(4 / 6)
    # 95% of 3 positives needs all 3: threshold 1.0 flags the negative 2.0 and not 0.0
    assert fpr_at_tpr(negatives, positives) == 0.5
    # with 20 positives 95% is 19 of them: the threshold is the 19th largest, 1.0 here
    positives = torch.cat([torch.full((19,), 1.0), torch.tensor([-5.0])])
    assert fpr_at_tpr(torch.tensor([0.0, 0.5, 1.0, 3.0]), positives) == 0.5


def test_a_confidence_of_exactly_one_falls_in_the_last_bin():
    assert confidence_bins(torch.tensor([1.0, 0.0, 0.25, 0.5, 0.51]), bins=4).tolist() == [3, 0, 0, 1, 2]
    bins = reliability(torch.tensor([1.0, 1.0, 0.99]), torch.tensor([True, True, False]))
    assert bins["count"] == [0] * 14 + [3]
    assert bins["accuracy"][-1] == pytest.approx(2 / 3)
    assert bins["confidence"][-1] == pytest.approx((1 + 1 + 0.99) / 3)
    assert all(math.isnan(a) for a in bins["accuracy"][:14])  # empty bins have no accuracy
    assert expected_calibration_error(torch.tensor([1.0, 1.0]), torch.tensor([True, False])) == 0.5


def test_reliability_bins_give_back_the_ece():
    torch.manual_seed(0)
    confidence = torch.rand(200) * 0.9 + 0.1
    correct = torch.rand(200) < confidence
    bins = reliability(confidence, correct)
    count = torch.tensor(bins["count"], dtype=torch.float64)
    gap = (torch.tensor(bins["accuracy"]) - torch.tensor(bins["confidence"])).nan_to_num().abs()
    assert sum(bins["count"]) == 200
    assert float((count * gap).sum() / 200) == pytest.approx(expected_calibration_error(confidence, correct))


def splits(x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor | None) -> DataSplits:
    return DataSplits(
        x, y, x, y, x, y, [str(k) for k in range(3)], False, "test", (0.0,), (1.0,),
        ood=None if ood is None else OodImages("other", ood, "test"),
    )  # fmt: skip


def test_the_best_weights_test_records_uncertainty_reliability_and_ood_metrics():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, hidden=(16,), drop=partial(Dropout, p=0.5))
    x, y = torch.randn(30, 1, 4, 4), torch.randint(0, 3, (30,))
    tested = Classification().test(model, splits(x, y, 5 * torch.randn(20, 1, 4, 4)), 8, mc_samples=4)
    for split, scores in (
        ("test", ["entropy"]),
        ("test_mc", ["entropy", "expected_entropy", "mi", "prob_std"]),
    ):
        for score in scores:
            assert {f"{split}/{score}{part}" for part in ("", "_correct", "_wrong")} <= set(tested.metrics)
            assert tested.scores[f"{split}/{score}"].shape == (30,)
        assert sum(tested.reliability[split]["count"]) == 30
    assert "test/mi" not in tested.metrics
    detection = {k for k in tested.metrics if k.startswith("ood/")}
    assert detection == {
        f"ood/{m}_{s}" for m in ("auroc", "fpr95") for s in ("msp", "entropy", "entropy_mc", "mi_mc")
    }
    assert all(0.0 <= tested.metrics[k] <= 1.0 for k in detection)
    assert tested.scores["ood/mi_mc"].shape == (20,) and "ood/entropy" in tested.scores
    # the deterministic entropy is that of the weight-scaled prediction
    log_probs, _ = predict(model, x, 8)
    assert tested.metrics["test/entropy"] == pytest.approx(entropy(log_probs).double().mean().item())
    without = Classification().test(model, splits(x, y, None), 8, mc_samples=None)
    assert not any(k.startswith(("ood/", "test_mc/")) for k in without.metrics)
    assert list(without.reliability) == ["test"]


def test_the_mc_ladder_steps_1_2_3_5_then_1_2_5_per_decade_and_ends_at_t():
    assert mc_ladder(2) == (1, 2)
    assert mc_ladder(4) == (1, 2, 3, 4)
    assert mc_ladder(50) == (1, 2, 3, 5, 10, 20, 50)
    assert mc_ladder(30) == (1, 2, 3, 5, 10, 20, 30)
    assert mc_ladder(1000) == (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)


def test_the_mc_curve_ends_at_test_mc_exactly_and_starts_with_one_stochastic_pass():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, hidden=(16,), drop=partial(Dropout, p=0.5))
    x, y = torch.randn(30, 1, 4, 4), torch.randint(0, 3, (30,))
    data = splits(x, y, None)

    def tested(samples: int, batch_size: int = 8):
        torch.manual_seed(1)
        return Classification().test(model, data, batch_size, mc_samples=samples)

    first = tested(25)
    curve = first.mc_curve
    assert curve["t"] == [1, 2, 3, 5, 10, 20, 25]
    for name in ("test_mc/acc", "test_mc/nll", "test_mc/ece"):
        assert len(curve[name]) == 7
        assert curve[name][-1] == first.metrics[name]  # the same numbers, not merely close
    assert curve == tested(25).mc_curve  # deterministic given the seed
    assert curve["test_mc/nll"][0] != first.metrics["test/nll"]  # t = 1 is not weight scaling
    # t = 1 is one pass with the dropout layers in training mode: the first of the T passes
    whole = tested(6, batch_size=64)  # one batch: pass 1 is the first draw after the seed
    torch.manual_seed(1)
    model.eval()
    for layer in stochastic_layers(model):
        layer.train()
    with torch.no_grad():
        one = model(x).log_softmax(dim=1)
    model.eval()
    assert whole.mc_curve["test_mc/nll"][0] == float(-one.gather(1, y[:, None]).mean())
    # T = 1 is one deterministic pass (weight scaling): it has no stochastic pass, hence no curve
    assert tested(1).mc_curve == {} and tested(None).mc_curve == {}


def test_a_run_with_mc_dropout_and_an_ood_dataset_records_and_logs_it_all(dropbench, tmp_path):
    done = dropbench(
        "run", *SMALL_MODEL["mlp"], *TINY, "epochs=1", "eval.mc_samples=3", "eval.ood=fashion_mnist"
    )
    assert done.returncode == 0, done.stderr
    [run_dir] = run_dirs(tmp_path / "results")
    assert "eval.ood=fashion_mnist" in str(run_dir)  # a result setting: a folder level of its own
    record = json.loads((run_dir / "metrics.json").read_text())
    final = record["final"]
    for name in ("test/entropy", "test/entropy_wrong", "test_mc/mi", "test_mc/prob_std_correct"):
        assert name in final, name
    for name in ("auroc", "fpr95"):
        assert {f"ood/{name}_{s}" for s in ("msp", "entropy", "entropy_mc", "mi_mc")} <= set(final)
    assert record["config"]["eval.ood"] == "fashion_mnist"
    printed = done.stdout + done.stderr
    assert f"ood/auroc_mi_mc {final['ood/auroc_mi_mc']:.4f}" in printed  # printed, not only recorded
    assert record["data"]["ood"]["dataset"] == "fashion_mnist" and record["data"]["ood"]["test"] == 40
    assert sum(record["reliability"]["test_mc"]["count"]) == record["data"]["test"] == 40
    curve = record["mc_curve"]
    assert set(curve) == {"t", "test_mc/acc", "test_mc/nll", "test_mc/ece"} and curve["t"] == [1, 2, 3]
    assert all(curve[name][-1] == final[name] for name in ("test_mc/acc", "test_mc/nll", "test_mc/ece"))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    histograms = {"test/entropy", "test_mc/mi", "ood/mi_mc"}
    assert {f"{name}_per_example" for name in histograms} <= set(events.Tags()["histograms"])
    assert "ood/auroc_mi_mc" in events.Tags()["scalars"]


def test_missing_ood_files_are_the_usual_one_line_not_found_error(dropbench, data_root, tmp_path):
    root = tmp_path / "only-fashion"  # Fashion-MNIST may be installed system-wide; MNIST never is
    shutil.copytree(data_root / "FashionMNIST", root / "FashionMNIST")
    done = dropbench(
        "run",
        *SMALL_MODEL["mlp"],
        *TINY,
        "dataset=fashion_mnist",
        f"dataset.root={root}",
        "dataset.download=false",
        "eval.ood=mnist",
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropbench: error: ") and "mnist" in line and str(root) in line
    assert not list((tmp_path / "results").rglob("metrics.json"))


def test_ood_detection_is_refused_for_an_autoencoder():
    cfg = compose_config(["model=autoencoder", "reg=dropout", "eval.ood=fashion_mnist", "device=cpu"])
    with pytest.raises(ConfigError, match="^eval.ood=fashion_mnist: OOD detection ranks classifier"):
        build_training(cfg, check_config(cfg), fake_splits(16, 8, val_size=8))


def test_pooled_reliability_weighs_each_bin_by_its_examples():
    first = {"count": [0, 2, 2], "accuracy": [None, 1.0, 0.5], "confidence": [None, 0.5, 0.9]}
    second = {"count": [0, 6, 0], "accuracy": [None, 0.5, None], "confidence": [None, 0.6, None]}
    pooled = pool_bins([first, second])
    assert pooled["count"].tolist() == [0, 8, 2]
    assert pooled["accuracy"][1:].tolist() == pytest.approx([(2 + 3) / 8, 0.5])
    assert pooled["confidence"][1:].tolist() == pytest.approx([(1.0 + 3.6) / 8, 0.9])
    assert math.isnan(pooled["accuracy"][0])  # empty in every run: nothing to draw
