"""``umt reproduce``: the paper's tables from nothing but the data, stoppable at any point.

Plan: extract the image features if the cache is missing (and a requested system reads
images), train every requested system and seed into ``<runs>/<dataset>/<model>/seed<N>`` (the
layout ``umt train`` uses), then write the report. Each step is the ordinary stage with its
resume rules, so a finished run is skipped, a killed one resumes from its last completed
epoch, and a killed extraction resumes at its next chunk: rerunning the same command after a
stop at any point finishes the work and changes nothing already done.

Settings: every system trains with its recipe's ``paper`` settings (``umt train --recipe
paper``; ``--recipe default`` for umt's own): section 3.1's batch 16 and maximum length 128 for
every system; for the systems over BERT, Devlin et al.'s fine-tuning with lr 5e-5 for every
parameter, dropout 0.1, lambda 0.5 and the authors' released epoch counts (24 on Twitter-2015,
22 on Twitter-2017: the paper states none); the BiLSTM systems keep their own papers' training
(``umt models --defaults``). Options given by the user override them, for every system.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from umt.pipeline.data.features import features_path
from umt.pipeline.errors import ConfigError
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.report.paper import ABLATIONS, FULL_MODEL
from umt.pipeline.run_dir import RunDir
from umt.pipeline.train_config import TrainConfig
from umt.stages.requests import ExtractRequest, ReportRequest, ReproduceRequest, TrainRequest, model_folder

#: Table 3: the full model and its four ablations (as the report lays it out).
TABLE3 = (FULL_MODEL, *ABLATIONS)


def systems(selection: str) -> tuple[str, ...]:
    """``table2`` (the eleven systems), ``table3`` (UMT and its ablations), ``all``, or names."""
    table2 = tuple(name for name in model_names() if name not in ABLATIONS)
    chosen = {"table2": table2, "table3": TABLE3, "all": tuple(model_names())}.get(selection)
    if chosen is not None:
        return chosen
    names = tuple(part.strip() for part in selection.split(",") if part.strip())
    for name in names:
        get_recipe(name)  # an unknown name is a ConfigError listing the known ones
    if not names:
        raise ConfigError("--systems: expected table2, table3, all or comma-separated model names")
    return names


#: Settings a finished run must share with the plan to count as one of its runs.
COMPARED = ("epochs", "batch_size", "lr", "head_lr", "max_length", "optimizer")


@dataclass(frozen=True)
class Planned:
    model: str
    request: TrainRequest

    def states(self) -> list[str]:
        return [self._state(RunDir(self.request.run_dir(seed))) for seed in self.request.seeds]

    def _state(self, run: RunDir) -> str:
        """finished, resume, to train, or why a finished run is not the planned one."""
        if run.resumable:
            return "resume"  # ``umt train --resume`` refuses settings other than the run's own
        if not run.finished:
            return "to train"
        stored = run.config()
        model_cfg, train_cfg = self.request.configs()
        kept = {**stored.model_cfg.to_dict(), **stored.train_cfg.to_dict()}
        planned = {**model_cfg.to_dict(), **train_cfg.to_dict()}
        differ = [f"{k} {kept[k]} (planned {planned[k]})" for k in COMPARED if kept[k] != planned[k]]
        if stored.text.get("kind") != "words" and stored.model_cfg.encoder != model_cfg.encoder:
            differ.append(f"encoder {stored.model_cfg.encoder} (planned {model_cfg.encoder})")
        if stored.no_images != (self.request.no_images and get_recipe(self.model).multimodal):
            differ.append(f"no_images {stored.no_images}")
        return f"finished with other settings: {', '.join(differ)}" if differ else "finished"


def plan(req: ReproduceRequest) -> list[Planned]:
    """One train request per system (all seeds), with the paper's settings and the user's overrides."""
    out = []
    for model in systems(req.systems):
        train_cfg = replace(TrainConfig(device=req.device), **req.train_overrides)
        model_cfg = ModelConfig(encoder=req.encoder, word_vectors=req.word_vectors)
        explicit = frozenset({"encoder", "word_vectors", *req.train_overrides})
        out.append(
            Planned(
                model,
                TrainRequest(
                    dataset=req.dataset,
                    model=model,
                    data_root=req.data_root,
                    model_cfg=model_cfg,
                    train_cfg=train_cfg,
                    seeds=req.seeds,
                    out=req.runs / req.dataset / model_folder(model, req.backbone),
                    features=req.features,
                    backbone=req.backbone,
                    no_images=req.no_images,
                    resume=True,
                    explicit=explicit,
                    settings=req.settings,
                    log_to=req.log_to,
                    tracking_uri=req.tracking_uri,
                ),
            )
        )
    return out


def _check(planned: list[Planned]) -> None:
    """Every text input a system needs, and no finished run made otherwise, before any work."""
    for item in planned:
        for seed, state in zip(item.request.seeds, item.states(), strict=True):
            if state.startswith("finished with"):
                raise ConfigError(
                    f"{item.request.run_dir(seed)} is {state}; give the same settings, another --runs folder, "
                    "or remove the run"
                )
        recipe = get_recipe(item.model)
        try:
            recipe.check_inputs(item.request.configs()[0])
        except ConfigError as e:
            raise ConfigError(f"{item.model}: {e} (or leave it out with --systems)") from None


def _plan_table(planned: list[Planned], req: ReproduceRequest) -> Table:
    title = f"umt reproduce: {req.dataset}, seeds {','.join(map(str, req.seeds))}"
    table = Table(title=escape(title), title_justify="left")
    for column in ("system", "epochs", "batch", "lr", "runs"):
        table.add_column(column, justify="left" if column in ("system", "runs") else "right")
    for item in planned:
        train_cfg = item.request.configs()[1]
        states = item.states()
        summary = ", ".join(f"{states.count(s)} {s}" for s in ("finished", "resume", "to train") if s in states)
        table.add_row(item.model, str(train_cfg.epochs), str(train_cfg.batch_size), f"{train_cfg.lr:g}", Text(summary))
    return table


def run(req: ReproduceRequest, console: Console | None = None) -> dict:
    """Extract (if needed), train every planned run (skipping finished ones), write the report."""
    console = console or Console()
    planned = plan(req)
    console.print(_plan_table(planned, req))
    if req.dry_run:
        return {"planned": {item.model: item.states() for item in planned}}
    _check(planned)

    needs_images = not req.no_images and any(get_recipe(item.model).multimodal for item in planned)
    if needs_images and req.features is None:
        try:
            features_path(None, req.data_root, req.dataset, req.backbone)
        except ConfigError:
            from umt.stages import extract_images

            console.print(f"[bold]no feature cache for {escape(req.dataset)}: extracting the images first[/]")
            extract_images.run(
                ExtractRequest(
                    dataset=req.dataset,
                    data_root=req.data_root,
                    backbone=req.backbone,
                    weights=req.weights,
                    device=req.device,
                ),
                console=console,
            )

    from umt.stages import report, train

    for item in planned:
        console.rule(f"[bold]{item.model}")
        train.run(item.request, console=console)
    console.rule("[bold]report")
    report_dir = req.runs / req.dataset / "report"
    models = {item.model for item in planned}
    ablations_planned = models & set(ABLATIONS)
    tables = [False] * bool(models - ablations_planned) + [True] * bool(ablations_planned)  # Table 2, Table 3
    reports = {}
    for ablations in tables:
        reports["table3" if ablations else "table2"] = report.run(
            ReportRequest(runs=req.runs / req.dataset, ablations=ablations, paper=True, out=report_dir),
            console=console,
        )
    console.print(f"report written to {escape(str(report_dir))}")
    return {"planned": {item.model: item.states() for item in planned}, "reports": reports}
