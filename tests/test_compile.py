"""The ``compile`` setting: a compiled training step trains the numbers an eager one trains.

The compiled test builds inductor's C++ kernels for a tiny MLP (about 10 s the first time on
2 CPU cores, a second or two from inductor's cache); the CUDA-graph test needs a GPU.
"""

import dataclasses
from functools import partial

import pytest
import torch
from fakedata import fake_splits

from dropbench import warmup
from dropbench.build import check_config, compose_config
from dropbench.errors import ConfigError
from dropbench.models import MLP
from dropbench.regularizers import Dropout
from dropbench.tasks import Classification
from dropbench.train import AUTO_COMPILES, Training, capture_mode, capture_step, forward_loss, train_epoch


@pytest.fixture(scope="module")
def data():
    return fake_splits(200, 40, val_size=40)  # 160 training examples: 5 full batches of 32


def trained(data, compiled: bool, device="cpu", epochs=2):
    """The weights and running metrics after ``epochs`` epochs of a seeded 2-layer dropout MLP."""
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(16, 16), drop=partial(Dropout, p=0.3)).to(device)
    task = Classification().bind(data)
    captured = capture_step(model, task, torch.device(device)) if compiled else None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    training = Training(
        model, optimizer, None, torch.Generator(device=device).manual_seed(0), task, None, captured
    )
    rows = [train_epoch(training, data, 32) for _ in range(epochs)]
    assert not compiled or (captured.ran and captured.compiled is not None)  # compiled, not the fallback
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, rows


def assert_same_training(eager, compiled):
    (eager_weights, eager_rows), (compiled_weights, compiled_rows) = eager, compiled
    for a, b in zip(eager_rows, compiled_rows, strict=True):
        assert a == pytest.approx(b, rel=1e-5)  # the same masks: the same accuracy, loss to rounding
    for key, weight in eager_weights.items():  # 10 Adam steps amplify rounding a little
        assert torch.allclose(weight, compiled_weights[key], rtol=1e-4, atol=1e-5), key


def test_auto_compiles_only_where_measured_to_pay_and_on_and_off_mean_what_they_say():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not capture_mode("auto", cpu)  # measured slower on the CPU
    assert capture_mode("auto", cuda) == ("cuda" in AUTO_COMPILES)  # off until a GPU has measured it
    assert capture_mode("on", cpu) and capture_mode("on", cuda)
    assert not capture_mode("off", cpu) and not capture_mode("off", cuda)


def test_the_setting_is_checked_before_any_data_and_yaml_on_off_are_accepted():
    assert check_config(compose_config([])).compile == "auto"
    assert check_config(compose_config(["compile=off"])).compile == "off"
    cfg = compose_config([])
    cfg.compile = True  # what a yaml file's bare `compile: on` reads as
    assert check_config(cfg).compile == "on"
    with pytest.raises(ConfigError, match=r"^compile='fast' is invalid; valid: auto, off, on$"):
        check_config(compose_config(["compile=fast"]))


def test_the_compiled_step_runs_full_batches_and_the_last_smaller_one_eagerly(data):
    """A stand-in for the compiled callable counts its calls: 165 examples in batches of 32 are
    5 full batches (compiled) and one of 5 (eager, no second compile for its shape)."""
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(8,))
    task, sizes = Classification().bind(data), []

    def stand_in(inputs, targets):
        sizes.append(len(targets))
        return forward_loss(model, task, inputs, targets)

    more = fake_splits(205, 40, val_size=40)
    training = Training(model, torch.optim.Adam(model.parameters()), None, torch.Generator().manual_seed(0))
    training.task, training.captured = task, stand_in
    train_epoch(training, more, 32)
    assert sizes == [32] * 5


def test_a_step_that_fails_to_compile_warns_once_and_runs_eagerly(data):
    torch.manual_seed(0)
    model = MLP(data.shape, data.num_classes, hidden=(8,))
    task = Classification().bind(data)
    step = capture_step(model, task, torch.device("cpu"))

    def no_compiler(*args):
        raise RuntimeError("no C++ compiler")

    step.compiled = no_compiler
    x, y = data.train_x[:32], data.train_y[:32]
    with pytest.warns(UserWarning, match="runs eagerly, torch.compile failed.*no C\\+\\+ compiler"):
        loss, hits = step(x, y)
    eager_loss, eager_hits = forward_loss(model, task, x, y)
    assert torch.equal(loss, eager_loss) and torch.equal(hits, eager_hits) and step.compiled is None
    assert torch.equal(step(x, y)[0], eager_loss)  # and stays eager, without another warning


def test_a_compiled_step_on_the_cpu_trains_the_eager_numbers(data):
    assert_same_training(trained(data, compiled=False), trained(data, compiled=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_cuda_graph_step_trains_the_eager_numbers(data):
    moved = {k: getattr(data, k).cuda() for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")}
    cuda = dataclasses.replace(data, **moved)
    assert_same_training(trained(cuda, False, "cuda"), trained(cuda, True, "cuda"))


def test_the_warm_up_thread_starts_once_and_leaves_torchs_generator_alone(monkeypatch):
    """Draws made while the warm-up runs, and after it ends, are the draws made without it: a
    warm-up that compiled something would restore the generator dynamo saved, undoing them."""
    monkeypatch.setattr(warmup, "_thread", [])
    torch.manual_seed(3)
    warmup.start()
    warmup.start()
    (thread,) = warmup._thread
    draws = []
    while thread.is_alive():
        draws.append(torch.rand(4))
    draws += [torch.rand(4) for _ in range(10)]
    torch.manual_seed(3)
    assert all(torch.equal(d, torch.rand(4)) for d in draws)
    warmup.wait()


def test_a_run_that_compiles_starts_the_warm_up_when_its_config_is_checked(monkeypatch):
    started = []
    monkeypatch.setattr(warmup, "start", lambda: started.append(True))
    check_config(compose_config(["compile=off"]))
    check_config(compose_config(["device=cpu"]))  # auto: off on the CPU
    assert not started
    check_config(compose_config(["compile=on", "device=cpu"]))
    assert started == [True]
