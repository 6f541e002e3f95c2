"""``umt report``: run states, seed groups, the two tables, the significance test, case study and files.

No model is trained: run directories are written from tag lists, their metrics computed with
``umt.pipeline.metrics.score`` as ``umt train`` computes them.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import umt.cli as cli
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.metrics import PRIMARY, score
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.report.aggregate import aggregate
from umt.pipeline.report.arrange import BETTER, PICKED, WORSE
from umt.pipeline.report.build import build_report
from umt.pipeline.report.choose import PICKS, Pick, select
from umt.pipeline.report.paper import ABLATIONS, paper_scores
from umt.pipeline.report.predictions import PredictionStore, entities, entity_counts, read_predictions
from umt.pipeline.report.render import csv_text, latex, latex_escape, markdown, rich_tables
from umt.pipeline.report.runs import Group, RunState, System, collect_runs
from umt.pipeline.report.significance import approximate_randomization, compare, micro_f1
from umt.pipeline.run_dir import RunConfig, RunDir
from umt.pipeline.train_config import TrainConfig
from umt.stages import report as report_stage
from umt.stages.requests import ReportRequest

R = 400  # swap patterns for the report-level tests (the test's own checks use more)

# ---- building run directories from tag lists ---------------------------------------------------

TEMPLATES = [
    (["{p}", "visits", "{l}", "!"], ["B-PER", "O", "B-LOC", "O"]),
    (["{o}", "hires", "{p}", "[link]"], ["B-ORG", "O", "B-PER", "B-MISC"]),  # "[link]" is no rich markup
    (["watching", "Game", "of", "Thrones", "in", "{l}"], ["O", "B-MISC", "I-MISC", "I-MISC", "O", "B-LOC"]),
]
NAMES = {"p": ["Anna", "Brian", "Chloe", "Dmitri"], "l": ["Paris", "Lagos", "Osaka"], "o": ["Globex", "Initech"]}


def make_posts(n: int) -> tuple[list[list[str]], list[list[str]]]:
    """``n`` posts (words, gold tags), every one with 2 or 3 entities."""
    words, gold = [], []
    for i in range(n):
        template, tags = TEMPLATES[i % len(TEMPLATES)]
        fill = {k: v[i % len(v)] for k, v in NAMES.items()}
        words.append([w.format(**fill) for w in template])
        gold.append(list(tags))
    return words, gold


def predicted(gold: list[list[str]], wrong: set[int], how: str = "drop") -> list[list[str]]:
    """``gold``, except the posts in ``wrong``: their entities dropped, or the first one's type changed."""
    out = []
    for i, tags in enumerate(gold):
        tags = list(tags)
        if i in wrong and how == "drop":
            tags = ["O"] * len(tags)
        elif i in wrong:
            first = next(j for j, t in enumerate(tags) if t != "O")
            kind = "ORG" if tags[first][2:] != "ORG" else "PER"
            tags[first] = f"B-{kind}"
        out.append(tags)
    return out


def write_run(
    folder: Path, model: str, words, gold, pred, *, seed: int = 1, dataset: str = "twitter2017",
    no_images: bool = False, epochs: int = 3, curve=((2.0, 0.5), (1.0, 0.7), (0.5, 0.72)),
    dev_f1: float | None = None, train: dict | None = None, backbone: str | None = None,
) -> Path:  # fmt: skip
    """A finished run as ``umt train`` leaves it: config, metrics (scored by ``score``), test
    predictions and a log with one epoch event per ``(train_loss, dev_f1)`` of ``curve``. Its dev
    scores are its test scores, with the dev F1 ``dev_f1`` where given; ``train``: more TrainConfig
    values; ``backbone``: the image backbone of the feature cache it records (none without)."""
    folder.mkdir(parents=True)
    run = RunDir(folder)
    run.write_config(
        RunConfig(model, dataset, "data", ModelConfig(), TrainConfig(epochs=epochs, seed=seed, **(train or {})),
                  {"kind": "hf-subword"}, features(backbone, dataset), no_images)
    )  # fmt: skip
    posts = [Post(list(w), list(g), f"img{i}") for i, (w, g) in enumerate(zip(words, gold, strict=True))]
    run.write_predictions(RunDir.PREDICTIONS, posts, pred)
    for epoch, (loss, f1) in enumerate(curve, 1):
        dev = {"precision": f1, "recall": f1, "f1": f1}
        run.log({"event": "epoch", "epoch": epoch, "train_loss": loss, "dev": dev})
    scores = score(gold, pred)
    valid = scores if dev_f1 is None else {**scores, PRIMARY: {**scores[PRIMARY], "f1": dev_f1}}
    metrics = {"model": model, "dataset": dataset, "seed": seed, "best_epoch": len(curve), "valid": valid,
               "test": scores}  # fmt: skip
    run.write_json(RunDir.METRICS, metrics)
    return folder


def features(backbone: str | None, dataset: str = "twitter2017") -> dict | None:
    """config.json's "features" as ``umt train`` records a cache of ``backbone`` (None: no images read)."""
    if backbone is None:
        return None
    manifest = {"backbone": backbone, "weights": {"name": "imagenet"}, "preprocessing": {"size": [224, 224]},
                "dtype": "float16"}  # fmt: skip
    return {"path": f"/data/{dataset}_{backbone}.h5", "manifest": manifest}


def seed_dir(root: Path, model: str, seed: int, dataset: str = "twitter2017") -> Path:
    return root / dataset / model / f"seed{seed}"


def chosen_groups(root: Path, pick: Pick = Pick()) -> list[Group]:
    """The groups a report of ``root`` counts: one configuration per dataset and system."""
    return select(collect_runs(root), pick).groups


# ---- run states ----------------------------------------------------------------------------


