"""Stop requests (Ctrl-C, SIGTERM) that always stop a run, at a point where stopping is safe.

Raising ``KeyboardInterrupt`` from a signal handler lands wherever Python happens to be; inside
a weakref callback (torch.compile's caches run them) Python only prints "Exception ignored in"
and goes on, so a SIGTERM could be swallowed and training continue. Instead the first signal
sets a flag that the training loop reads between steps and epochs (:meth:`StopRequest.check`),
and a second signal raises at once, for a run stuck where no check comes.

In a sweep whose runs a launcher's workers train (joblib's, on this machine), a stop sent to the
sweep's command is passed on: :class:`SweepStop` tells each worker busy with a run, waits until
every one has recorded its stop, and only then lets the launcher end (which kills its workers,
by then idle). A worker marks its run busy (:func:`busy_with`) in a folder the command names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Set by a sweep's command for its workers: its process id, and the folder where each worker
#: busy with a run keeps a file named by its own process id, holding the run folder's path
COMMAND_PID = "DROPBENCH_SWEEP_COMMAND"
BUSY = "DROPBENCH_SWEEP_BUSY"
#: Seconds between two looks at the busy workers while the command waits for them
POLL_S = 0.05


def is_worker() -> bool:
    """Whether this process is a worker the sweep's command started (joblib's, submitit's local
    ones): a SLURM job runs elsewhere, where the command cannot send it a signal."""
    command = os.environ.get(COMMAND_PID)
    return command is not None and os.getppid() == int(command)


class StopRequest:
    """The process's stop flag; :meth:`install` makes SIGINT and SIGTERM set it."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only: Python allows handlers nowhere else).

        A worker ignores SIGINT: a terminal's Ctrl-C reaches every process of its group, and the
        command passes it on as SIGTERM, so that it counts once, not twice (which stops at once).
        """
        if threading.current_thread() is threading.main_thread():
            worker = is_worker()
            for number in SIGNALS:
                ignored = worker and number == signal.SIGINT
                signal.signal(number, signal.SIG_IGN if ignored else self.handle)

    def handle(self, number: int, frame) -> None:
        if self.signal is not None:  # the second request: stop now, wherever this is
            raise KeyboardInterrupt
        self.signal = number
        name = signal.Signals(number).name
        print(
            f"dropbench: {name}: stopping after the current step (send it again to stop at once)",
            file=sys.stderr,
        )

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was requested: call where stopping loses nothing."""
        if self.signal is not None:
            raise KeyboardInterrupt


#: The one stop flag of this process (signal handlers are per process).
STOP = StopRequest()


@contextlib.contextmanager
def busy_with(run: Path) -> Iterator[None]:
    """While this worker trains ``run``: its file in the command's busy folder, so that the
    command passes a stop on to it and waits for its record. Nothing outside a worker."""
    folder = os.environ.get(BUSY)
    if folder is None or not is_worker():
        yield
        return
    marker = Path(folder) / str(os.getpid())
    marker.write_text(str(run))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


class SweepStop:
    """The stop handler of a sweep's command while workers train its runs (see the module's doc).

    The first SIGINT or SIGTERM is passed on as SIGTERM to every busy worker, also to one that
    takes a run while the command waits; the command returns to the launcher, raising
    KeyboardInterrupt, once none is busy. A second signal passes the stop on again (a worker
    then stops at once) and raises at once.
    """

    def __init__(self, busy: Path) -> None:
        self.busy = busy
        self.signal: int | None = None

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                signal.signal(number, self.handle)

    def workers(self) -> set[int]:
        """The process ids of the busy workers."""
        return {int(marker.name) for marker in self.busy.glob("[0-9]*")}

    def tell(self, pid: int, number: int = signal.SIGTERM) -> None:
        """Send worker ``pid`` signal ``number`` (0: only see whether it is alive); forget a
        worker that died without removing its file."""
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            (self.busy / str(pid)).unlink(missing_ok=True)

    def handle(self, number: int, frame) -> None:
        if self.signal is not None:
            for pid in self.workers():
                self.tell(pid)
            raise KeyboardInterrupt
        self.signal = number
        print(
            f"dropbench: {signal.Signals(number).name}: stopping the sweep's runs after their current step "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        told: set[int] = set()
        while workers := self.workers():
            for pid in workers:
                self.tell(pid, 0 if pid in told else signal.SIGTERM)
                told.add(pid)
            time.sleep(POLL_S)
        raise KeyboardInterrupt
