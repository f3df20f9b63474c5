"""The training loop: plain tensors in, per-epoch metrics out. No Hydra, no files."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from tqdm.auto import tqdm

from dropbench import warmup
from dropbench.data import DataSplits, iterate_batches
from dropbench.tasks import Classification, Metrics, Task, Tested

#: Steps between checks for a non-finite loss: a diverged run stops within this many steps,
#: and the loop synchronises with the device only this often.
DIVERGENCE_CHECK_STEPS = 50
#: Seconds between progress calls within an epoch (FitOptions.on_progress)
PROGRESS_EVERY_S = 30.0


@dataclass
class Training:
    """What the loop trains: the model (with its regularizer), its optimizer, the per-step
    schedule and the generator of data order and augmentation (:mod:`dropbench.build` makes it)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator
    task: Task = field(default_factory=Classification)  # bound to the data (dropbench.tasks)
    #: a penalty added to every batch's loss before the backward pass (L1: lambda * sum |W|);
    #: ``train/loss`` stays the task's loss alone, as it does under L2's weight decay
    penalty: Callable[[], torch.Tensor] | None = None
    #: :func:`forward_loss` compiled for full batches (setting ``compile``, :func:`capture_step`);
    #: None: every step eager
    captured: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


@dataclass(frozen=True)
class FitOptions:
    """How long and in what batches to train and evaluate."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    mc_samples: int | None = None  # T > 1 adds test_mc/*: MC dropout over T passes
    #: N: stop once the best validation epoch is N epochs back (early stopping); None = off
    patience: int | None = None
    # (the OOD dataset of eval.ood, if any, travels with the data: DataSplits.ood)
    progress: bool = False  # tqdm bars (on a terminal)
    check_stop: Callable[[], None] = lambda: None  # raises KeyboardInterrupt on a stop request
    #: called with (epoch, step, steps, seconds into the epoch) every PROGRESS_EVERY_S during an
    #: epoch: a progress line where no tqdm bar shows (a log file, CI, a cluster job)
    on_progress: Callable[[int, int, int, float], None] | None = None


@dataclass
class FitState:
    """How far a fit has come: with the model, optimizer and RNG states, enough to resume it."""

    epoch: int = 0  # epochs completed
    history: list[Metrics] = field(default_factory=list)  # one row per completed epoch
    best_key: tuple[float, ...] | None = None  # the task's selection key of the best epoch so far
    best_epoch: int = 0
    best_state: dict = field(repr=False, default_factory=dict)  # that epoch's weights
    train_seconds: float = 0.0  # time spent in training steps (evaluation excluded)

    @property
    def epochs_since_best(self) -> int:
        """Early stopping's patience counter: epochs completed since the best one. Derived from
        ``epoch`` and ``best_epoch``, both of the checkpoint's state, so a resumed fit counts on
        from where it stopped and the counter can never disagree with them."""
        return self.epoch - self.best_epoch


@dataclass
class FitResult:
    history: list[Metrics]  # one row per epoch: epoch, train/*, val/*, epoch_time_s
    best_epoch: int  # the epoch whose weights gave the best validation accuracy
    final: Metrics  # test/* from the best-validation weights, test_last/* from the last ones
    train_seconds: float  # time spent in training steps (evaluation excluded)
    train_samples: int  # training examples processed over all epochs
    best_state: dict = field(repr=False, default_factory=dict)
    diverged: dict | None = None  # {"epoch", "metric"} when a loss became NaN/inf; final is then empty
    tested: Tested = field(default_factory=Tested)  # the best weights' test: scores, reliability bins
    #: {"epoch": last epoch trained, "best_epoch", "patience"} when early stopping ended the fit
    early_stop: dict | None = None


#: The setting ``compile``: auto = on for CUDA devices, off elsewhere (see :func:`capture_mode`).
COMPILE_CHOICES = ("auto", "off", "on")


#: The device types on which ``compile=auto`` compiles the step: none yet. On the CPU the step is
#: bound by its GEMMs, which inductor leaves to the same BLAS calls: a 3-epoch MNIST MLP's epochs
#: were slower compiled (5.6 to 5.9 s against 4.6 to 5.0), besides 2 to 11 s of compiling. On
#: CUDA a small model's step is bound by kernel launches, which CUDA graphs replay at once, so
#: "cuda" belongs here once ``scripts/gpu_step_check.py`` has shown on a GPU that it pays and
#: trains correctly; no GPU has run it yet, and an untested default must not change every run.
AUTO_COMPILES: frozenset[str] = frozenset()


def capture_mode(setting: str, device: torch.device) -> bool:
    """Whether ``compile=setting`` compiles the training step on ``device`` (``auto``: on the
    device types of :data:`AUTO_COMPILES`)."""
    return setting == "on" or (setting == "auto" and device.type in AUTO_COMPILES)


def forward_loss(model: nn.Module, task: Task, inputs: torch.Tensor, targets: torch.Tensor):
    """One batch's forward pass and the task's (loss, running-metric sum): what a step compiles."""
    return task.step(model(inputs), inputs, targets)


class CapturedStep:
    """:func:`forward_loss` under ``torch.compile``; its backward is compiled with it (AOTAutograd).

    CUDA: with CUDA graphs (``mode="reduce-overhead"``'s option). Elsewhere inductor's default.
    Random ops stay torch's own (``fallback_random``), so a compiled step draws the masks the
    eager one draws and its numbers differ only by float rounding. Shapes are static: the
    loop compiles full batches and runs an epoch's last, smaller batch eagerly, and the
    evaluation stays eager (no recompile between training and evaluation). Should the first
    call fail (a model or platform torch.compile cannot take), it warns once and every step
    runs eagerly, as with ``compile=off``.
    """

    def __init__(self, model: nn.Module, task: Task, device: torch.device) -> None:
        self.model, self.task, self.ran = model, task, False
        options = {"fallback_random": True, "triton.cudagraphs": device.type == "cuda"}
        self.compiled: Callable | None = torch.compile(
            partial(forward_loss, model, task), dynamic=False, options=options
        )

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor):
        if self.compiled is None:
            return forward_loss(self.model, self.task, inputs, targets)
        if self.ran:
            return self.compiled(inputs, targets)
        warmup.wait()
        try:
            result = self.compiled(inputs, targets)
        except Exception as error:  # compiling failed: an eager step computes the same numbers
            message = f"compile: the training step runs eagerly, torch.compile failed: {error!r:.300}"
            warnings.warn(message, stacklevel=2)
            self.compiled = None
            return forward_loss(self.model, self.task, inputs, targets)
        self.ran = True
        return result


def capture_step(model: nn.Module, task: Task, device: torch.device) -> CapturedStep:
    """The compiled training step of ``model`` (:class:`CapturedStep`)."""
    return CapturedStep(model, task, device)


def train_epoch(
    training: Training,
    data: DataSplits,
    batch_size: int,
    progress: bool = False,
    check_stop: Callable[[], None] = lambda: None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> Metrics:
    """One pass over the shuffled training split. Returns running ``train/loss`` and the task's running metric
    (``train/acc``, ``train/mse``).

    The schedule, if any, is stepped after every optimizer step.

    The running metrics are measured in training mode (regularizer on, augmented batches),
    averaged over examples. Sums stay on the device so the loop waits on a ``.item()`` only
    every ``DIVERGENCE_CHECK_STEPS``: a NaN/inf loss ends the epoch early with ``train/loss`` NaN.
    """
    model, optimizer, scheduler, task = training.model, training.optimizer, training.scheduler, training.task
    model.train()
    loss_sum = torch.zeros((), device=data.train_x.device)
    hits = torch.zeros((), device=data.train_x.device, dtype=torch.float64)
    batches = iterate_batches(data.train_x, data.train_y, batch_size, training.generator, data.augment)
    total = -(-len(data.train_y) // batch_size)
    batches = tqdm(batches, total=total, desc="train", leave=False, disable=not progress)
    start = last_report = time.perf_counter()
    for step, (inputs, targets) in enumerate(batches, 1):
        if training.captured is not None and len(targets) == batch_size:
            if data.train_x.is_cuda:  # a new CUDA-graph step: the last step's outputs are used up
                torch.compiler.cudagraph_mark_step_begin()
            loss, batch_hits = training.captured(inputs, targets)
        else:
            loss, batch_hits = forward_loss(model, task, inputs, targets)
        objective = loss if training.penalty is None else loss + training.penalty()
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(targets)
        hits += batch_hits
        check_stop()  # between steps: the last checkpoint stays consistent with the record
        if on_progress is not None and time.perf_counter() - last_report >= PROGRESS_EVERY_S:
            last_report = time.perf_counter()
            on_progress(step, total, last_report - start)
        if step % DIVERGENCE_CHECK_STEPS == 0 and not torch.isfinite(loss_sum):
            return {name: math.nan for name in task.running(0.0, 0.0, 1)}
    return task.running(loss_sum.item(), hits.item(), len(data.train_y))


def fit(
    training: Training,
    data: DataSplits,
    options: FitOptions,
    state: FitState | None = None,
    on_epoch: Callable[[Metrics], None] = lambda row: None,
    on_checkpoint: Callable[[FitState], None] | None = None,
) -> FitResult:
    """Train for ``epochs``, validating after each; test the best-validation and the last weights.

    Model selection uses the task's key on validation metrics (a classifier's accuracy, ties
    to the lower loss; a reconstruction's loss), never the test split. ``on_epoch`` receives
    each epoch's row as soon as it exists (for logging). ``options.mc_samples`` adds
    ``test_mc/*``: MC dropout over that many passes, best-validation weights; ``data.ood`` adds
    ``ood/*`` (see :meth:`dropbench.tasks.Classification.test`).

    ``state`` resumes a fit from a checkpoint (the caller restores model, optimizer, scheduler
    and RNG states); it is updated in place after every epoch, so after an interrupt it says
    how far training came. ``on_checkpoint`` is called with it after every epoch but the last.
    A NaN/inf training or validation loss stops the fit: the result has ``diverged`` set and
    no test metrics. With ``options.patience`` N, the fit stops after the epoch that leaves the
    best one N epochs back (its validation selection key has not improved for N epochs): the
    result has ``early_stop`` set, and is tested as always (best-validation and last weights).
    """
    model, task = training.model, training.task
    epochs, eval_batch_size = options.epochs, options.eval_batch_size
    state = state if state is not None else FitState()
    patience, early_stop = options.patience, None
    epoch_bar = tqdm(range(state.epoch + 1, epochs + 1), desc="epochs", disable=not options.progress)
    for epoch in epoch_bar:
        options.check_stop()
        start = time.perf_counter()
        row: Metrics = {
            "epoch": epoch,
            **train_epoch(
                training,
                data,
                options.batch_size,
                options.progress,
                options.check_stop,
                None if options.on_progress is None else partial(options.on_progress, epoch),
            ),
        }
        row["epoch_time_s"] = time.perf_counter() - start
        state.train_seconds += row["epoch_time_s"]
        if math.isfinite(row["train/loss"]):
            row.update(task.evaluate(model, data.val_x, data.val_y, eval_batch_size, "val"))
        state.history.append(row)
        bad = [name for name in ("train/loss", "val/loss") if not math.isfinite(row.get(name, math.nan))]
        if bad:
            diverged = {"epoch": epoch, "metric": bad[0]}
            return FitResult(state.history, state.best_epoch, {}, state.train_seconds, 0, {}, diverged)
        on_epoch(row)
        key = task.selection_key(row)
        if state.best_key is None or key > state.best_key:
            state.best_key, state.best_epoch = key, epoch
            state.best_state = copy.deepcopy(model.state_dict())
        state.epoch = epoch
        if patience is not None and state.epochs_since_best >= patience and epoch < epochs:
            early_stop = {"epoch": epoch, "best_epoch": state.best_epoch, "patience": patience}
            break  # no checkpoint: the result, written next, supersedes it
        if on_checkpoint is not None and epoch < epochs:
            on_checkpoint(state)
    final = task.evaluate(model, data.test_x, data.test_y, eval_batch_size, "test_last")
    model.load_state_dict(state.best_state)
    tested = task.test(model, data, eval_batch_size, options.mc_samples)
    final.update(tested.metrics)
    samples = state.epoch * len(data.train_y)
    return FitResult(
        state.history,
        state.best_epoch,
        final,
        state.train_seconds,
        samples,
        state.best_state,
        tested=tested,
        early_stop=early_stop,
    )
