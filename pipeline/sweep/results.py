"""What a sweep leaves behind: its table of trials, the best settings, the command, the figures.

Everything here is chosen on dev F1 (the trials' values); no test score is read. The best
trial's ``umt train`` command is rebuilt from its run's own ``config.json``: every setting
that differs from what the recipe would choose unasked, so the command trains exactly that
trial's configuration again (with other seeds: ``--seeds 1,2,3``).
"""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.run_dir import RunConfig, RunDir
from umt.pipeline.sweep.space import SearchSpace
from umt.pipeline.sweep.study import counted, run_folder
from umt.pipeline.train_config import RUNTIME_FIELDS, TrainConfig

#: What a sweep writes into its folder, beside its trials' run folders.
TABLE, BEST, HISTORY, IMPORTANCE = "trials.md", "best.json", "history.png", "importance.png"


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # complete, pruned, fail, running, waiting
    values: dict[str, Any]
    dev_f1: float | None  # the best epoch's dev F1 (a pruned trial: its last reported epoch's)
    epochs: int  # epochs whose dev F1 was reported
    seconds: float | None
    folder: str | None


def rows(study: optuna.Study) -> list[TrialRow]:
    out = []
    for t in counted(study):
        reported = t.intermediate_values
        value = t.value if t.state == TrialState.COMPLETE else max(reported.values(), default=None)
        seconds = t.duration.total_seconds() if t.duration is not None else None
        out.append(TrialRow(t.number, t.state.name.lower(), dict(t.params), value, len(reported), seconds,
                            run_folder(t.user_attrs)))  # fmt: skip
    return out


def best(table: list[TrialRow]) -> TrialRow | None:
    """The complete trial of the best dev F1 (the earlier of two equal ones)."""
    complete = [r for r in table if r.state == "complete" and r.dev_f1 is not None]
    return max(complete, key=lambda r: (r.dev_f1, -r.number), default=None)


def markdown(table: list[TrialRow], space: SearchSpace, chosen: TrialRow | None) -> str:
    names = list(space.names)
    lines = [
        f"# Sweep: {space.describe()}",
        "",
        "Chosen on dev F1 (the best epoch's); test is not looked at.",
        "",
        "| trial | state | " + " | ".join(names) + " | dev F1 | epochs | seconds | run |",
        "|" + "---|" * (len(names) + 6),
    ]
    for r in sorted(table, key=lambda r: r.number):
        mark = " **best**" if chosen is not None and r.number == chosen.number else ""
        cells = [str(r.number), r.state + mark, *(_cell(r.values.get(n)) for n in names)]
        cells += [_f1(r.dev_f1), str(r.epochs), f"{r.seconds:.0f}" if r.seconds is not None else "", r.folder or ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def train_command(run: RunDir) -> str:
    """The ``umt train`` command that trains ``run``'s configuration again."""
    config = run.config()
    recipe = get_recipe(config.model)
    chosen_model, chosen_train = recipe.defaulted(ModelConfig(), TrainConfig(), frozenset(), "default", config.dataset)
    chosen_model = recipe.configure(chosen_model)  # the recipe's switches, as the run's config records them
    words = ["umt", "train", "--dataset", config.dataset, "--model", config.model]
    if config.data_root:
        words += ["--data-root", config.data_root]
    if config.no_images:
        words.append("--no-images")
    elif config.cache and config.cache.get("path"):
        words += ["--features", str(config.cache["path"])]
    words += _differences(config, chosen_model, chosen_train)
    return shlex.join(words)


def _differences(config: RunConfig, chosen_model: ModelConfig, chosen_train: TrainConfig) -> list[str]:
    words: list[str] = ["--seed", str(config.train_cfg.seed)]
    model, defaults = config.model_cfg.to_dict(), chosen_model.to_dict()
    for name in ("encoder", "word_vectors"):
        if model[name] != defaults[name]:
            words += [f"--{name.replace('_', '-')}", str(model[name])]
    pairs = [(k, v) for k, v in model.items() if k not in ("encoder", "word_vectors") and v != defaults[k]]
    trained, train_defaults = config.train_cfg.to_dict(), chosen_train.to_dict()
    skip = (*RUNTIME_FIELDS, "seed")
    pairs += [(k, v) for k, v in trained.items() if k not in skip and v != train_defaults[k]]
    for key, value in pairs:
        words += ["--set", f"{key}={_cell(value)}"]
    return words


def write(folder: Path, study: optuna.Study, space: SearchSpace, table: list[TrialRow]) -> dict[str, Any]:
    """The table (:func:`rows`), the best trial and its command, and the figures, into ``folder``;
    returns the summary."""
    chosen = best(table)
    (folder / TABLE).write_text(markdown(table, space, chosen), encoding="utf-8")
    summary: dict[str, Any] = {"trials": len(table), "by_state": dict(Counter(r.state for r in table)), "best": None}
    if chosen is not None:
        summary["best"] = {"trial": chosen.number, "dev_f1": chosen.dev_f1, "settings": chosen.values,
                           "run": chosen.folder}  # fmt: skip
        if chosen.folder is not None and RunDir(folder / chosen.folder).finished:
            summary["best"]["command"] = train_command(RunDir(folder / chosen.folder))
    (folder / BEST).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    summary["figures"] = _figures(folder, study)
    return summary


def _figures(folder: Path, study: optuna.Study) -> dict[str, str]:
    """The optimisation history and the parameter importances as PNG; why a figure is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    complete = [t for t in counted(study) if t.state == TrialState.COMPLETE]
    out = {}
    figures = ((HISTORY, plots.plot_optimization_history, 1), (IMPORTANCE, plots.plot_param_importances, 2))
    for name, draw, needs in figures:
        if len(complete) < needs or (needs > 1 and len({t.value for t in complete}) < 2):
            out[name] = f"not drawn: needs {needs} finished trials with different dev F1"
            continue
        try:
            axes = draw(study)
        except (ValueError, RuntimeError) as e:  # optuna refuses importances it cannot estimate
            out[name] = f"not drawn: {e}"
            continue
        axes.figure.savefig(folder / name, dpi=120, bbox_inches="tight")
        plt.close(axes.figure)
        out[name] = str(folder / name)
    return out


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else str(value)


def _f1(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}"
