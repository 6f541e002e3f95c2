"""``umt sweep``: the paper's hyper-parameter grid (section 3.1), or a TPE search, as a command.

The sweep folder holds ``sweep.json`` (what is searched and the settings every trial shares:
a second worker, or a rerun, with other settings is refused), the Optuna storage (SQLite,
unless ``--storage`` names a database that several workers share), one ordinary run
directory per trial (``trial-NNN``, trained by ``umt.stages.train``), and the results:
``trials.md``, ``best.json`` (with the best trial's ``umt train`` command) and the figures.
Trials are chosen on dev F1 only. A killed sweep resumes where it stopped when the same
command runs again (:mod:`umt.pipeline.sweep.study`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from umt.pipeline.errors import ConfigError
from umt.pipeline.files import read_json_file, write_json
from umt.pipeline.metrics import PRIMARY, pct
from umt.pipeline.run_dir import RunDir
from umt.pipeline.sweep.space import SearchSpace
from umt.stages.requests import SweepRequest

#: The sweep's own description, in its folder.
SPEC = "sweep.json"
SPEC_VERSION = 1


def run(req: SweepRequest, console: Console | None = None) -> dict[str, Any]:
    """Run (or resume, or join) the sweep, then write and print its results; returns the summary."""
    from umt.pipeline.sweep import results
    from umt.pipeline.sweep.study import StudySettings, open_study, work

    console = console or Console()
    space = req.search_space()
    folder = req.folder
    base_model, base_train = req.base.configs()
    settings = StudySettings(
        storage=req.storage_url,
        name=req.study_name,
        grid=space.is_grid,
        trials=len(space.points()) if space.is_grid else int(req.trials or 0),
        seed=base_train.seed,
        prune=req.prune,
        heartbeat=req.heartbeat,
    )
    if req.best:
        return _show_best(folder, settings, space, console)
    folder.mkdir(parents=True, exist_ok=True)
    study = open_study(settings, space)  # a storage URL that does not open is reported before anything is written
    _claim_spec(folder, _spec(req, space, settings))
    console.print(
        f"[bold]sweep[/] {escape(req.base.model)} on {escape(req.base.dataset)}: {escape(space.describe())}; "
        f"{settings.trials} trials ({'grid' if space.is_grid else 'TPE'}), "
        f"{'pruning on' if req.prune else 'no pruning'}; folder {escape(str(folder))}"
    )

    def train_trial(trial, values, run_folder, observers) -> float:
        return _train_trial(req, space, folder / run_folder, values, observers, trial.number, console)

    work(study, settings, space, train_trial, say=lambda text: console.print(escape(text)))
    table = results.rows(study)
    summary = results.write(folder, study, space, table)
    _print(table, space, summary, console)
    return summary


def _train_trial(
    req: SweepRequest, space: SearchSpace, run_path: Path, values: dict, observers, number: int, console: Console
) -> float:
    from umt.stages import train

    groups = space.by_group(values)
    base = req.base
    run = RunDir(run_path)
    resume = run.resumable and not run.finished
    trial_req = replace(
        base,
        model_cfg=replace(base.model_cfg, **groups["model"]),
        train_cfg=replace(base.train_cfg, **groups["train"]),
        out=run_path,
        seeds=None,
        resume=resume,
        overwrite=not resume and not run.finished and run_path.exists() and any(run_path.iterdir()),
        explicit=base.explicit | frozenset(values),
    )
    shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    console.rule(escape(f"trial {number}: {shown}" + (" (resuming)" if resume else "")))
    metrics = train.run(trial_req, console, observe=lambda _run: list(observers))
    return metrics[0]["valid"][PRIMARY]["f1"]


def _spec(req: SweepRequest, space: SearchSpace, settings) -> dict[str, Any]:
    model_cfg, train_cfg = req.base.configs()
    return {
        "format_version": SPEC_VERSION,
        "dataset": req.base.dataset,
        "model": req.base.model,
        "search": space.option,
        "space": space.describe(),
        "trials": settings.trials,
        "prune": req.prune,
        "model_config": model_cfg.to_dict(),
        "train_config": {k: v for k, v in train_cfg.to_dict().items() if k not in ("device", "num_workers")},
        "no_images": req.base.no_images,
    }


def _claim_spec(folder: Path, spec: dict[str, Any]) -> None:
    """Write ``sweep.json``, or check that the folder's sweep is this one."""
    path = folder / SPEC
    if not path.exists():
        write_json(path, spec)
        return
    held = read_json_file(path)
    if not isinstance(held, dict):
        raise ConfigError(f"{path}: not a sweep description written by umt sweep; use another --out")
    differs = sorted(k for k in spec.keys() | held.keys() if spec.get(k) != held.get(k))
    if differs:
        raise ConfigError(
            f"{path}: this folder holds another sweep (it differs in {', '.join(differs)}); "
            "run the same command as before to continue it, or use another --out"
        )


def _show_best(folder: Path, settings, space: SearchSpace, console: Console) -> dict[str, Any]:
    from umt.pipeline.sweep import results
    from umt.pipeline.sweep.study import open_study

    if not (folder / SPEC).is_file():
        raise ConfigError(f"{folder}: no sweep here (no {SPEC}); run `umt sweep` with these options first")
    study = open_study(settings, space)
    chosen = results.best(results.rows(study))
    if chosen is None or chosen.folder is None or not RunDir(folder / chosen.folder).finished:
        raise ConfigError(f"{folder}: no finished trial yet")
    command = results.train_command(RunDir(folder / chosen.folder))
    console.print(
        f"best trial {chosen.number}: dev F1 {pct(chosen.dev_f1)} ({escape(str(folder / chosen.folder))})",
        highlight=False,
    )
    print(command)
    return {"trial": chosen.number, "dev_f1": chosen.dev_f1, "settings": chosen.values, "command": command}


def _print(table, space: SearchSpace, summary: dict[str, Any], console: Console) -> None:
    best = summary.get("best") or {}
    view = Table(title="trials (chosen on dev F1)", title_justify="left")
    for column in ("trial", "state", *space.names, "dev F1", "epochs"):
        view.add_column(column, justify="right")
    for r in sorted(table, key=lambda r: r.number):
        state = r.state + ("*" if r.number == best.get("trial") else "")
        cells = [_shown(r.values.get(n)) for n in space.names]
        view.add_row(str(r.number), state, *cells, pct(r.dev_f1) if r.dev_f1 is not None else "", str(r.epochs))
    console.print(view)
    if best:
        console.print(f"best: trial {best['trial']}, dev F1 {pct(best['dev_f1'])}")
        if "command" in best:
            console.print("train it again (e.g. over seeds 1,2,3 with --seeds 1,2,3):", highlight=False)
            console.print(escape(best["command"]), highlight=False, soft_wrap=True)
    for name, where in summary.get("figures", {}).items():
        console.print(f"{name}: {escape(where)}", highlight=False)


def _shown(value) -> str:
    """A trial's value in the terminal table: 3 significant digits (trials.md keeps them all)."""
    return f"{value:.3g}" if isinstance(value, float) else "" if value is None else str(value)
