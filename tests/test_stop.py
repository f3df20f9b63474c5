"""Stop requests: the first sets a flag read at safe points, the second stops at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from dropbench.stop import StopRequest, SweepStop


def test_a_first_signal_is_remembered_and_a_second_one_raises_at_once(capsys):
    stop = StopRequest()
    stop.check()  # nothing requested: a no-op
    stop.handle(signal.SIGTERM, None)
    assert "SIGTERM: stopping after the current step" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        stop.check()
    with pytest.raises(KeyboardInterrupt):
        stop.handle(signal.SIGTERM, None)


def test_installed_handlers_turn_a_real_sigterm_into_the_flag():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    stop = StopRequest()
    try:
        stop.install()
        os.kill(os.getpid(), signal.SIGTERM)  # handled at the next bytecode, here: no exception
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_a_sweep_stop_waits_for_busy_workers_and_forgets_dead_ones(tmp_path, capsys):
    worker = subprocess.Popen(  # a busy worker: on SIGTERM it records (removes its file) and goes on
        [
            sys.executable,
            "-c",
            "import os, pathlib, signal, sys, time\n"
            "marker = pathlib.Path(sys.argv[1], str(os.getpid()))\n"
            "signal.signal(signal.SIGTERM, lambda *a: marker.unlink())\n"
            "marker.write_text('run')\n"
            "while True: time.sleep(0.01)",
            str(tmp_path),
        ]
    )
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # its pid names no process now: a worker killed before it removed its file
    (tmp_path / str(dead.pid)).write_text("run")
    try:
        while not (tmp_path / str(worker.pid)).exists():
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            SweepStop(tmp_path).handle(signal.SIGINT, None)
        assert not list(tmp_path.iterdir())  # the worker recorded; the dead one was forgotten
        assert worker.poll() is None  # told, not killed: the launcher ends it once idle
        assert "SIGINT: stopping the sweep's runs after their current step" in capsys.readouterr().err
    finally:
        worker.kill()
        worker.wait()