def test_every_run_has_a_state_and_unfinished_runs_are_listed_not_counted(tmp_path):
    words, gold = make_posts(12)
    root = tmp_path / "runs"
    write_run(seed_dir(root, "bert-crf", 1), "bert-crf", words, gold, predicted(gold, {0, 1}))
    write_run(seed_dir(root, "umt", 1), "umt", words, gold, gold)
    # resumable: last.pt and two epochs in the log, no metrics
    resumable = write_run(seed_dir(root, "umt", 2), "umt", words, gold, gold, seed=2, epochs=10)
    (resumable / RunDir.METRICS).unlink()
    (resumable / RunDir.LAST).write_bytes(b"state")
    # failed: config.json only
    failed = write_run(seed_dir(root, "bert-crf", 2), "bert-crf", words, gold, gold, seed=2)
    for name in (RunDir.METRICS, RunDir.PREDICTIONS, RunDir.LOG):
        (failed / name).unlink()
    # half-written: a truncated metrics.json; a damaged config.json
    truncated = write_run(seed_dir(root, "mt", 1), "mt", words, gold, gold)
    text = (truncated / RunDir.METRICS).read_text()
    (truncated / RunDir.METRICS).write_text(text[: len(text) // 2])
    damaged = write_run(seed_dir(root, "adacan-bert-crf", 1), "adacan-bert-crf", words, gold, gold)
    (damaged / RunDir.CONFIG).write_text('{"format_version": 2, "model": ')
    # missing: a seed folder without files
    empty = seed_dir(root, "gvatt-bert-crf", 1)
    empty.mkdir(parents=True)

    states = {run.path: run for run in collect_runs(root)}
    assert {p: r.state for p, r in states.items()} == {
        seed_dir(root, "bert-crf", 1): RunState.FINISHED,
        seed_dir(root, "umt", 1): RunState.FINISHED,
        resumable: RunState.RESUMABLE,
        failed: RunState.FAILED,
        truncated: RunState.HALF_WRITTEN,
        damaged: RunState.HALF_WRITTEN,
        empty: RunState.MISSING,
    }
    assert "interrupted at epoch 3 of 10" in states[resumable].note
    assert states[truncated].note.startswith("metrics.json:") and "damaged" in states[truncated].note
    assert states[damaged].note.startswith("config.json:")

    report = build_report(root, resamples=R)
    # only finished runs count: one seed each, although umt and bert-crf have a second folder
    assert [(g.system.label, g.seeds) for g in report.groups] == [("bert-crf", (1,)), ("umt", (1,))]
    problems = {(run.state, run.system.label if run.system else None, run.seed) for run in report.problems}
    assert (RunState.MISSING, "bert-softmax", None) in problems  # a system of Table 2 with no run at all
    assert (RunState.RESUMABLE, "umt", 2) in problems and (RunState.FAILED, "bert-crf", 2) in problems
    assert not any(state is RunState.MISSING and label in ("umt", "bert-crf") for state, label, _ in problems)
    text = markdown(report)
    status = text[text.index("## Runs not counted") :]
    for run in (resumable, failed, truncated, damaged, empty):
        assert f"`{run}`" in status
    assert "no run of bert-softmax on twitter2017" in status


def test_a_second_finished_run_of_the_same_settings_and_seed_is_not_counted_twice(tmp_path):
    words, gold = make_posts(6)
    write_run(tmp_path / "a" / "seed1", "bert-crf", words, gold, gold)
    write_run(tmp_path / "b" / "seed1", "bert-crf", words, gold, predicted(gold, {0}))
    selection = select(collect_runs(tmp_path))
    assert [r.state for r in selection.runs] == [RunState.FINISHED, RunState.DUPLICATE]
    assert str(tmp_path / "a" / "seed1") in selection.runs[1].note
    assert aggregate(selection.groups[0]).f1.mean == 1.0


def test_runs_folder_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        collect_runs(tmp_path / "nope")


# ---- seed groups ---------------------------------------------------------------------------


def first_entity_only(tags: list[str]) -> list[str]:
    start = next(i for i, t in enumerate(tags) if t != "O")
    end = next((i for i in range(start + 1, len(tags)) if not tags[i].startswith("I-")), len(tags))
    return ["O"] * start + tags[start:end] + ["O"] * (len(tags) - end)


def test_a_seed_group_is_summarised_by_mean_and_sample_std(tmp_path):
    words, gold = make_posts(12)
    gold = [first_entity_only(tags) for tags in gold]  # one entity per post: PER, ORG, MISC in turn
    # seed 1 right everywhere; seed 2 misses the entities of posts 1-3, seed 3 of posts 1-6
    for seed, wrong in ((1, set()), (2, {0, 1, 2}), (3, set(range(6)))):
        write_run(seed_dir(tmp_path, "umt", seed), "umt", words, gold, predicted(gold, wrong), seed=seed)
    (group,) = chosen_groups(tmp_path)
    scores = aggregate(group)
    # precision 1; recall 1, 9/12, 6/12; F1 1, 6/7, 2/3: mean 53/63, sample std sqrt(111)/63 (by hand)
    mean, std = 53 / 63, math.sqrt(111) / 63
    assert scores.seeds == (1, 2, 3) and scores.f1.n == 3
    assert scores.f1.mean == pytest.approx(mean) and scores.f1.std == pytest.approx(std)
    assert scores.precision.mean == pytest.approx(1.0) and scores.precision.std == pytest.approx(0.0)
    assert scores.recall.mean == pytest.approx(0.75) and scores.recall.std == pytest.approx(0.25)
    # each type loses one of its four entities in seed 2 and two in seed 3: the same F1 as overall
    assert list(scores.per_type) == ["PER", "ORG", "MISC"]
    assert scores.per_type["MISC"].mean == pytest.approx(mean) and scores.per_type["MISC"].std == pytest.approx(std)
    assert scores.f1.show() == "84.13 ± 16.72"

    report = build_report(tmp_path, resamples=R)
    (row,) = report.table.sections[0][1]
    assert report.table.columns["twitter2017"] == ("PER", "ORG", "MISC", "P", "R", "F1", "n")  # no LOC in gold
    f1 = "84.13 ± 16.72"
    assert row.label == "umt" and row.cells["twitter2017"] == (f1, f1, f1, "100.00 ± 0.00", "75.00 ± 25.00", f1, "3")


def test_a_single_seed_shows_its_value_without_a_std(tmp_path):
    words, gold = make_posts(4)
    write_run(seed_dir(tmp_path, "umt", 1), "umt", words, gold, gold)
    (group,) = chosen_groups(tmp_path)
    assert aggregate(group).f1.std is None and aggregate(group).f1.show() == "100.00"


def test_seeds_trained_with_other_settings_are_not_averaged_together(tmp_path):
    words, gold = make_posts(6)
    write_run(seed_dir(tmp_path, "bert-crf", 1), "bert-crf", words, gold, gold, epochs=3)
    write_run(seed_dir(tmp_path, "bert-crf", 2), "bert-crf", words, gold, gold, seed=2, epochs=5)
    report = build_report(tmp_path, resamples=R)
    (row,) = report.table.sections[0][1]
    assert row.label == f"bert-crf {PICKED}" and row.cells["twitter2017"][-1] == "1"
    # equal dev F1 and one seed each: the configuration found first
    note = f"{PICKED} bert-crf on twitter2017: epochs=3, chosen on mean dev F1 (100.00) over 1 other configuration"
    assert note in report.table.footnotes


# ---- Table 2 and Table 3 -----------------------------------------------------------------


def test_table2_rows_follow_the_registry_text_then_text_image(tmp_path):
    words, gold = make_posts(9)
    for model, no_images in [("umt", False), ("bilstm-crf", False), ("mt", False), ("umt", True),
                             ("bert-crf", False), ("gvatt-bert-crf", False), ("umt-no-esd", False)]:  # fmt: skip
        folder = tmp_path / f"{model}{'-noimg' if no_images else ''}" / "seed1"
        write_run(folder, model, words, gold, gold, no_images=no_images)
    report = build_report(tmp_path, resamples=R)
    sections = [(title, [row.label for row in rows]) for title, rows in report.table.sections]
    assert sections == [
        ("text", ["bilstm-crf", "bert-crf"]),
        ("text+image", ["gvatt-bert-crf", "mt", "umt", "umt (no images)"]),
    ]
    order = model_names()
    labels = [label.split(" ")[0] for _, rows in sections for label in rows]
    assert labels == sorted(labels, key=order.index)
    assert report.table.columns["twitter2017"] == ("PER", "LOC", "ORG", "MISC", "P", "R", "F1", "n")
    # the ablation's runs are left to Table 3, and said so
    assert [g.system.label for g in report.elsewhere] == ["umt-no-esd"]
    assert "umt report --ablations" in markdown(report)


def test_paper_rows_are_quoted_under_ours(tmp_path):
    words, gold = make_posts(6)
    write_run(seed_dir(tmp_path, "bert-crf", 1, "twitter2015"), "bert-crf", words, gold, gold, dataset="twitter2015")
    report = build_report(tmp_path, paper=True, resamples=R)
    text_rows = dict(report.table.sections)["text"]
    assert [r.label for r in text_rows][:2] == ["bilstm-crf", "paper: BiLSTM-CRF"]
    quoted = next(r for r in text_rows if r.label == "paper: BERT-CRF")
    assert quoted.quoted and quoted.cells["twitter2015"] == ("84.74", "80.51", "60.27", "37.29", "69.22", "74.59",
                                                             "71.81", "")  # fmt: skip
    assert any("quoted from Yu et al. (2020), Table 2" in note for note in report.table.footnotes)


def test_paper_numbers_agree_with_the_registry_rows():
    """paper.py's F1 are the ones each recipe's ``paper`` string quotes (two transcriptions agree)."""
    for model in model_names():
        if model in ABLATIONS:
            continue
        printed = [float(x) for x in re.findall(r"\d+\.\d+", get_recipe(model).paper)]
        quoted = [paper_scores(2, model, d).f1 * 100 for d in ("twitter2015", "twitter2017")]
        assert quoted == pytest.approx(printed), model


def test_ablations_trained_without_images_are_measured_against_umt_trained_so(tmp_path):
    words, gold = make_posts(30)
    f1 = {}
    for model, wrong in (("umt", set()), ("umt-no-esd", set(range(0, 30, 3)))):
        pred = predicted(gold, wrong)
        write_run(seed_dir(tmp_path, model, 1), model, words, gold, pred, no_images=True)
        f1[model] = score(gold, pred)[PRIMARY]["f1"]
    report = build_report(tmp_path, ablations=True, resamples=2000)
    rows = {row.label: row.cells["twitter2017"] for _, rows in report.table.sections for row in rows}
    assert rows["umt-no-esd (no images)"][3] == f"{100 * (f1['umt-no-esd'] - f1['umt']):+.2f}"
    assert [(c.a.label, c.b.label, c.verdict) for c in report.comparisons] == [
        ("umt-no-esd (no images)", "umt (no images)", "worse")
    ]
    assert rows["umt-no-esd (no images)"][2].endswith(WORSE)
    (study,) = report.cases
    assert study.cases  # the case study falls back to umt (no images) as its reference


def test_table3_shows_each_ablation_against_the_full_model(tmp_path):
    words, gold = make_posts(30)
    f1 = {}
    for model, wrong in (("umt", set()), ("umt-no-esd", set(range(0, 30, 3))), ("umt-no-visual-gate", {1})):
        pred = predicted(gold, wrong)
        write_run(seed_dir(tmp_path, model, 1, "twitter2015"), model, words, gold, pred, dataset="twitter2015")
        f1[model] = score(gold, pred)[PRIMARY]["f1"]
    write_run(seed_dir(tmp_path, "bert-crf", 1, "twitter2015"), "bert-crf", words, gold, gold, dataset="twitter2015")
    report = build_report(tmp_path, ablations=True, paper=True, resamples=2000)
    rows = {row.label: row.cells["twitter2015"] for _, rows in report.table.sections for row in rows}
    assert report.table.columns["twitter2015"] == ("P", "R", "F1", "ΔF1", "n")
    assert rows["umt"][3] == "–"
    assert rows["umt-no-esd"][3] == f"{100 * (f1['umt-no-esd'] - f1['umt']):+.2f}"
    assert rows["umt-no-visual-gate"][3] == f"{100 * (f1['umt-no-visual-gate'] - f1['umt']):+.2f}"
    assert rows["paper: w/o ESD Module"][3] == "-0.83"  # 72.58 - 73.41
    table = {(r["system"], r["source"]): r for r in csv.DictReader(io.StringIO(csv_text(report)))}
    delta = 100 * (f1["umt-no-esd"] - f1["umt"])
    assert float(table[("umt-no-esd", "ours")]["delta_f1"]) == pytest.approx(delta, abs=1e-4)
    assert float(table[("umt-no-esd", "paper")]["delta_f1"]) == pytest.approx(72.58 - 73.41, abs=1e-4)
    # every ablation is tested against umt: dropping 10 of 30 posts' entities is significant, one post is not
    verdicts = {c.a.label: (c.b.label, c.verdict) for c in report.comparisons}
    assert verdicts == {"umt-no-esd": ("umt", "worse"), "umt-no-visual-gate": ("umt", "n.s.")}
    assert rows["umt-no-esd"][2].endswith(WORSE) and not rows["umt-no-visual-gate"][2].endswith(WORSE)
    # missing ablations are reported; bert-crf is not part of Table 3
    missing = {run.system.label for run in report.problems if run.state is RunState.MISSING}
    assert missing == {"umt-no-conversion", "umt-no-image-aware-wr"}


# ---- the significance test ------------------------------------------------------------------


def test_identical_systems_are_not_different():
    counts = np.array([[1, 2, 2], [0, 1, 1], [2, 2, 3], [1, 1, 1]])
    assert approximate_randomization(counts, counts.copy(), resamples=500) == 1.0


def test_a_system_right_wherever_the_other_is_wrong_is_significant():
    right = np.array([[2, 2, 2]] * 30)
    wrong = np.array([[0, 2, 2]] * 30)  # same entities predicted, every one with a wrong type
    assert approximate_randomization(right, wrong, resamples=2000) == pytest.approx(1 / 2001)


def exact_p(a: np.ndarray, b: np.ndarray) -> float:
    """The exact permutation p-value: every one of the 2^n swap patterns."""
    observed = abs(micro_f1(a.sum(0)) - micro_f1(b.sum(0)))
    hits = 0
    for swaps in itertools.product((False, True), repeat=len(a)):
        mask = np.array(swaps)[:, None]
        ta, tb = np.where(mask, b, a).sum(0), np.where(mask, a, b).sum(0)
        hits += abs(micro_f1(ta) - micro_f1(tb)) >= observed - 1e-12
    return hits / 2 ** len(a)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_approximate_randomisation_agrees_with_the_exact_permutation_test(seed):
    rng = np.random.default_rng(seed)
    gold = rng.integers(1, 4, size=11)
    a_pred, b_pred = rng.integers(0, 4, size=11), rng.integers(0, 4, size=11)
    a = np.stack([np.minimum(rng.integers(0, 4, size=11), np.minimum(a_pred, gold)), a_pred, gold], axis=1)
    b = np.stack([np.minimum(gold, b_pred), b_pred, gold], axis=1)  # b right wherever it can be
    exact = exact_p(a, b)
    resamples = 20_000
    approx = approximate_randomization(a, b, resamples=resamples, seed=seed)
    assert abs(approx - exact) <= 4.5 * math.sqrt(exact * (1 - exact) / resamples) + 2 / resamples, (approx, exact)


def test_per_post_counts_add_up_to_seqeval_scores():
    rng = np.random.default_rng(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # I- after O opens an entity (default scheme)
    gold = [list(rng.choice(tags, size=rng.integers(1, 9))) for _ in range(60)]
    pred = [list(rng.choice(tags, size=len(g))) for g in gold]
    counts = entity_counts([entities(g) for g in gold], [entities(p) for p in pred]).sum(0)
    expected = score(gold, pred)[PRIMARY]
    assert counts[0] / counts[1] == pytest.approx(expected["precision"])
    assert counts[0] / counts[2] == pytest.approx(expected["recall"])
    assert micro_f1(counts) == pytest.approx(expected["f1"])
    assert counts[2] == expected["support"]


def test_seeds_are_paired_by_number_and_runs_on_other_posts_are_refused(tmp_path):
    words, gold = make_posts(8)
    for seed in (1, 2):
        write_run(seed_dir(tmp_path, "bert-crf", seed), "bert-crf", words, gold, predicted(gold, {seed}), seed=seed)
    for seed in (2, 3):
        write_run(seed_dir(tmp_path, "umt", seed), "umt", words, gold, gold, seed=seed)
    other_words = [list(w) for w in words]
    other_words[5][0] = "Someone"
    write_run(seed_dir(tmp_path, "mt", 2), "mt", other_words, gold, gold, seed=2)
    groups = {g.system.model: g for g in chosen_groups(tmp_path)}
    store = PredictionStore()
    paired = compare(groups["umt"], groups["bert-crf"], store, resamples=200)
    assert (
        paired.seeds == (2,)
        and paired.f1_a == 1.0
        and paired.f1_b == pytest.approx(score(gold, predicted(gold, {2}))[PRIMARY]["f1"])
    )
    refused = compare(groups["mt"], groups["bert-crf"], store, resamples=200)
    assert refused.p is None and "post 6 has other words" in refused.note
    report = build_report(tmp_path, resamples=200)
    assert any(note.startswith("mt vs bert-crf on twitter2017 not compared") for note in report.table.footnotes)


def test_predictions_file_is_read_back_post_by_post(tmp_path):
    words, gold = make_posts(3)
    pred = predicted(gold, {1}, how="retype")
    folder = write_run(tmp_path / "run", "bert-crf", words, gold, pred)
    read = read_predictions(folder / RunDir.PREDICTIONS)
    assert read.images == ("img0", "img1", "img2")
    assert [list(w) for w in read.words] == words and [list(p) for p in read.pred] == pred
    (folder / RunDir.PREDICTIONS).write_text("# image: 1\nAnna\tB-PER\n")
    with pytest.raises(ConfigError, match=r"predictions_test.conll:2: expected word<TAB>gold<TAB>predicted"):
        read_predictions(folder / RunDir.PREDICTIONS)


# ---- markers, case study, files, figures, CLI ---------------------------------------------


@pytest.fixture()
def table2_runs(tmp_path) -> Path:
    """bert-crf, umt and gvatt-bert-crf on two datasets, two seeds each: umt fixes bert-crf's mistakes
    (wrong types on a third of the posts); gvatt-bert-crf drops the entities of half the posts."""
    words, gold = make_posts(30)
    root = tmp_path / "runs"
    for dataset, seed in itertools.product(("twitter2015", "twitter2017"), (1, 2)):
        base_wrong = set(range(seed, 30, 3))
        write_run(
            seed_dir(root, "bert-crf", seed, dataset),
            "bert-crf",
            words,
            gold,
            predicted(gold, base_wrong, how="retype"),
            seed=seed,
            dataset=dataset,
        )
        write_run(
            seed_dir(root, "umt", seed, dataset), "umt", words, gold, predicted(gold, {0}), seed=seed, dataset=dataset
        )
        write_run(seed_dir(root, "gvatt-bert-crf", seed, dataset), "gvatt-bert-crf", words, gold,
                  predicted(gold, set(range(0, 30, 2))), seed=seed, dataset=dataset)  # fmt: skip
    return root


def test_multimodal_rows_are_marked_against_bert_crf(table2_runs):
    report = build_report(table2_runs, resamples=1000)
    rows = {row.label: row for _, rows in report.table.sections for row in rows}
    for dataset in ("twitter2015", "twitter2017"):
        assert rows["umt"].cells[dataset][-2].endswith(BETTER)
        assert rows["gvatt-bert-crf"].cells[dataset][-2].endswith(WORSE)
        assert not rows["bert-crf"].cells[dataset][-2].endswith((BETTER, WORSE))
    pairs = {(c.dataset, c.a.label, c.b.label): c for c in report.comparisons}
    assert pairs[("twitter2015", "umt", "bert-crf")].seeds == (1, 2)
    assert ("twitter2015", "umt", "gvatt-bert-crf") in pairs  # the full model against every other row
    note = next(n for n in report.table.footnotes if n.startswith(f"{BETTER} / {WORSE}"))
    assert "R = 1,000" in note and "umt 0.0010" in note


def test_case_study_prefers_posts_where_one_system_is_right_and_another_wrong(table2_runs):
    report = build_report(table2_runs, cases=3, resamples=R)
    study = report.cases[0]
    assert (study.dataset, study.seed, study.systems) == ("twitter2015", 1, ("bert-crf", "gvatt-bert-crf", "umt"))
    first = study.cases[0]
    # bert-crf retypes post 2 (index 1); umt is right there; gvatt-bert-crf too (it drops even posts only)
    assert first.index == 2 and first.predicted["umt"] == first.gold != first.predicted["bert-crf"]
    assert len(study.cases) == 3
    text = markdown(report)
    assert "## Case study: twitter2015, seed 1" in text
    assert "| gold | Initech [ORG], Brian [PER], [link] [MISC] |" in text


def test_files_are_written_and_parse(table2_runs, tmp_path):
    out = tmp_path / "out"
    data = report_stage.run(ReportRequest(runs=table2_runs, out=out, paper=True, resamples=R, cases=1))
    json.dumps(data)  # the stage returns plain data
    assert sorted(Path(p).name for p in data["files"]) == ["table2.csv", "table2.md", "table2.tex"]
    rows = list(csv.DictReader(io.StringIO((out / "table2.csv").read_text())))
    ours = {(r["system"], r["dataset"]): r for r in rows if r["source"] == "ours"}
    umt = ours[("umt", "twitter2017")]
    group = data["groups"][[g["system"] for g in data["groups"]].index("umt")]
    assert float(umt["f1"]) == pytest.approx(100 * group["f1"]["mean"], abs=1e-4) and umt["n"] == "2"
    assert float(umt["p_vs_bert-crf"]) < 0.05
    assert any(r["source"] == "paper" and r["system"] == "umt" and r["f1"] == "73.4100" for r in rows)
    tex = (out / "table2.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 1 and r"\toprule" in tex and r"\bottomrule" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\") and "multicolumn" not in line]
    assert len({line.count("&") for line in body}) == 1  # every row has every column
    assert r"$\pm$" in tex and r"$^\dagger$" in tex
    md = (out / "table2.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| system"))
    assert "twitter2015 PER" in header and "twitter2017 F1" in header
    assert "## Significance" in md and "## Runs not counted" in md


def test_figures_are_written_as_png(table2_runs, tmp_path):
    pytest.importorskip("matplotlib")
    from umt.pipeline.report.figures import entity_changes

    report = build_report(table2_runs, resamples=R)
    groups = {(g.dataset, g.system.model): g for g in report.groups}
    changes = entity_changes(groups[("twitter2017", "bert-crf")], groups[("twitter2017", "umt")], report.store)
    # bert-crf retypes the first entity of 10 posts: the ORG ones in seed 1, the MISC ones in seed 2, which
    # umt gets right; umt drops both entities (PER, LOC) of post 1, which bert-crf gets right in both seeds
    assert changes.seeds == (1, 2)
    assert changes.fixed == pytest.approx({"ORG": 5.0, "MISC": 5.0})  # mean per seed
    assert changes.broken == pytest.approx({"PER": 1.0, "LOC": 1.0})
    out = tmp_path / "out"
    data = report_stage.run(ReportRequest(runs=table2_runs, out=out, figures=True, formats=(), resamples=R, cases=0))
    names = sorted(Path(p).name for p in data["files"])
    assert names == sorted(f"{d}_{kind}.png" for d in ("twitter2015", "twitter2017")
                           for kind in ("vs_bert-crf", "f1_by_type", "learning_curves"))  # fmt: skip
    for path in data["files"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(path).stat().st_size > 10_000


def test_requests_check_themselves(tmp_path):
    assert ReportRequest().formats == () and ReportRequest(out=tmp_path).formats == ("md", "csv", "tex")
    with pytest.raises(ConfigError, match="--out"):
        ReportRequest(figures=True)
    with pytest.raises(ConfigError, match="xml"):
        ReportRequest(out=tmp_path, formats=("md", "xml"))
    with pytest.raises(ConfigError, match="--resamples"):
        ReportRequest(resamples=0)


def umt(monkeypatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["umt", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code


def test_cli_prints_the_table_and_rejects_bad_options(table2_runs, tmp_path, monkeypatch, capsys):
    assert umt(monkeypatch, "report", "--runs", str(table2_runs), "--resamples", "100", "--cases", "1") == 0
    out = capsys.readouterr().out
    assert "Table 2" in out and "twitter2015" in out and "Runs not counted" in out
    # the case study's entities, printed as they are (rich would read "[link]" as markup)
    assert re.search(r"✓ umt\s+│ Initech \[ORG\], Brian \[PER\], \[link\] \[MISC\]", out)
    assert umt(monkeypatch, "report", "--runs", str(table2_runs), "--figures") == 2
    assert "--out" in capsys.readouterr().err
    assert umt(monkeypatch, "report", "--runs", str(tmp_path / "none")) == 2
    assert umt(monkeypatch, "report", "--no-such-option") == 2
    assert umt(monkeypatch, "report", "--help") == 0
    assert "--ablations" in capsys.readouterr().out


def test_a_system_with_no_images_is_its_own_row(tmp_path):
    words, gold = make_posts(6)
    write_run(seed_dir(tmp_path, "umt", 1), "umt", words, gold, gold)
    write_run(tmp_path / "noimg" / "seed1", "umt", words, gold, predicted(gold, {0}), no_images=True)
    groups = chosen_groups(tmp_path)
    assert [g.system for g in groups] == [System("umt"), System("umt", no_images=True)]
    assert groups[1].system.label == "umt (no images)"


# ---- configurations: runs of one system that differ in settings; --pick, --where ----------------


def table_f1(report, label: str, dataset: str = "twitter2017") -> str:
    """The F1 cell of the row ``label`` (markers left on)."""
    row = next(row for _, rows in report.table.sections for row in rows if row.label.split(" ")[0] == label)
    return row.cells[dataset][-2]


def test_a_longer_run_with_the_better_dev_f1_is_reported_over_the_run_found_first(tmp_path):
    """The case that was reported wrongly: a 1-epoch run (0.00) found before a 25-epoch run of the same seed."""
    words, gold = make_posts(12)
    partly = predicted(gold, set(range(4, 12)))
    write_run(tmp_path / "e01" / "seed1", "umt", words, gold, predicted(gold, set(range(12))), epochs=1, dev_f1=0.0)
    write_run(tmp_path / "e25" / "seed1", "umt", words, gold, partly, epochs=25, dev_f1=0.3)
    expected = score(gold, partly)[PRIMARY]["f1"]
    assert 0 < expected < 1
    report = build_report(tmp_path, resamples=R)
    assert table_f1(report, "umt") == f"{100 * expected:.2f}" and report.groups[0].runs[0].path.name == "seed1"
    assert report.groups[0].runs[0].path.parent.name == "e25"
    assert f"{PICKED} umt on twitter2017: epochs=25, chosen on mean dev F1 (30.00) over 1 other configuration" in (
        report.table.footnotes
    )
    text = markdown(report)
    assert "## Configurations (--pick dev)" in text
    assert "| twitter2017 | umt | epochs=1 | 1 | not chosen | 0.00 |" in text
    # the runs of the configuration not chosen are finished, not problems
    assert not [run for run in report.problems if run.state is not RunState.MISSING]
    # --pick first is the old rule: the 1-epoch run
    assert table_f1(build_report(tmp_path, resamples=R, pick=Pick("first")), "umt").startswith("0.00")


def test_of_two_runs_with_the_same_settings_and_seed_the_better_dev_run_counts(tmp_path):
    words, gold = make_posts(12)
    first = write_run(tmp_path / "a" / "seed1", "umt", words, gold, predicted(gold, set(range(12))), dev_f1=0.0)
    better = write_run(tmp_path / "b" / "seed1", "umt", words, gold, gold, dev_f1=0.3)
    report = build_report(tmp_path, resamples=R)
    assert table_f1(report, "umt") == "100.00" and not report.choices  # one configuration: nothing to name
    (duplicate,) = [run for run in report.problems if run.state is RunState.DUPLICATE]
    assert duplicate.path == first
    why = "which has the better dev F1 (30.00 vs 0.00)"
    assert duplicate.note == f"same settings and seed as {better}, {why}: not counted"
    assert f"`{first}`" in markdown(report).split("## Runs not counted")[1]
    latest = select(collect_runs(tmp_path), Pick("first")).runs
    assert [run.state for run in latest] == [RunState.FINISHED, RunState.DUPLICATE]
    assert latest[1].note.endswith("which was found first (--pick first): not counted")


def two_configurations(root: Path) -> dict[str, float]:
    """bert-crf with lr 3e-5 (folder a/, dev F1 70 for each of 3 seeds) and lr 1e-4 (b/: dev 90, 50, 50,
    so the best single run, and right on every test post); returns each one's mean test F1."""
    words, gold = make_posts(12)
    worse = predicted(gold, {0, 1, 2})
    for seed, dev_b in zip((1, 2, 3), (0.9, 0.5, 0.5), strict=True):
        write_run(root / "a" / f"seed{seed}", "bert-crf", words, gold, worse, seed=seed, dev_f1=0.7,
                  train={"lr": 3e-5})  # fmt: skip
        write_run(root / "b" / f"seed{seed}", "bert-crf", words, gold, gold, seed=seed, dev_f1=dev_b,
                  train={"lr": 1e-4})  # fmt: skip
    return {"a": score(gold, worse)[PRIMARY]["f1"], "b": 1.0}


def test_the_configuration_with_the_better_mean_dev_f1_is_chosen_and_named(tmp_path):
    f1 = two_configurations(tmp_path)
    data = report_stage.run(ReportRequest(runs=tmp_path, resamples=R, cases=0, out=tmp_path / "out"))
    json.dumps(data)
    (group,) = data["groups"]
    # not b: its best seed and its test F1 are higher, its mean dev F1 (63.33) is not
    assert group["seeds"] == [1, 2, 3] and group["f1"]["mean"] == pytest.approx(f1["a"])
    assert group["settings"]["lr"] == 3e-5 and all("/a/" in run for run in group["runs"])
    (choice,) = data["configurations"]
    assert choice["differing"] == ["lr"]
    assert [(c["settings"], c["status"]) for c in choice["configurations"]] == [
        ({"lr": 3e-5}, "chosen"),
        ({"lr": 1e-4}, "not chosen"),
    ]
    md = (tmp_path / "out" / "table2.md").read_text()
    note = "bert-crf on twitter2017: lr=3e-05, chosen on mean dev F1 (70.00) over 1 other configuration"
    assert f"{PICKED} {note}" in md and f"bert-crf {PICKED}" in md
    assert "| twitter2017 | bert-crf | lr=0.0001 | 1,2,3 | not chosen | 63.33 ± 23.09 |" in md
    (row,) = [r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "table2.csv").read_text()))]
    assert row["settings"] == "lr=3e-05" and row["n"] == "3"
    assert f"% 2. {PICKED} {note}" in (tmp_path / "out" / "table2.tex").read_text()


def test_pick_and_where_choose_the_configuration(tmp_path, monkeypatch, capsys):
    f1 = two_configurations(tmp_path)
    for metrics in (tmp_path / "b").glob(f"seed*/{RunDir.METRICS}"):
        os.utime(metrics, (metrics.stat().st_atime, metrics.stat().st_mtime + 60))  # b finished last
    expected = {"dev": "a", "first": "a", "latest": "b"}
    assert set(expected) == set(PICKS)
    for pick, folder in expected.items():
        (group,) = chosen_groups(tmp_path, Pick(pick))
        assert {run.path.parent.name for run in group.runs} == {folder}, pick
    report = build_report(tmp_path, resamples=R, pick=Pick.parse("dev", ["lr=1e-4"]))
    assert table_f1(report, "bert-crf") == f"{100 * f1['b']:.2f} ± 0.00"
    assert report.table.footnotes[-1].endswith(": lr=0.0001, 1 other configuration left out by --where lr=0.0001")
    out = tmp_path / "out"
    args = ["report", "--runs", str(tmp_path), "--resamples", "10", "--cases", "0", "--out", str(out)]
    args += ["--format", "csv"]
    assert umt(monkeypatch, *args, "--pick", "latest") == 0
    (row,) = csv.DictReader(io.StringIO((out / "table2.csv").read_text()))
    assert float(row["f1"]) == pytest.approx(100 * f1["b"]) and row["settings"] == "lr=0.0001"
    assert umt(monkeypatch, *args, "--where", "lr=3e-5", "--where", "epochs=3") == 0
    (row,) = csv.DictReader(io.StringIO((out / "table2.csv").read_text()))
    assert float(row["f1"]) == pytest.approx(100 * f1["a"])
    capsys.readouterr()
    refused = {
        "--pick 'lastest' (did you mean 'latest'?): choose one of dev, latest, first": ["--pick", "lastest"],
        "--where nope=1: unknown setting 'nope'": ["--where", "nope=1"],
        "--where seed: runs that differ only in seed, device": ["--where", "seed=1"],
        "--where lr=fast: expected a float": ["--where", "lr=fast"],
        "--where 'lr': expected setting=value": ["--where", "lr"],
        "--where lr is given twice": ["--where", "lr=1e-4", "--where", "lr=3e-5"],
    }
    for message, options in refused.items():
        assert umt(monkeypatch, *args, *options) == 2, options
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert umt(monkeypatch, "report", "--help") == 0
    help_text = capsys.readouterr().out
    assert "--pick" in help_text and "--where" in help_text and "never test" in help_text


def test_a_system_whose_configurations_where_leaves_out_is_listed_not_dropped(tmp_path):
    two_configurations(tmp_path)
    words, gold = make_posts(12)
    write_run(tmp_path / "umt" / "seed1", "umt", words, gold, gold, train={"lr": 3e-5})
    report = build_report(tmp_path, resamples=R, pick=Pick.parse("dev", ["lr=1e-4"]))
    assert [g.system.label for g in report.groups] == ["bert-crf"]
    left = report.choice("twitter2017", System("umt"))
    assert left.chosen is None and [status for _, status in left.configurations] == ["left out by --where lr=0.0001"]
    assert "| twitter2017 | umt |  | 1 | left out by --where lr=0.0001 | 100.00 |" in markdown(report)
    assert not any(run.system == System("umt") for run in report.problems)  # listed once, as a configuration


def test_unfinished_and_damaged_trials_are_still_listed_as_not_counted(tmp_path):
    words, gold = make_posts(6)
    for seed in (1, 2):
        write_run(tmp_path / "lr3e-5" / f"seed{seed}", "bert-crf", words, gold, gold, seed=seed, train={"lr": 3e-5})
    trials = tmp_path / "lr1e-4"
    damaged = write_run(trials / "seed1", "bert-crf", words, gold, gold, train={"lr": 1e-4}, dev_f1=0.99)
    (damaged / RunDir.METRICS).write_text((damaged / RunDir.METRICS).read_text()[:40])
    no_dev = write_run(trials / "seed2", "bert-crf", words, gold, gold, seed=2, train={"lr": 1e-4})
    metrics = json.loads((no_dev / RunDir.METRICS).read_text())
    (no_dev / RunDir.METRICS).write_text(json.dumps({k: v for k, v in metrics.items() if k != "valid"}))
    unfinished = write_run(trials / "seed3", "bert-crf", words, gold, gold, seed=3, train={"lr": 1e-4}, epochs=8)
    (unfinished / RunDir.METRICS).unlink()
    (unfinished / RunDir.LAST).write_bytes(b"state")
    report = build_report(tmp_path, resamples=R)
    assert [g.seeds for g in report.groups] == [(1, 2)] and not report.choices  # one finished configuration
    problems = {run.path: run for run in report.problems}
    assert problems[damaged].state is RunState.HALF_WRITTEN and problems[damaged].note.startswith("metrics.json:")
    assert problems[no_dev].state is RunState.HALF_WRITTEN
    assert problems[no_dev].note.startswith("metrics.json: no default-scheme dev scores")
    assert problems[unfinished].state is RunState.RESUMABLE and "of 8" in problems[unfinished].note
    status = markdown(report).split("## Runs not counted")[1]
    assert all(f"`{path}`" in status for path in (damaged, no_dev, unfinished))


def test_a_custom_dataset_has_no_empty_paper_rows(tmp_path):
    words, gold = make_posts(6)
    for model in ("bert-crf", "umt"):
        write_run(seed_dir(tmp_path, model, 1, "mydata"), model, words, gold, gold, dataset="mydata")
    report = build_report(tmp_path, paper=True, resamples=R)
    sections = [(title, [row.label for row in rows]) for title, rows in report.table.sections]
    assert sections == [("text", ["bert-crf"]), ("text+image", ["umt"])]
    assert not any(row.quoted for _, rows in report.table.sections for row in rows)
    assert not any("Yu et al." in note for note in report.table.footnotes)
    # beside a dataset of the paper's, the paper's rows come back (and stay empty for mydata only)
    write_run(seed_dir(tmp_path, "umt", 1), "umt", words, gold, gold)
    labels = [row.label for _, rows in build_report(tmp_path, paper=True, resamples=R).table.sections for row in rows]
    assert "paper: BERT" in labels and "bert-softmax" in labels


# ---- image backbones: one row per backbone a system's runs read, shown in every format -----------------


@pytest.fixture()
def backbone_runs(tmp_path) -> tuple[Path, dict[str, str]]:
    """umt on ResNet-152 features (right everywhere) and on VGG-16 features (drops the entities of a
    third of the posts), the same settings and seeds 1 and 2 otherwise, and the text-only bert-crf
    beside them; returns the runs folder and each backbone's F1 cell (mean ± std of the two seeds)."""
    words, gold = make_posts(30)
    root = tmp_path / "runs"
    preds = {"resnet152": gold, "vgg16": predicted(gold, set(range(0, 30, 3)))}
    for seed in (1, 2):
        for backbone, pred in preds.items():
            write_run(seed_dir(root / backbone, "umt", seed), "umt", words, gold, pred, seed=seed, backbone=backbone)
        write_run(seed_dir(root / "text", "bert-crf", seed), "bert-crf", words, gold,
                  predicted(gold, {0, 1}, how="retype"), seed=seed)  # fmt: skip
    f1 = {backbone: f"{100 * score(gold, pred)[PRIMARY]['f1']:.2f} ± 0.00" for backbone, pred in preds.items()}
    assert len(set(f1.values())) == 2
    return root, f1


def rows_of(report, dataset: str = "twitter2017") -> list[tuple[str, str, str]]:
    """Every row of the main table as (label, backbone, F1 cell)."""
    return [(row.label, row.backbone, row.cells[dataset][-2]) for _, rows in report.table.sections for row in rows]


def test_runs_that_differ_only_in_backbone_are_two_rows_never_one_rows_seeds(backbone_runs):
    root, f1 = backbone_runs
    umt_r, umt_v = System("umt", backbone="resnet152"), System("umt", backbone="vgg16")
    assert {run.system for run in collect_runs(root)} == {System("bert-crf"), umt_r, umt_v}
    groups = chosen_groups(root)
    assert [(g.system, g.seeds) for g in groups] == [(System("bert-crf"), (1, 2)), (umt_r, (1, 2)), (umt_v, (1, 2))]
    assert [g.system.label for g in groups] == ["bert-crf", "umt (resnet152)", "umt (vgg16)"]
    report = build_report(root, resamples=R, cases=0)
    # neither a duplicate of the other's seeds nor a configuration of one row to choose between
    assert all(run.state is RunState.MISSING for run in report.problems)
    assert not report.choices
    sections = [(title, [(r.label, r.backbone, r.cells["twitter2017"][-1]) for r in rows])
                for title, rows in report.table.sections]  # fmt: skip
    assert sections == [("text", [("bert-crf", "–", "2")]),
                        ("text+image", [("umt", "resnet152", "2"), ("umt", "vgg16", "2")])]  # fmt: skip
    cells = {(label, backbone): cell for label, backbone, cell in rows_of(report)}
    assert cells[("umt", "resnet152")].startswith(f1["resnet152"]) and cells[("umt", "vgg16")].startswith(f1["vgg16"])
    # each backbone's umt against bert-crf; not against each other (that would test the backbone, not the model)
    assert {(c.a.label, c.b.label) for c in report.comparisons} == {
        ("umt (resnet152)", "bert-crf"),
        ("umt (vgg16)", "bert-crf"),
    }
    data = report.to_dict()
    assert [(g["system"], g["backbone"]) for g in data["groups"]] == [
        ("bert-crf", None),
        ("umt (resnet152)", "resnet152"),
        ("umt (vgg16)", "vgg16"),
    ]


def test_every_format_shows_each_rows_backbone_beside_it(backbone_runs):
    root, f1 = backbone_runs
    report = build_report(root, resamples=R, cases=0)
    # each row's F1 cell (markers on): umt's two differ, so a cell beside the wrong backbone fails
    f1_of = {(label, backbone): cell for label, backbone, cell in rows_of(report)}
    assert list(f1_of) == [("bert-crf", "–"), ("umt", "resnet152"), ("umt", "vgg16")]
    assert all(f1_of["umt", backbone].startswith(cell) for backbone, cell in f1.items())
    # Markdown: a backbone column after the system's
    md = markdown(report).splitlines()
    assert next(line for line in md if line.startswith("| system")).startswith("| system | backbone | PER | LOC |")
    assert "| --- | --- | ---: |" in md[md.index(next(line for line in md if line.startswith("| system"))) + 1]
    for (label, backbone), cell in f1_of.items():
        (line,) = [line for line in md if line.startswith(f"| {label} | {backbone} |")]
        assert line.endswith(f"| {cell} | 2 |"), line
    # LaTeX: the same, in a second left-aligned column (the dash as LaTeX's en dash)
    tex = latex(report.table).splitlines()
    assert r"\begin{tabular}{ll rrrrrrrr}" in tex
    assert any(line.startswith("System & Backbone & PER & LOC") for line in tex)
    assert r" &  & \multicolumn{8}{c}{twitter2017} \\" in tex and r"\cmidrule(lr){3-10}" in tex
    for (label, backbone), cell in f1_of.items():
        (line,) = [line for line in tex if line.startswith(f"{label} & {latex_escape(backbone)} & ")]
        assert line.endswith(f" & {latex_escape(cell)} & 2 \\\\"), line
    # CSV: system and backbone name the row
    rows = list(csv.DictReader(io.StringIO(csv_text(report))))
    assert list(rows[0])[list(rows[0]).index("system") + 1] == "backbone"
    ours = {(r["system"], r["backbone"]): r["f1"] for r in rows if r["source"] == "ours"}
    assert set(ours) == {("bert-crf", "–"), ("umt", "resnet152"), ("umt", "vgg16")}
    for backbone, cell in f1.items():
        assert f"{float(ours[('umt', backbone)]):.2f} ± 0.00" == cell
    # the terminal: a backbone column in each dataset's table
    console = Console(file=io.StringIO(), width=250, color_system=None)
    for table in rich_tables(report.table):
        console.print(table)
    out = console.file.getvalue()
    assert re.search(r"┃ system\s+┃ backbone\s+┃\s+PER ┃", out)
    for (label, backbone), cell in f1_of.items():
        line = rf"^│ {label}\s+│ {backbone}\s+│.*│\s+{re.escape(cell)} │ 2 │\s*$"  # F1, then n
        assert re.search(line, out, re.MULTILINE), (label, backbone)


def test_the_papers_row_comes_once_with_the_papers_backbone(backbone_runs):
    root, _ = backbone_runs
    report = build_report(root, paper=True, resamples=R, cases=0)
    shown = [(label, backbone) for label, backbone, _ in rows_of(report)]
    umt_rows = shown[shown.index(("umt", "resnet152")) :][:3]
    assert umt_rows == [("umt", "resnet152"), ("paper: UMT-BERT-CRF", "resnet152"), ("umt", "vgg16")]
    assert shown.count(("paper: UMT-BERT-CRF", "resnet152")) == 1
    assert ("paper: BERT-CRF", "–") in shown  # a text-only row of the paper's
    # a system the paper has but nothing ran: our row reads no images (dash), the paper's its backbone
    gvatt = shown.index(("gvatt-bert-crf", "–"))
    assert shown[gvatt + 1] == ("paper: GVATT-BERT-CRF", "resnet152")
    paper = [
        (r["system"], r["backbone"]) for r in csv.DictReader(io.StringIO(csv_text(report))) if r["source"] == "paper"
    ]
    assert paper.count(("umt", "resnet152")) == 1 and ("bert-crf", "–") in paper


def test_where_backbone_keeps_one_backbones_rows_beside_the_text_only_ones(backbone_runs, monkeypatch, capsys):
    root, f1 = backbone_runs
    report = build_report(root, resamples=R, cases=0, pick=Pick.parse("dev", ["backbone=vgg16"]))
    assert [g.system.label for g in report.groups] == ["bert-crf", "umt (vgg16)"]
    assert [(label, backbone) for label, backbone, _ in rows_of(report)] == [("bert-crf", "–"), ("umt", "vgg16")]
    left = report.choice("twitter2017", System("umt", backbone="resnet152"))
    assert left.chosen is None and [status for _, status in left.configurations] == [
        "left out by --where backbone=vgg16"
    ]
    assert "| twitter2017 | umt (resnet152) |  | 1,2 | left out by --where backbone=vgg16 | 100.00 ± 0.00 |" in (
        markdown(report)
    )
    out = root.parent / "out"
    args = ["report", "--runs", str(root), "--resamples", "10", "--cases", "0", "--out", str(out), "--format", "csv"]
    assert umt(monkeypatch, *args, "--where", "backbone=resnet152") == 0
    rows = list(csv.DictReader(io.StringIO((out / "table2.csv").read_text())))
    assert [(r["system"], r["backbone"]) for r in rows] == [("bert-crf", "–"), ("umt", "resnet152")]
    assert f"{float(rows[1]['f1']):.2f} ± 0.00" == f1["resnet152"]
    capsys.readouterr()
    assert umt(monkeypatch, *args, "--where", "backbone=") == 2
    assert "--where backbone=: name the image backbone" in capsys.readouterr().err


def test_ablations_are_measured_against_umt_on_the_same_backbone(tmp_path):
    words, gold = make_posts(30)
    f1 = {}
    for model, backbone, wrong in (("umt", "resnet152", set()), ("umt", "vgg16", {0, 1, 2}),
                                   ("umt-no-esd", "vgg16", set(range(0, 30, 3)))):  # fmt: skip
        pred = predicted(gold, wrong)
        write_run(seed_dir(tmp_path / backbone, model, 1), model, words, gold, pred, backbone=backbone)
        f1[model, backbone] = score(gold, pred)[PRIMARY]["f1"]
    report = build_report(tmp_path, ablations=True, resamples=R, cases=0)
    rows = {(row.label, row.backbone): row.cells["twitter2017"] for _, rows in report.table.sections for row in rows}
    assert list(rows) == [("umt", "resnet152"), ("umt", "vgg16"), ("umt-no-esd", "vgg16")]
    assert rows[("umt", "resnet152")][3] == rows[("umt", "vgg16")][3] == "–"
    assert rows[("umt-no-esd", "vgg16")][3] == f"{100 * (f1['umt-no-esd', 'vgg16'] - f1['umt', 'vgg16']):+.2f}"
    assert [(c.a.label, c.b.label) for c in report.comparisons] == [("umt-no-esd (vgg16)", "umt (vgg16)")]
    # the ablations no backbone ran are missing; umt-no-esd on ResNet-152 is no row, so not missing either
    missing = {run.system.label for run in report.problems if run.state is RunState.MISSING}
    assert missing == {"umt-no-conversion", "umt-no-image-aware-wr", "umt-no-visual-gate"}


def test_a_recorded_cache_that_names_no_backbone_is_a_damaged_config(tmp_path):
    words, gold = make_posts(6)
    for name, backbone in (("none", None), ("number", 152), ("blank", " "), ("newline", "resnet\n152")):
        folder = write_run(tmp_path / name / "seed1", "umt", words, gold, gold, backbone="resnet152")
        config = json.loads((folder / RunDir.CONFIG).read_text())
        manifest = config["features"]["manifest"]
        if backbone is None:
            del manifest["backbone"]
        else:
            manifest["backbone"] = backbone
        (folder / RunDir.CONFIG).write_text(json.dumps(config))
    for run in collect_runs(tmp_path):
        assert run.state is RunState.HALF_WRITTEN, run.path
        assert run.note.startswith("config.json: damaged run config (features.manifest.backbone must name"), run.note
    # a run trained with --no-images reads no images, whatever cache it names
    folder = write_run(tmp_path / "noimg" / "seed1", "umt", words, gold, gold, no_images=True, backbone="resnet152")
    (run,) = [run for run in collect_runs(tmp_path) if run.path == folder]
    assert run.system == System("umt", no_images=True) and run.system.label == "umt (no images)"


def test_a_model_whose_only_backbone_run_is_unfinished_is_not_also_missing(tmp_path):
    words, gold = make_posts(6)
    write_run(seed_dir(tmp_path, "bert-crf", 1), "bert-crf", words, gold, gold)
    unfinished = write_run(seed_dir(tmp_path, "umt", 1), "umt", words, gold, gold, backbone="vgg16", epochs=8)
    (unfinished / RunDir.METRICS).unlink()
    (unfinished / RunDir.LAST).write_bytes(b"state")
    report = build_report(tmp_path, resamples=R, cases=0)
    umt_problems = [(run.state, run.system) for run in report.problems if run.system and run.system.model == "umt"]
    assert umt_problems == [(RunState.RESUMABLE, System("umt", backbone="vgg16"))]
