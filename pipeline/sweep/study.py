"""The Optuna side of ``umt sweep``: the study, its workers, and what each trial trains.

A sweep is one Optuna study in an RDB storage (SQLite in the sweep folder by default, or any
database URL that several workers share: Optuna's own distributed mode). Every worker runs
:func:`work` until the study is done: it starts trials one at a time, and waits while the
last ones run elsewhere. Each trial is an ordinary run directory under the sweep folder,
trained by ``umt.stages.train.run`` and scored by its best epoch's dev F1 (test is never
looked at); after every epoch the dev F1 goes to the pruner, which may stop the trial.

Nothing is lost to a kill: workers beat a heartbeat into the storage, and a trial whose
worker stopped beating is failed and queued again with the same settings and the same run
folder (Optuna's ``RetryHeartbeatStaleTrialCallback`` copies the trial's user attributes, which name
the folder), so its retry resumes from the last completed epoch. A finished trial is never
trained again.

Each grid point is trained once, by whichever worker reaches it first: the grid sampler gives
its ``k``-th point to trial ``k``, and a later trial that draws a point another live trial holds (the
sampler's fallback once every point has started) ends at once as a duplicate, without
training, and is left out of the results.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from umt.pipeline.errors import ConfigError, UmtError
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.sweep.space import SearchSpace
from umt.pipeline.training.observers import TrainingObserver

#: User attributes of a trial: its run folder (inherited by a retry), and a duplicate's mark.
RUN_ATTR, DUPLICATE_ATTR = "run", "duplicate_of"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_FOLDER = re.compile(r"trial-[0-9]{3,6}")


@dataclass(frozen=True)
class StudySettings:
    storage: str
    name: str
    grid: bool
    trials: int  # a grid's points, or the TPE trials asked for
    seed: int
    prune: bool
    heartbeat: float  # seconds between a worker's beats; a trial silent for twice this is retried


def open_study(settings: StudySettings, space: SearchSpace) -> optuna.Study:
    """The study in its storage, created by the first worker that asks and loaded by the others."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = _storage(settings)
    try:
        started = len(optuna.load_study(study_name=settings.name, storage=storage).trials)
    except KeyError:
        started = 0
    if space.is_grid:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(space.grid(), seed=settings.seed)
    else:  # a worker joining a running study draws other random start-up points than the first
        sampler = optuna.samplers.TPESampler(seed=settings.seed + started, multivariate=True)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if settings.prune
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=settings.name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="maximize",
        load_if_exists=True,
    )


def _storage(settings: StudySettings, attempts: int = 5) -> optuna.storages.RDBStorage:
    """The storage; workers that start together race to create its tables, and the losers retry."""
    import sqlalchemy.exc

    def connect() -> optuna.storages.RDBStorage:
        return optuna.storages.RDBStorage(
            settings.storage,
            heartbeat_interval=max(1, round(settings.heartbeat)),
            grace_period=max(2, round(2 * settings.heartbeat)),
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
        )

    for attempt in range(1, attempts + 1):
        try:
            return connect()
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError) as e:
            raise ConfigError(f"--storage {settings.storage}: not a database URL optuna can open ({e})") from None
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)
    raise ConfigError(f"--storage {settings.storage}: could not be opened")


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials but its duplicates and the failed trials that a retry replaced."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials if DUPLICATE_ATTR not in t.user_attrs and t.number not in retried]


def _remaining(study: optuna.Study, settings: StudySettings, space: SearchSpace) -> tuple[int, int]:
    """(trials that still may start here, trials running or queued anywhere)."""
    trials = counted(study)
    active = sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
    waiting = sum(t.state == TrialState.WAITING for t in trials)
    if space.is_grid:
        taken = {_point(space, t.params) for t in trials if t.state != TrialState.WAITING and _complete(space, t)}
        return waiting + settings.trials - len(taken), active
    return waiting + max(0, settings.trials - len(trials)), active


def work(
    study: optuna.Study,
    settings: StudySettings,
    space: SearchSpace,
    train: Callable[[optuna.Trial, dict[str, Any], str, list[TrainingObserver]], float],
    say: Callable[[str], None],
) -> None:
    """Run trials until the study is done here and elsewhere. ``train(trial, values, folder,
    observers)`` trains one trial's run in ``folder`` (relative to the sweep folder) and returns
    its dev F1."""
    objective = _Objective(study, settings, space, train)
    waited = False
    while True:
        optuna.storages.fail_stale_trials(study)
        can_start, active = _remaining(study, settings, space)
        if can_start > 0:
            study.optimize(objective, n_trials=1, catch=(UmtError, RuntimeError, ValueError), gc_after_trial=True)
            waited = False
        elif active:
            if not waited:
                say(f"waiting for {active} trial(s) running elsewhere (or silent for {2 * settings.heartbeat:g} s)")
                waited = True
            time.sleep(settings.heartbeat)
        else:
            return


class _Objective:
    def __init__(self, study, settings: StudySettings, space: SearchSpace, train):
        self.study, self.settings, self.space, self.train = study, settings, space, train

    def __call__(self, trial: optuna.Trial) -> float:
        values = self.space.suggest(trial)
        if self.space.is_grid:
            holder = self._holder(trial, values)
            if holder is not None:
                trial.set_user_attr(DUPLICATE_ATTR, holder)
                raise optuna.TrialPruned(f"grid point already taken by trial {holder}")
        folder = run_folder(trial.user_attrs) or f"trial-{trial.number:03d}"
        trial.set_user_attr(RUN_ATTR, folder)
        return self.train(trial, values, folder, [_Reporting(trial, self.settings.prune)])

    def _holder(self, trial: optuna.Trial, values: dict[str, Any]) -> int | None:
        """The number of an earlier live or finished trial of this grid point, if any."""
        for other in counted(self.study):
            if other.number == trial.number or other.state == TrialState.WAITING or other.params != values:
                continue
            if other.state in _FINISHED or other.number < trial.number:
                if run_folder(trial.user_attrs) is None:  # a retry of a killed trial is no duplicate
                    return other.number
        return None


def _complete(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial has drawn all its values (a trial just started elsewhere may not have yet)."""
    return set(space.names) <= trial.params.keys()


def _point(space: SearchSpace, values: dict[str, Any]) -> int:
    return space.points().index({name: values[name] for name in space.names})


class _Reporting(TrainingObserver):
    """Reports each epoch's dev F1 to the study (its history, and its pruner): with ``prune``, a
    trial the pruner stops ends there."""

    def __init__(self, trial: optuna.Trial, prune: bool):
        self.trial, self.prune = trial, prune

    def epoch(self, epoch, record, dev) -> None:
        self.trial.report(dev[PRIMARY]["f1"], step=epoch)
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: dev F1 {dev[PRIMARY]['f1']:.4f}")


def run_folder(attrs: dict[str, Any]) -> str | None:
    """The run folder a trial's user attributes name, if it is one a sweep writes (``trial-NNN``):
    the storage may be shared, so nothing else it holds is used as a path."""
    folder = attrs.get(RUN_ATTR)
    return folder if isinstance(folder, str) and _FOLDER.fullmatch(folder) else None
