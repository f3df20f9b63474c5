"""``dropbench`` command line: dispatches subcommands; ``run`` hands its arguments to Hydra."""

from __future__ import annotations

import os
import sys
import time

from dropbench import __version__
from dropbench.errors import DropbenchError
from dropbench.preflight import check_overrides, config_dir

USAGE = """\
usage: dropbench <command> [arguments]

Train MLP, CNN, ResNet and LSTM models under dropout-family regularizers and compare them.

commands:
  run       train one run, or a sweep with -m; arguments are Hydra overrides
              dropbench run model=mlp reg=dropout p=0.5
              dropbench run -m reg=none,dropout p=0.1,0.3,0.5 seed=0,1,2
            'dropbench run --help' lists every option and config group
  report    tables (Markdown, CSV, LaTeX) and figures comparing the finished runs under PATH
              dropbench report results/ [--out DIR] [--metric error|acc] [--split test|test_last|test_mc]
            'dropbench report --help' describes every option

options:
  -h, --help     show this message
  --version      show the version
"""


#: Path settings whose ``~`` the shell left unexpanded (``results_dir='~/x'``, or ``=~/x``)
PATH_KEYS = ("results_dir", "dataset.root", "dataset.cache_dir")


def expand_home(argument: str) -> str:
    """``results_dir=~/x`` as ``results_dir=/home/me/x``: Hydra would make a folder named ``~``."""
    key, sep, value = argument.partition("=")
    if sep and key in PATH_KEYS and value.startswith("~"):
        return f"{key}={os.path.expanduser(value)}"
    return argument


def run(arguments: list[str]) -> int:
    """``dropbench run [hydra arguments]``: check what Hydra would report badly, then run Hydra."""
    import hydra  # imported here so `dropbench --help` stays instant

    from dropbench.app import COMMAND_STARTED, task

    configs = config_dir()
    arguments = [expand_home(argument) for argument in arguments]
    try:
        check_overrides(arguments, configs)
    except DropbenchError as error:
        print(f"dropbench: error: {error}", file=sys.stderr)
        return 2
    # when this command started, for its runs (and a launcher's workers, which inherit it)
    os.environ.setdefault(COMMAND_STARTED, str(time.time()))
    sys.argv = ["dropbench run", *arguments]  # Hydra parses sys.argv
    try:
        hydra.main(config_path=str(configs), config_name="config", version_base="1.3")(task)()
    except KeyboardInterrupt:  # the run has said what it saved; no traceback
        return 130  # the shell's code for "stopped by SIGINT"
    return 0


def report(arguments: list[str]) -> int:
    """``dropbench report PATH... [options]``: tables and figures from the runs' metrics.json."""
    from dropbench.report import main as report_main  # pandas and matplotlib load only for this command

    return report_main(arguments)


COMMANDS = {"run": run, "report": report}


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments or arguments[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if arguments[0] == "--version":
        print(f"dropbench {__version__}")
        return 0
    command = COMMANDS.get(arguments[0])
    if command is None:
        print(
            f"dropbench: error: unknown command {arguments[0]!r}; valid commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return command(arguments[1:])


if __name__ == "__main__":
    sys.exit(main())
