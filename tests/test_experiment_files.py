"""Experiment files (``umt train --config exp.yaml``): the options a file gives reach the request
and the run's config.json, typed options win over it, every mistake is one line naming file:line,
and every example in experiments/ parses through the real command line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from umt.cli import main
from umt.experiment_file import MAX_BYTES
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.run_dir import RunDir
from umt.stages import reproduce as reproduce_stage
from umt.stages import sweep as sweep_stage
from umt.stages import train as train_stage
from umt.stages.requests import ReproduceRequest, SweepRequest, TrainRequest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def umt(argv: list, capsys) -> tuple[int, str]:
    """Run ``umt ARGV`` in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    return exited.value.code, capsys.readouterr().err


@pytest.fixture
def requests_of(monkeypatch, capsys):
    """``requests_of(argv)``: the request ``umt ARGV`` builds, its stage stubbed out (nothing trains)."""

    def parse(argv: list) -> TrainRequest | ReproduceRequest | SweepRequest:
        made: list = []
        monkeypatch.setattr(train_stage, "run", made.append)
        monkeypatch.setattr(reproduce_stage, "run", made.append)
        monkeypatch.setattr(sweep_stage, "run", made.append)
        code, err = umt(argv, capsys)
        assert code == 0, err
        (request,) = made
        return request

    return parse


# ---- the file's values, and the command line's over them -------------------------------------------


def test_every_kind_of_option_reaches_the_request(tmp_path, requests_of):
    exp = write(
        tmp_path / "exp.yaml",
        f"""
        dataset: tiny
        data_root: {tmp_path}
        model: bilstm-crf
        word-vectors: random
        features: feats.h5
        no-images: yes
        epochs: 3
        batch_size: 4
        lr: 2e-3
        seeds: [4, 5]
        out: {tmp_path / "runs"}
        device: cpu
        num-workers: 1
        precision: fp32
        recipe: paper
        overwrite: true
        set:
          dropout: 0.3
          compile: false
        """,
    )
    req = requests_of(["train", "--config", exp])
    assert (req.dataset, req.model, req.data_root, req.features) == ("tiny", "bilstm-crf", tmp_path, Path("feats.h5"))
    assert (req.no_images, req.overwrite, req.resume, req.settings, req.seeds) == (True, True, False, "paper", (4, 5))
    assert req.out == tmp_path / "runs"
    train = req.train_cfg
    assert (train.epochs, train.batch_size, train.lr, train.device, train.num_workers) == (3, 4, 2e-3, "cpu", 1)
    assert (train.precision, train.compile, req.model_cfg.dropout, req.model_cfg.word_vectors) == (
        "fp32",
        False,
        0.3,
        "random",
    )


def test_a_files_values_count_as_given_over_the_recipe(tmp_path, requests_of):
    """bilstm-crf's recipe trains at lr 0.015 and dropout 0.5: the file's values replace them, as flags do."""
    exp = write(tmp_path / "exp.yaml", "model: bilstm-crf\nword-vectors: random\nlr: 0.002\nset: {dropout: 0.3}\n")
    model_cfg, train_cfg = requests_of(["train", "--config", exp]).configs()
    assert (train_cfg.lr, model_cfg.dropout, train_cfg.optimizer) == (0.002, 0.3, "sgd")
    plain_model, plain_train = requests_of(["train", "--model", "bilstm-crf", "--word-vectors", "random"]).configs()
    assert (plain_train.lr, plain_model.dropout) == (0.015, 0.5)


def test_typed_options_win_and_set_adds_to_the_files(tmp_path, requests_of):
    exp = write(
        tmp_path / "exp.yaml",
        """
        model: umt
        lr: 0.5
        seeds: [1, 2]
        set:
          dropout: 0.3
          esd_weight: 0.2
        """,
    )
    req = requests_of(["train", "--config", exp, "--lr", "0.001", "--seeds", "7", "--set", "dropout=0.1"])
    assert (req.train_cfg.lr, req.seeds) == (0.001, (7,))
    assert (req.model_cfg.dropout, req.model_cfg.esd_weight) == (0.1, 0.2)
    assert {"lr", "dropout", "esd_weight"} <= req.explicit


def test_reproduce_reads_a_file_too(tmp_path, requests_of):
    exp = write(tmp_path / "exp.yaml", "systems: [bert-crf, umt]\nseeds: [1, 2]\nepochs: 2\nrecipe: default\n")
    req = requests_of(["reproduce", "--config", exp, "--epochs", "3"])
    assert (req.systems, req.seeds, req.train_overrides, req.settings) == (
        "bert-crf,umt",
        (1, 2),
        {"epochs": 3},
        "default",
    )


def test_file_values_reach_config_json_and_a_flag_overrides_them(tiny_root, tiny_encoder_dir, tmp_path, one_thread):
    out = tmp_path / "run"
    exp = write(
        tmp_path / "exp.yaml",
        f"""
        dataset: tiny
        data-root: {tiny_root}
        model: bert-crf
        encoder: {tiny_encoder_dir}
        out: {out}
        epochs: 1
        batch-size: 8
        lr: 0.5
        seed: 3
        set: {{heads: 4, dropout: 0.2, warmup: 0.0}}
        """,
    )
    with pytest.raises(SystemExit) as exited:
        main(["train", "--config", str(exp), "--lr", "0.002"])
    assert exited.value.code == 0
    stored = RunDir(out).config()
    assert (stored.train_cfg.lr, stored.train_cfg.epochs, stored.train_cfg.batch_size) == (0.002, 1, 8)
    assert (stored.model_cfg.dropout, stored.model_cfg.heads, stored.train_cfg.seed) == (0.2, 4, 3)
    raw = json.loads((out / "config.json").read_text())
    assert raw["train"]["lr"] == 0.002 and raw["model_config"]["dropout"] == 0.2


