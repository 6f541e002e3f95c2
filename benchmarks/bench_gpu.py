"""One GPU, one report: stage one, training, prediction and a torchrun smoke run, in under 8 minutes.

Run it from the repository root of a checkout installed with ``pip install -e .``, on the GPU
machine (no network needed: every weight is random and every input generated)::

    python benchmarks/bench_gpu.py                      # one H200: ~3.5 min, then compile until 450 s
    python benchmarks/bench_gpu.py --json gpu.json      # the final JSON also written to a file
    python benchmarks/bench_gpu.py --sections compile --time-budget 420 --compile-timeout 200   # compile alone
    OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 python benchmarks/bench_gpu.py --device cpu --smoke   # CPU check

Expected time: every section but ``compile`` is estimated at 3-4 minutes on one H200 (not yet
measured there); the compile section runs last and is cut at ``--time-budget`` (450 s after
start-up), so the whole script ends within about 7.7 minutes whatever compilation costs. The
CPU smoke run takes about 1.5 minutes on two idle cores (3.5 on two busy ones).

It prints one rich table (a row per measurement; a measurement that failed shows its error's
first line and the script carries on), each section's wall time, then the report as JSON.
Every measurement is bounded by a fixed number of images, steps or posts. The figures:

- ``extract``: stage one's images/s with a random ResNet-152 (``--weights random``) on photo-like
  500x375 JPEGs (``bench_extract.write_photos``), in fp32 and bf16 (and fp16, the autocast the
  job itself uses on CUDA):

  - *bare*: the backbone's forward alone, on pixels decoded beforehand and already on the
    device (no file reads, no decoding, no writes), under that precision's autocast;
  - *full*: the real ``extract-images`` path in a fresh process (``bench_extract``): decoding in
    DataLoader workers, preprocessing, forward, the chunk writes of the cache. The rate is the
    job's steady one (model load and final assembly excluded; the note gives end to end).
    fp32 is ``amp=False``; fp16 is the job's ``--amp``; bf16 is the same path with the job's
    autocast dtype (``vision.extract.AUTOCAST_DTYPE``, float16) set to bfloat16 in that process.
    On a CPU the job never autocasts, so full bf16 is skipped there.

- ``train``: training sentences/s of ``bert-crf`` and ``umt`` (a random encoder of bert-base size,
  768 wide, 12 layers, 12 heads; grids from a random feature cache, ``common.write_random_cache``)
  through the trainer (``fit``, as ``bench_train``'s "full": loading, collation, forward, backward,
  optimiser; dev evaluation not counted), fp32 and bf16 autocast. Each runs two epochs of
  ``--steps`` steps of ``--batch-size`` posts; the figure is the second epoch's rate, the note
  gives the first epoch's seconds (warm-up, and for ``compile`` the compilation).
- ``compile``: the same with ``torch.compile`` (``TrainConfig.compile``, bf16 first), each in its
  own process, killed after ``--compile-timeout`` seconds or when the ``--time-budget`` is spent
  (the row says so); the note counts the graphs dynamo compiled and its graph breaks (the CRF
  head's data-dependent branches break the graph, and its shapes vary from batch to batch).
  Inductor caches what it compiled under ``/tmp/torchinductor_$USER``, so a second run of
  ``--sections compile`` on the same machine should compile faster.
- ``predict``: posts/s of ``umt predict`` (``stages.predict.run``) tagging generated posts that
  come with image files, with a umt run trained for one short epoch in fp32 and one in bf16
  (the run's precision is the tagging precision). *cold*: a fresh image cache, so each image is
  decoded and run through the ResNet (which is built on first use) in the command; *warm*: the
  same posts again, grids read from the image cache (files still read and hashed).
- ``torchrun``: ``python -m torch.distributed.run --nproc_per_node 1 --standalone`` of a tiny
  ``bert-crf`` training run (``tests/ddp_worker.py``) whose process first joins an NCCL process
  group (gloo on a CPU) and checks an all-reduce; pass/fail and the wall time of the command.
  With one process the trainer itself does not wrap the model in DDP (``World.distributed``).

``--smoke`` shrinks everything (a 48-wide 2-layer encoder, two steps, two images, four posts) so
the script itself can be checked on a CPU; on a CPU it also skips bf16 extraction and the compile
section (compiling even the tiny model took 205 s on two cores; ``--compile on`` forces it).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from bench_extract import _extract_once, full_rates, predecode, write_photos  # noqa: E402
from bench_train import Bench  # noqa: E402
from common import ENCODER_SIZES, peak_rss_mb, random_encoder, write_random_cache  # noqa: E402

from umt.pipeline.data.features import open_features  # noqa: E402
from umt.pipeline.data.layout import images_dir, load_dataset  # noqa: E402
from umt.pipeline.data.synthetic import generate_synthetic, sample_words  # noqa: E402
from umt.pipeline.labels import LabelVocab  # noqa: E402
from umt.pipeline.models.config import ModelConfig  # noqa: E402
from umt.pipeline.models.tiny import build_tiny_encoder  # noqa: E402
from umt.pipeline.run_dir import RunDir  # noqa: E402
from umt.pipeline.runtime.devices import resolve_device  # noqa: E402
from umt.pipeline.runtime.distributed import current_world  # noqa: E402
from umt.pipeline.runtime.environment import environment  # noqa: E402
from umt.pipeline.runtime.precision import Precision  # noqa: E402
from umt.pipeline.train_config import TrainConfig  # noqa: E402
from umt.pipeline.training.loop import fit  # noqa: E402
from umt.stages.requests import ExtractRequest, PredictRequest, TrainRequest  # noqa: E402

DDP_WORKER = Path(__file__).resolve().parents[1] / "tests" / "ddp_worker.py"
MODELS = ("bert-crf", "umt")
SECTIONS = ("extract", "train", "predict", "torchrun", "compile")
#: The tiny encoder of --smoke and of the torchrun run: (hidden, layers, heads), build_tiny_encoder's default.
TINY = (48, 2, 2)
#: Sizes per profile; a flag given on the command line wins.
PROFILES = {
    "gpu": {"images": 1024, "extract_batch_size": 32, "encoder": "bert-base", "steps": 40, "batch_size": 16,
            "dev_posts": 64, "predict_posts": 512, "compile_timeout": 100.0, "time_budget": 450.0},
    "smoke": {"images": 2, "extract_batch_size": 2, "encoder": "tiny", "steps": 2, "batch_size": 4,
              "dev_posts": 4, "predict_posts": 4, "compile_timeout": 60.0, "time_budget": 170.0},
}  # fmt: skip
#: Posts of the small dataset the predict runs (and the torchrun run) train on: train, valid.
PREDICT_TRAIN_POSTS = {"gpu": (32, 16), "smoke": (4, 2)}
EPOCHS = 2  # the first warms up (and compiles); the second is measured
RESULT_MARK = "BENCH_GPU_RESULT "  # the line a child process reports on
TORCHRUN_TIMEOUT_S = 240
MIN_COMPILE_S = 30.0  # a compile measurement is not started with less time left than this


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class ChildFailed(RuntimeError):
    """A child process's own error line (already ``Type: message``)."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, ChildFailed):
        return text.splitlines()[0] if text else "the child process failed"
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _quiet() -> Console:
    return Console(file=io.StringIO())


