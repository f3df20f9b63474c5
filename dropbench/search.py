"""``hydra/sweeper=search``: Hydra's Optuna sweeper, with a study that survives the command.

The study lives in ``optuna.db`` in the sweep folder (``configs/hydra/sweeper/search.yaml``), so
running the same command again continues it instead of starting over. Before the sweeper
starts, :class:`ContinueStudy` opens the stored study and sets the sweeper up to go on:

- ``n_trials`` counts the study's completed trials in all: the sweeper asks only for those still
  missing (none: it only writes ``optimization_results.yaml`` again); a failed trial (a stopped
  or invalid run) does not count, so another takes its place;
- a trial that a killed search left running is asked again with the same p and wd, so that its
  run resumes from its checkpoint (its old entry is marked failed: nothing will tell it);
- the sampler's seed moves on by the number of trials the study holds, so that a continued
  search does not draw again the points its earlier trials drew (the same command on the same
  study still asks the same trials).

The runs of finished trials are never retrained: a trial's run folder is named by its values
like any run's, and a finished run is skipped.

A Hydra callback rather than a sweeper of dropbench's own, since Hydra takes sweepers only from
its ``hydra_plugins`` package; it runs before Hydra makes the sweeper from the same config.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, read_write

#: The sweeper this continues: Hydra's Optuna sweeper
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


class ContinueStudy(Callback):
    """Continues the Optuna study of ``hydra/sweeper=search`` that its storage holds (see the module)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") != OPTUNA_SWEEPER or sweeper.get("storage") is None:
            return  # a grid, or a study kept in memory only
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)  # where the db is made
        done, held = continue_study(sweeper)
        with read_write(sweeper):
            sweeper.n_trials = max(0, sweeper.n_trials - done)
            if sweeper.sampler.get("seed") is not None:
                sweeper.sampler.seed += held


def continue_study(sweeper: DictConfig) -> tuple[int, int]:
    """Open (or create) the stored study and ask again what a killed search left running;
    returns how many of its trials completed (they count toward ``n_trials``) and how many it
    held."""
    import optuna  # only for a search
    from optuna.trial import TrialState

    direction = sweeper.direction
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper says it opens the study
    try:
        study = optuna.create_study(
            study_name=sweeper.study_name,
            storage=sweeper.storage,
            directions=list(direction) if isinstance(direction, ListConfig) else [direction],
            load_if_exists=True,
        )
    finally:
        optuna.logging.set_verbosity(verbosity)
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
            with warnings.catch_warnings():  # enqueue_trial is "experimental" in optuna 2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(trial.params)
    completed = (TrialState.COMPLETE, TrialState.PRUNED)
    return sum(trial.state in completed for trial in trials), len(trials)
