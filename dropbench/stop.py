"""Stop requests (Ctrl-C, SIGTERM) that always stop a run, at a point where stopping is safe.

Raising ``KeyboardInterrupt`` from a signal handler lands wherever Python happens to be; inside
a weakref callback (torch.compile's caches run them) Python only prints "Exception ignored in"
and goes on, so a SIGTERM could be swallowed and training continue. Instead the first signal
sets a flag that the training loop reads between steps and epochs (:meth:`StopRequest.check`),
and a second signal raises at once, for a run stuck where no check comes.
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The process's stop flag; :meth:`install` makes SIGINT and SIGTERM set it."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM (main thread only: Python allows handlers nowhere else)."""
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                signal.signal(number, self.handle)

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