class Report:
    """The rows of the table and the sections' wall times."""

    def __init__(self, console: Console, args: argparse.Namespace):
        self.console, self.args, self.rows, self.sections = console, args, [], {}
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def measure(self, section: str, name: str, unit: str, function: Callable[[], dict]) -> dict:
        """``function()`` -> {"value": ..., "note": ..., more}; an exception becomes the row's error."""
        started = time.perf_counter()
        row = {"section": section, "name": name, "unit": unit, "value": None, "note": "", "error": None}
        try:
            row.update(function())
        except Exception as e:  # noqa: BLE001 - reported in the table, the next measurement runs
            row["error"] = first_line(e)
        row["seconds"] = round(time.perf_counter() - started, 2)
        self.rows.append(row)
        shown = row["error"] or (
            f"{row['value']:.2f} {unit}; {row['note']}" if row["value"] is not None else row["note"]
        )
        self.console.print(f"  {section} / {name}: {escape(shown)} ({row['seconds']:.1f} s)", highlight=False)
        return row

    def skip(self, section: str, name: str, unit: str, why: str) -> None:
        self.rows.append({"section": section, "name": name, "unit": unit, "value": None, "note": f"skipped: {why}",
                          "error": None, "seconds": 0.0})  # fmt: skip

    def section(self, name: str, function: Callable[[], None]) -> None:
        self.console.rule(f"[bold]{name}")
        started = time.perf_counter()
        try:
            function()
        except Exception as e:  # noqa: BLE001 - the section's setup failed: one row says why
            self.rows.append({"section": name, "name": "(setup)", "unit": "", "value": None, "note": "",
                              "error": first_line(e), "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
        self.sections[name] = round(time.perf_counter() - started, 1)
        self.console.print(f"{name}: {self.sections[name]:.1f} s", highlight=False)


# ---- data ---------------------------------------------------------------------------------------


class Workspace:
    """The generated inputs every section reads: two synthetic datasets, encoders, a random cache."""

    def __init__(self, work: Path, args):
        self.work, self.args = work, args
        self.root = work / "data"
        generate_synthetic(self.root, "synth", seed=0, n_train=args.steps * args.batch_size, n_valid=args.dev_posts,
                           n_test=1)  # fmt: skip
        train, valid = PREDICT_TRAIN_POSTS[args.profile]
        generate_synthetic(self.root, "predict", seed=1, n_train=train, n_valid=valid, n_test=args.predict_posts)
        self.splits = load_dataset(self.root, "synth")
        words = sample_words(self.splits) + sample_words(load_dataset(self.root, "predict"))
        self.heads = ENCODER_SIZES.get(args.encoder, TINY)[2]
        self.encoder = self._encoder(args.encoder, words)
        self.tiny_encoder = self.encoder if args.encoder == "tiny" else self._encoder("tiny", words)
        images = sorted({p.image for split in ("train", "valid") for p in self.splits[split] if p.image is not None})
        self.cache = write_random_cache(work / "synth_resnet152.h5", images)

    def _encoder(self, size: str, words: list[str]) -> Path:
        folder = self.work / f"encoder-{size}"
        if size in ENCODER_SIZES:
            return random_encoder(folder, size, words)
        return build_tiny_encoder(folder, words=words, hidden=TINY[0], layers=TINY[1], heads=TINY[2])


# ---- stage one ----------------------------------------------------------------------------------


def bare_rate(extractor, batches: list[torch.Tensor], precision: Precision, device: torch.device) -> float:
    """Images/s of the forward alone (``bench_extract.bare_rate``, whose autocast is fixed to the job's)."""
    with torch.inference_mode(), precision.autocast():
        extractor(batches[0])  # warm-up: kernel selection and first-call allocations
        _sync(device)
        started = time.perf_counter()
        for pixels in batches:
            extractor(pixels).to(torch.float16)  # (B, 7, 7, 2048), as the job stores it
        _sync(device)
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def _extract_with_autocast(config: ExtractRequest, dtype: str) -> tuple[float, float]:
    """In a fresh process: the extraction job with ``dtype`` as its CUDA autocast dtype."""
    from umt.pipeline.vision import extract

    extract.AUTOCAST_DTYPE = getattr(torch, dtype)
    return _extract_once(config)


def full_rates_with(config: ExtractRequest, autocast: str | None) -> tuple[float, float]:
    """``bench_extract.full_rates``; with ``autocast``, that dtype in place of the job's float16."""
    if autocast is None:
        return full_rates(config)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_extract_with_autocast, config, autocast).result()


def bare_rows(report: Report, folder: Path, precisions: tuple[str, ...], device: torch.device) -> dict:
    """One bare row per precision, over the folder's images decoded onto the device; {precision: img/s}."""
    from umt.pipeline.vision.backbones import get_backbone

    args = report.args
    resnet152 = get_backbone("resnet152")
    batches = predecode(folder, args.extract_batch_size, device, resnet152.resize)
    extractor = resnet152.build("random").to(device)
    note = f"{sum(len(b) for b in batches)} images, batch {args.extract_batch_size}"
    rates: dict = {}
    for name in precisions:
        if device.type == "cpu" and args.smoke and name != "fp32":
            report.skip("extract", f"bare {name}", "img/s", "--smoke on a CPU")
            continue
        precision = Precision(name, device.type)
        row = report.measure(
            "extract",
            f"bare {name}",
            "img/s",
            lambda p=precision: {"value": bare_rate(extractor, batches, p, device), "note": note},
        )
        rates[name] = row["value"]
    return rates


def extract_section(report: Report, ws: Workspace, device: torch.device) -> None:
    args = ws.args
    folder = ws.work / "photos"
    folder.mkdir()
    write_photos(folder, args.images, 0)
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    bare = bare_rows(report, folder, precisions, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the bare model and pixels are gone; the full runs are other processes
    for name in precisions:
        if device.type != "cuda" and name != "fp32":
            report.skip("extract", f"full {name}", "img/s", "the job autocasts on CUDA only")
            continue
        out = ws.work / f"extract-{name}.h5"
        config = ExtractRequest(images=folder, out=out, weights="random", dtype="float16", device=str(device),
                                batch_size=args.extract_batch_size, amp=name != "fp32")  # fmt: skip

        def full(config=config, name=name, out=out) -> dict:
            try:
                steady, end_to_end = full_rates_with(config, "bfloat16" if name == "bf16" else None)
            finally:
                out.unlink(missing_ok=True)
            ratio = f"{steady / bare[name]:.2f} x bare, " if bare.get(name) else ""
            return {"value": steady, "end_to_end": end_to_end, "note": f"{ratio}end to end {end_to_end:.1f} img/s"}

        report.measure("extract", f"full {name}", "img/s", full)


# ---- training -----------------------------------------------------------------------------------


def make_bench(ws_paths: dict, model: str, precision: str, compile_model: bool, device: torch.device) -> tuple:
    """``bench_train.Bench`` over the generated dataset, for ``EPOCHS`` epochs, and the cache it reads."""
    root = Path(ws_paths["root"])
    splits = load_dataset(root, "synth")
    data = {"train": splits["train"], "valid": splits["valid"]}
    vocab = LabelVocab.from_sequences(p.labels for posts in splits.values() for p in posts)
    features, _ = open_features(Path(ws_paths["cache"]), root, "synth")
    options = types.SimpleNamespace(
        encoder=ws_paths["encoder"],
        heads=ws_paths["heads"],
        batch_size=ws_paths["batch_size"],
        precision=precision,
        num_workers=0,
        bucket=0,
    )
    bench = Bench(model, options, data, vocab, features, device)
    bench.cfg = dataclasses.replace(bench.cfg, epochs=EPOCHS, compile=compile_model)
    return bench, features


def measure_training(ws_paths: dict, model: str, precision: str, compile_model: bool, device: torch.device,
                     work: Path) -> dict:  # fmt: skip
    bench, features = make_bench(ws_paths, model, precision, compile_model, device)
    try:
        return train_rates(bench, work)
    finally:
        features.close()


def train_rates(bench: Bench, work: Path) -> dict:
    """Sentences/s of the last of ``bench.cfg.epochs`` trainer epochs; the first one's seconds. The
    run trains in a folder made here inside ``work``, and only that folder is removed after."""
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    run = RunDir(folder)
    try:
        with run.claimed(resume=False, overwrite=True):
            fit(bench.model(), bench.train, bench.dev, bench.text, bench.vocab, bench.cfg, run, console=_quiet())
            seconds = [e["train_seconds"] for e in run.events() if e["event"] == "epoch"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # a bert-base checkpoint with its optimiser is ~1.3 GB
    steps = -(-len(bench.train) // bench.cfg.batch_size)
    return {
        "value": len(bench.train) / max(seconds[-1], 1e-9),
        "first_epoch_s": seconds[0],
        "last_epoch_s": seconds[-1],
        "note": f"epoch 1 {seconds[0]:.1f} s, epoch {len(seconds)} {seconds[-1]:.2f} s ({steps} steps of "
        f"{bench.cfg.batch_size})",
    }


def _paths(ws: Workspace) -> dict:
    return {"root": str(ws.root), "cache": str(ws.cache), "encoder": str(ws.encoder), "heads": ws.heads,
            "batch_size": ws.args.batch_size}  # fmt: skip


def train_section(report: Report, ws: Workspace, device: torch.device) -> None:
    for model in MODELS:
        for precision in ws.args.precisions:

            def measure(model=model, precision=precision) -> dict:
                return measure_training(_paths(ws), model, precision, False, device, ws.work)

            report.measure("train", f"{model} {precision}", "sent/s", measure)
            if device.type == "cuda":
                torch.cuda.empty_cache()


def train_child(spec: dict) -> dict:
    """In a child process (``--child-train``): one compiled training measurement."""
    device = resolve_device(spec["device"])
    result = measure_training(spec, spec["model"], spec["precision"], True, device, Path(spec["work"]))
    try:
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        breaks = sum(counters["graph_break"].values())
        result.update(graphs=graphs, graph_breaks=breaks, note=f"{result['note']}; {graphs} graphs, {breaks} breaks")
    except Exception:  # noqa: BLE001 - the counters are a private detail of torch; the rate stands without them
        pass
    return result


def run_child(flag: str, spec: dict, timeout: float) -> dict:
    """This script in a new process (its own process group, killed whole at ``timeout``); its result."""
    command = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(spec)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the child and the compile workers it started
        process.communicate()
        raise TimeoutError(f"timed out after {timeout:.0f} s") from None
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result = json.loads(line.removeprefix(RESULT_MARK))
            if "error" in result:
                raise ChildFailed(result["error"])
            return result
    lines = [line for line in stderr.splitlines() if line.strip()]
    raise ChildFailed(lines[-1] if lines else f"the child process exited with {process.returncode}")


def compile_section(report: Report, ws: Workspace, device: torch.device, deadline: float) -> None:
    args = ws.args
    if args.compile == "off" or (args.compile == "auto" and args.smoke and device.type == "cpu"):
        why = "--compile off" if args.compile == "off" else "--smoke on a CPU (--compile on forces it)"
        for model in MODELS:
            for precision in args.precisions:
                report.skip("compile", f"{model} {precision} compiled", "sent/s", why)
        return
    for precision in reversed(args.precisions):  # bf16 first: what a GPU trains with by default
        for model in MODELS:
            name = f"{model} {precision} compiled"
            left = deadline - time.perf_counter()
            if left < MIN_COMPILE_S:
                report.skip("compile", name, "sent/s", f"--time-budget spent ({left:.0f} s left)")
                continue
            spec = {**_paths(ws), "model": model, "precision": precision, "device": str(device),
                    "work": str(ws.work)}  # fmt: skip
            timeout = min(args.compile_timeout, left)
            report.measure("compile", name, "sent/s", lambda spec=spec, t=timeout: run_child("--child-train", spec, t))


# ---- prediction ---------------------------------------------------------------------------------


def predict_section(report: Report, ws: Workspace, device: torch.device) -> None:
    from umt.stages import extract_images, predict, train

    args = ws.args
    pictures = images_dir(ws.root, "predict")
    cache = ws.work / "predict_resnet152.h5"
    # An untrained ResNet's activations on the drawn images (~1e7) fit neither float16 storage nor fp16 compute.
    extraction = ExtractRequest(
        dataset="predict", data_root=ws.root, out=cache, weights="random", dtype="float32", device=str(device),
        amp=False, num_workers=0,
    )  # fmt: skip
    extract_images.run(extraction, console=_quiet())
    posts = load_dataset(ws.root, "predict")["test"]
    jsonl = ws.work / "new_posts.jsonl"
    jsonl.write_text("".join(json.dumps({"tokens": p.tokens, "image": p.image}) + "\n" for p in posts))
    for precision in args.precisions:
        run = ws.work / f"predict-run-{precision}"
        request = TrainRequest(dataset="predict", model="umt", data_root=ws.root, features=cache,
                               model_cfg=ModelConfig(encoder=str(ws.encoder), heads=ws.heads),
                               train_cfg=TrainConfig(epochs=1, batch_size=args.batch_size, device=str(device),
                                                     precision=precision, seed=1), out=run)  # fmt: skip
        try:
            train.run(request, console=_quiet())
        except Exception as e:  # noqa: BLE001 - both rows of this precision say why
            for kind in ("cold", "warm"):
                report.rows.append({"section": "predict", "name": f"umt {precision} {kind}", "unit": "posts/s",
                                    "value": None, "note": "", "error": f"training the run: {first_line(e)}",
                                    "seconds": 0.0})  # fmt: skip
            continue
        image_cache = ws.work / f"image-cache-{precision}"
        for kind in ("cold", "warm"):  # warm: the same image cache, every grid already computed

            def tag(run=run, image_cache=image_cache, kind=kind, precision=precision) -> dict:
                out = ws.work / f"tags-{precision}-{kind}.jsonl"
                request = PredictRequest(
                    run=run, input=jsonl, output=out, images=pictures, image_cache=image_cache, device=str(device)
                )
                summary = predict.run(request, console=_quiet())
                rate = summary["posts"] / max(summary["seconds"], 1e-9)
                computed = summary["images_computed"]
                bad = summary["bad_lines"]
                note = f"{summary['posts']} posts ({bad} bad line{'s' * (bad != 1)}), {computed} images computed"
                return {"value": rate, "posts": summary["posts"], "images_computed": summary["images_computed"],
                        "note": note}  # fmt: skip

            report.measure("predict", f"umt {precision} {kind}", "posts/s", tag)


# ---- torchrun -----------------------------------------------------------------------------------


def torchrun_worker(spec: dict) -> None:
    """Under torchrun (``--torchrun-worker``): join the process group, check an all-reduce, then train
    exactly as the distributed tests do (``tests/ddp_worker.py``)."""
    import torch.distributed as dist

    backend = spec.pop("backend")
    world = current_world()
    device = torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
        device = torch.device("cuda", world.local_rank)
    dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None)
    try:
        total = torch.ones(1, device=device)
        dist.all_reduce(total)
        if int(total.item()) != world.size:
            raise RuntimeError(f"all_reduce over {backend} gave {total.item()}, expected {world.size}")
        sys.argv = [str(DDP_WORKER), json.dumps(spec)]
        runpy.run_path(str(DDP_WORKER), run_name="__main__")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def torchrun_section(report: Report, ws: Workspace, device: torch.device) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    out = ws.work / "torchrun-run"
    spec = {
        "dataset": "predict", "model": "bert-crf", "data_root": str(ws.root), "out": str(out), "backend": backend,
        "model_cfg": {"encoder": str(ws.tiny_encoder), "heads": TINY[2]},
        "train_cfg": {"epochs": 1, "batch_size": 8, "device": device.type, "precision": "fp32", "seed": 1},
    }  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--standalone",
               str(Path(__file__).resolve()), "--torchrun-worker", json.dumps(spec)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def smoke() -> dict:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            raise RuntimeError(f"exit {done.returncode}: {lines[-1] if lines else 'no output'}")
        f1 = RunDir.open(out).metrics()["test"]["default"]["f1"]
        return {"value": wall, "passed": True, "note": f"pass ({backend}, 1 process; test F1 {f1:.2f})"}

    row = report.measure("torchrun", f"1-process {backend} training", "s wall", smoke)
    row.setdefault("passed", False)


# ---- the report ---------------------------------------------------------------------------------


def print_table(console: Console, report: Report, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column, justify in (("section", "left"), ("measurement", "left"), ("result", "right"), ("unit", "left"),
                            ("wall s", "right"), ("note", "left")):  # fmt: skip
        table.add_column(column, justify=justify)
    for row in report.rows:
        if row["error"] is not None:
            result, note = "[red]failed[/]", f"[red]{escape(row['error'])}[/]"
        elif row["value"] is None:
            result, note = "-", escape(row["note"])
        else:
            result, note = f"{row['value']:.2f}", escape(row["note"])
        table.add_row(row["section"], row["name"], result, row["unit"], f"{row['seconds']:.1f}", note)
    console.print(table)
    times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.sections.items())
    console.print(f"sections: {times}; total {report.elapsed():.1f} s", highlight=False)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script (on a CPU)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"some of {','.join(SECTIONS)}")
    parser.add_argument("--precisions", default="fp32,bf16", help="training and prediction precisions")
    parser.add_argument("--images", type=int, help="generated JPEGs for stage one [gpu 1024, smoke 4]")
    parser.add_argument("--extract-batch-size", type=int, help="[gpu 32, smoke 2]")
    parser.add_argument("--encoder", choices=(*ENCODER_SIZES, "tiny"), help="random encoder [gpu bert-base]")
    parser.add_argument("--steps", type=int, help="training steps per epoch (two epochs) [gpu 40, smoke 3]")
    parser.add_argument("--batch-size", type=int, help="[gpu 16, smoke 4]")
    parser.add_argument("--dev-posts", type=int, help="dev posts evaluated after each epoch [gpu 64]")
    parser.add_argument("--predict-posts", type=int, help="new posts tagged per predict run [gpu 512]")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="the compile section (auto: off for --smoke on a CPU)")  # fmt: skip
    parser.add_argument("--compile-timeout", type=float, help="seconds per compiled measurement [gpu 100]")
    parser.add_argument("--time-budget", type=float,
                        help="no compiled measurement starts past this many seconds [gpu 450]")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument("--child-train", help=argparse.SUPPRESS)
    parser.add_argument("--torchrun-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.profile = "smoke" if args.smoke else "gpu"
    for name, value in PROFILES[args.profile].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {','.join(unknown)}; choose from {','.join(SECTIONS)}")
    return args


def main() -> None:
    args = parse_args()
    if args.child_train is not None:
        try:
            result = train_child(json.loads(args.child_train))
        except Exception as e:  # noqa: BLE001 - sent to the parent, which puts it in its table
            result = {"error": first_line(e)}
        print(RESULT_MARK + json.dumps(result), flush=True)
        return
    if args.torchrun_worker is not None:
        torchrun_worker(json.loads(args.torchrun_worker))
        return
    console = Console(width=170)
    report = Report(console, args)
    device = resolve_device(args.device)
    if device.type == "cpu" and not args.smoke:
        console.print("[yellow]note:[/] the GPU sizes on a CPU take far longer than 8 minutes; --smoke shrinks them")
    deadline = report.started + args.time_budget
    settings = {k: v for k, v in vars(args).items() if k not in ("child_train", "torchrun_worker", "json")}
    console.print(f"bench_gpu on {device}: {json.dumps(settings)}", highlight=False)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        holder: dict = {}
        report.section("setup", lambda: holder.update(ws=Workspace(Path(tmp), args)))
        ws = holder.get("ws")
        if ws is not None:
            steps = {
                "extract": lambda: extract_section(report, ws, device),
                "train": lambda: train_section(report, ws, device),
                "predict": lambda: predict_section(report, ws, device),
                "torchrun": lambda: torchrun_section(report, ws, device),
                "compile": lambda: compile_section(report, ws, device, deadline),
            }
            for name in SECTIONS:  # compile last: it alone may run into the time budget
                if name in args.sections:
                    report.section(name, steps[name])
    env = environment(device)
    title = (
        f"bench_gpu on {env.get('gpu', device)} (torch {torch.__version__}, {torch.get_num_threads()} threads), "
        f"encoder {args.encoder}, {args.steps} steps x {args.batch_size}, {args.images} images"
        + (", smoke" if args.smoke else "")
    )
    print_table(console, report, title)
    result = {
        "environment": env,
        "settings": settings,
        "results": report.rows,
        "sections_s": report.sections,
        "total_s": round(report.elapsed(), 1),
        "peak_rss_mb": round(peak_rss_mb(), 0),
    }
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
