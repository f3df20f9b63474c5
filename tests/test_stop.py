"""Stop requests: the first sets a flag read at safe points, the second stops at once."""

import os
import signal

import pytest

from dropbench.stop import StopRequest


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
