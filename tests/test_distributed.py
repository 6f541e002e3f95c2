"""Training under torchrun (2 CPU processes, gloo) against one process: the same steps, every
post evaluated once, resume; and gradient accumulation against whole steps, in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_WORDS, write_tiny_dataset

from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.tiny import build_tiny_encoder
from umt.pipeline.run_dir import RunDir
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.training.sampling import StepSampler
from umt.stages import train
from umt.stages.requests import TrainRequest

WORKER = Path(__file__).with_name("ddp_worker.py")
#: Every weight of the 2-process model is within this of the 1-process model's (float sums in
#: another order: the all-reduce adds two half-step gradients, which Adam's normalisation can
#: magnify for parameters whose gradients are near zero; measured up to about 1e-5).
WEIGHT_TOLERANCE = 1e-4
TIMEOUT_S = 300
#: Dev and test sizes not divisible by 2: the last window of each falls to one process only.
SIZES = (40, 13, 11)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("ddp")
    encoder = build_tiny_encoder(base / "encoder", words=TINY_WORDS, dropout=0.0)
    root = write_tiny_dataset(base / "data", sizes=SIZES)
    return {"base": base, "encoder": encoder, "root": root}


def _spec(setup: dict, out: Path, **train) -> dict:
    return {
        "dataset": "tiny", "model": "bert-crf", "data_root": str(setup["root"]), "out": str(out),
        "model_cfg": {"encoder": str(setup["encoder"]), "heads": 4, "dropout": 0.0},
        "train_cfg": {"epochs": 3, "batch_size": 8, "lr": 5e-3, "warmup": 0.0, "seed": 3, **train},
    }  # fmt: skip


def _torchrun(spec: dict, processes: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               str(WORKER), json.dumps(spec)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(setup) -> dict:
    one, two = setup["base"] / "one", setup["base"] / "two"
    _torchrun(_spec(setup, one), 1)
    _torchrun(_spec(setup, two), 2)
    return {"one": RunDir.open(one), "two": RunDir.open(two)}


def _largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_train_the_model_one_process_trains(runs, setup):
    from safetensors.torch import load_file

    one, two = runs["one"].best_weights(), runs["two"].best_weights()
    assert _largest_difference(one, two) < WEIGHT_TOLERANCE
    # ...and training moved the weights far more than that: the comparison can fail
    start = load_file(setup["encoder"] / "model.safetensors")
    name = next(k for k in start if k.endswith("word_embeddings.weight"))
    moved = (one[f"encoder.model.{name.removeprefix('bert.')}"] - start[name]).abs().max().item()
    assert moved > 100 * WEIGHT_TOLERANCE
    assert runs["one"].metrics()["best_epoch"] == runs["two"].metrics()["best_epoch"]


def test_evaluation_under_two_processes_counts_every_post_once(runs, setup):
    for split in ("valid", "test"):
        assert runs["one"].metrics()[split] == runs["two"].metrics()[split]
        gold_entities = 2 * SIZES[("valid", "test").index(split) + 1]  # one PER and one LOC per post
        assert runs["two"].metrics()[split]["default"]["support"] == gold_entities
    predictions = [(run.path / RunDir.PREDICTIONS).read_text() for run in (runs["one"], runs["two"])]
    assert predictions[0] == predictions[1]
    assert predictions[1].count("# image: ") == SIZES[2]
    assert runs["two"].metrics()["test"]["default"]["f1"] > 0.5  # a model that tags


def test_resume_under_two_processes_is_exact(runs, setup):
    out = setup["base"] / "resumed"
    _torchrun({**_spec(setup, out), "stop_after_epoch": 0}, 2)
    assert RunDir(out).resumable and not RunDir(out).finished
    _torchrun({**_spec(setup, out), "resume": True}, 2)
    resumed, straight = RunDir.open(out), runs["two"]
    assert _largest_difference(resumed.best_weights(), straight.best_weights()) == 0.0
    assert resumed.metrics()["test"] == straight.metrics()["test"]
    assert [e["event"] for e in resumed.events()].count("resume") == 1


def test_accumulated_parts_make_the_whole_step(setup, tmp_path, one_thread):
    def trained(out: Path, **train_cfg) -> dict:
        spec = _spec(setup, out, **train_cfg)
        request = TrainRequest(
            dataset="tiny",
            model="bert-crf",
            data_root=setup["root"],
            model_cfg=ModelConfig(**spec["model_cfg"]),
            train_cfg=TrainConfig(**spec["train_cfg"]),
            out=out,
        )
        train.run(request)
        return RunDir.open(out).best_weights()

    whole = trained(tmp_path / "whole")
    assert _largest_difference(whole, trained(tmp_path / "parts", grad_accum=3)) < WEIGHT_TOLERANCE
    assert _largest_difference(whole, trained(tmp_path / "half", batch_size=4)) > 100 * WEIGHT_TOLERANCE


def test_every_window_is_trained_once_per_epoch_in_the_same_steps():
    n, batch = 23, 8
    single = StepSampler(n, batch, seed=5)
    single.set_epoch(2)
    steps = [single.order()[s : s + batch] for s in range(0, n, batch)]
    for world, accum in ((2, 1), (3, 2), (4, 3)):
        shares = [StepSampler(n, batch, 5, accum, rank, world) for rank in range(world)]
        for sampler in shares:
            sampler.set_epoch(2)
            assert len(sampler.parts()) == 3 * accum
        parts = [sampler.parts() for sampler in shares]
        for s, step in enumerate(steps):
            mine = [part for rank_parts in parts for part in rank_parts[s * accum : (s + 1) * accum]]
            assert sorted(i for part in mine if part.size for i in part.indices) == sorted(step)
            assert sum(part.size for part in mine) == len(step) and {p.step_size for p in mine} == {len(step)}
    other = StepSampler(n, batch, seed=5)
    other.set_epoch(3)
    assert other.order() != single.order()


def test_length_buckets_group_similar_windows_and_still_visit_each_once():
    rng = torch.Generator().manual_seed(0)
    n, batch = 203, 8
    lengths = torch.randint(3, 60, (n,), generator=rng).tolist()

    def spread(sampler: StepSampler) -> float:
        steps = [order[s : s + batch] for order in [sampler.order()] for s in range(0, n, batch)]
        return sum(max(lengths[i] for i in step) - min(lengths[i] for i in step) for step in steps) / len(steps)

    plain, bucketed = StepSampler(n, batch, 1), StepSampler(n, batch, 1, lengths=lengths, bucket=10)
    for epoch in (0, 1):
        bucketed.set_epoch(epoch)
        order = bucketed.order()
        assert sorted(order) == list(range(n)) and order == bucketed.order()
        assert spread(bucketed) < spread(plain) / 4
    first, second = (StepSampler(n, batch, 1, lengths=lengths, bucket=10) for _ in range(2))
    second.set_epoch(1)
    assert first.order() != second.order()