# ---- mistakes: one line naming the file and its line ---------------------------------------------------


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("model: umt\nepochs: 2\nlrr: 1\n", 3, "unknown key 'lrr' for umt train (did you mean 'lr'?)"),
        ("dropout: 0.3\n", 1, "unknown key 'dropout' for umt train (a model or training setting: give it under set:"),
        ("xyz: 1\n", 1, "unknown key 'xyz' for umt train; its keys: backbone, batch-size, data-root, dataset,"),
        ("model: umt\nepochs: 1.5\n", 2, "epochs '1.5': "),
        ("no-images: maybe\n", 1, "no-images 'maybe': "),
        ("model: umt\nset:\n  heads: 4\n  dropout: abc\n", 4, "--set dropout=abc: expected a float"),
        ("set: {dropuot: 0.3}\n", 1, "--set dropuot: unknown setting"),
        ("seeds: [1,\n  x]\n", 1, "--seeds '1,x': expected comma-separated whole numbers"),
        ("dataset: [[a]]\n", 1, "dataset: expected a plain value, got a list"),
        ("model: umt\nlr:\n", 2, "lr has no value (leave the key out for the default)"),
        ("dataset: {a: b}\n", 1, "dataset: expected a plain value, got a mapping"),
        ("seeds: []\n", 1, "seeds: expected a value, got an empty list"),
        ("batch-size: 8\nepochs: 2\nbatch_size: 4\n", 3, "'batch_size' is given twice (first on line 1)"),
        ("model: umt\nset: {dropout: 0.1\n", 3, "not valid YAML: while parsing a flow mapping, expected ',' or '}'"),
        ("model: umt\n  epochs: 2\n", 2, "not valid YAML: mapping values are not allowed here"),
        (
            "model: !!python/object/apply:os.system [ls]\n",
            1,
            "not valid YAML: could not determine a constructor for the tag",
        ),
        ("- model: umt\n", 1, "expected a mapping of option names to values, got a list"),
        ("model: umt\n---\nlr: 1\n", 2, "not valid YAML: expected a single document in the stream, but found another"),
        ("[a]: 1\n", 1, "not valid YAML: while constructing a mapping, found unhashable key"),
    ],
)
def test_a_mistake_in_the_file_names_its_line(tmp_path, capsys, text, where, words):
    exp = tmp_path / "exp.yaml"
    exp.write_text(text, encoding="utf-8")
    code, err = umt(["train", "--config", exp], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {exp}:{where}: {words}"), err


def test_a_file_that_cannot_be_read_is_one_line(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# x\n" * (MAX_BYTES // 4 + 1))
    (tmp_path / "latin1.yaml").write_bytes(b"model: umt\ndataset: caf\xe9\n")
    cases = {
        tmp_path / "absent.yaml": "does not exist",
        tmp_path: "is not a file",
        big: "is larger than 1 MiB",
        write(tmp_path / "empty.yaml", "# only a comment\n"): "is empty",
        tmp_path / "latin1.yaml": f"{tmp_path / 'latin1.yaml'}:2: not UTF-8 text",
        write(tmp_path / "scalar.yaml", "umt\n"): "scalar.yaml:1: expected a mapping of option names to values",
    }
    for path, words in cases.items():
        code, err = umt(["train", "--config", path], capsys)
        assert code == 2 and err.count("\n") == 1 and words in err, (path, err)


def test_reproduce_names_its_own_keys(tmp_path, capsys):
    exp = write(tmp_path / "exp.yaml", "systems: table2\nmodel: umt\n")
    code, err = umt(["reproduce", "--config", exp], capsys)
    assert code == 2 and f"{exp}:2: unknown key 'model' for umt reproduce" in err, err


def test_a_bad_file_is_refused_before_torch_loads(tmp_path):
    exp = write(tmp_path / "exp.yaml", "model: umt\nlrr: 1\n")
    check = "import sys\nfrom umt.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    check += "print('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", check, "train", "--config", str(exp)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.stdout.strip() == "False" and f"{exp}:2: unknown key 'lrr'" in done.stderr, done


# ---- the examples in experiments/ ------------------------------------------------------------------------


def command_of(example: Path) -> str:
    """The command an example's header runs it with: ``# umt COMMAND --config experiments/NAME``."""
    found = re.search(rf"^#\s+umt (\S+) --config experiments/{re.escape(example.name)}\s*$", example.read_text(), re.M)
    assert found, f"{example.name}: its header shows no `umt COMMAND --config experiments/{example.name}` line"
    return found.group(1)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_an_example_file_parses_into_its_request(example, requests_of):
    req = requests_of([command_of(example), "--config", example])
    if isinstance(req, SweepRequest):
        assert req.search_space().names  # the grid parses
        req = req.base
    planned = [req] if isinstance(req, TrainRequest) else [item.request for item in reproduce_stage.plan(req)]
    for request in planned:
        model_cfg, _ = request.configs()
        get_recipe(request.model).configure(model_cfg)  # no set: contradicts the model's fixed switches


def family(name: str) -> tuple[str, str]:
    """A model's family: its text side and its fusion (none, the paper's MMI, or a baseline's)."""
    recipe = get_recipe(name)
    fusion = recipe.fixes.get("fusion", "mmi") if recipe.multimodal else "none"
    return str(recipe.text), fusion if fusion in ("none", "mmi") else "baseline fusion"


def test_every_model_family_has_an_example():
    examples = [e for e in EXAMPLES if command_of(e) == "train"]
    models = {re.search(r"^model: (\S+)", e.read_text(), re.M).group(1) for e in examples}
    assert {family(name) for name in model_names()} <= {family(name) for name in models}
