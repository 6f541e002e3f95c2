"""Sharing a trained model: `umt export` writes the Hugging Face model-repository layout with a
model card; the folder, and the same folder as a snapshot in a (temporary) Hugging Face cache
loaded by hub id, tag exactly as the run does; int8 quantization keeps the tags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_imaged_run, place_in_hub_cache

import umt
from umt.cli import main
from umt.pipeline.errors import ConfigError
from umt.pipeline.sharing.export import export_run
from umt.pipeline.sharing.source import locate
from umt.stages import predict
from umt.stages.requests import PredictRequest

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = "alice/tiny-umt"


@pytest.fixture(scope="module")
def shared(tiny_root, tiny_encoder_dir, tmp_path_factory) -> dict:
    built = build_imaged_run(tmp_path_factory.mktemp("sharing"), tiny_root, tiny_encoder_dir)
    export = built["base"] / "export"
    export_run(built["run"], export, name=REPO)
    return {**built, "export": export}


def _posts(r: dict, tmp_path: Path) -> Path:
    lines = [
        {"text": "Great to see Jordan in Paris today", "image": "test0.png"},
        {"text": "Globex in Sydney", "image": "train1.png"},
        {"text": "Great to see the Jordan", "image": None},
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def _predict(model: str, r: dict, tmp_path: Path, name: str, **options) -> list[dict]:
    out = tmp_path / f"{name}.jsonl"
    request = PredictRequest(
        model, input=_posts(r, tmp_path), images=r["images"], image_cache=tmp_path / "grids", output=out, **options
    )
    predict.run(request)
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_the_export_is_a_model_repository_with_a_card_that_reports_the_runs_scores(shared):
    export = shared["export"]
    names = sorted(str(p.relative_to(export)) for p in export.rglob("*") if p.is_file())
    for expected in ("README.md", "config.json", "labels.json", "model.safetensors", "metrics.json"):
        assert expected in names
    assert "predictions_test.conll" in names and any(n.startswith("text/") for n in names)
    assert not any(n.endswith((".pt", ".bin", ".pkl")) for n in names)  # weights only, no pickles

    config = json.loads((export / "config.json").read_text())
    assert config["data_root"] == "" and config["features"]["path"] == ""  # no path of this machine
    assert (
        config["features"]["manifest"]
        == json.loads((shared["run"] / "config.json").read_text())["features"]["manifest"]
    )

    card = (export / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["library_name"] == "umt" and header["pipeline_tag"] == "token-classification"
    assert header["datasets"] == ["tiny"]
    metrics = json.loads((shared["run"] / "metrics.json").read_text())
    test_f1 = header["model-index"][0]["results"][0]["metrics"][0]
    assert test_f1["type"] == "f1"
    assert test_f1["value"] == pytest.approx(100 * metrics["test"]["default"]["f1"], abs=0.01)
    for kind, row in metrics["valid"]["default"]["per_type"].items():  # dev scores per type, as the run has them
        p, r, f = (f"{100 * row[k]:.2f}" for k in ("precision", "recall", "f1"))
        assert f"| dev | {kind} | {p} | {r} | {f} |" in card
    assert f'umt.load("{REPO}")' in card and "## Intended use and limitations" in card


def test_the_exported_folder_tags_new_posts_and_images_exactly_as_the_run(shared, tmp_path):
    from_run = _predict(str(shared["run"]), shared, tmp_path, "run")
    from_export = _predict(str(shared["export"]), shared, tmp_path, "export")
    assert from_export == from_run
    assert len(from_run) == 3 and any(r["entities"] for r in from_run)


def test_a_hub_id_loads_the_snapshot_from_the_hugging_face_cache(shared, hub_cache, tmp_path):
    place_in_hub_cache(shared["export"], hub_cache, REPO)
    assert locate(REPO).hub_id == REPO
    from_hub = _predict(REPO, shared, tmp_path, "hub")
    assert from_hub == _predict(str(shared["run"]), shared, tmp_path, "run")
    model = umt.load(REPO, device="cpu")
    assert model.tag(["Great to see Jordan in Paris today"]) == umt.load(shared["export"], device="cpu").tag(
        ["Great to see Jordan in Paris today"]
    )


def test_a_hub_id_missing_from_the_cache_offline_is_one_line(hub_cache, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["predict", "bob/no-such-model", "--input", os.devnull])
    assert stopped.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "bob/no-such-model" in message and "HF_HUB_OFFLINE" in message


def test_a_snapshot_linking_out_of_its_repository_is_refused(shared, hub_cache, tmp_path):
    snapshot = place_in_hub_cache(shared["export"], hub_cache, REPO)
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"format_version": 3}))
    (snapshot / "metrics.json").unlink()
    (snapshot / "metrics.json").symlink_to(outside)
    with pytest.raises(ConfigError, match="metrics.json is not a file of the repository's cache"):
        umt.load(REPO, device="cpu")


def test_export_refuses_a_folder_that_is_not_an_earlier_export(shared, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        export_run(shared["run"], mine)
    with pytest.raises(ConfigError, match="not an earlier umt export"):
        export_run(shared["run"], mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    again = tmp_path / "again"
    export_run(shared["run"], again)
    (again / "README.md").write_text("old card")
    export_run(shared["run"], again, name="x/y", overwrite=True)
    assert 'umt.load("x/y")' in (again / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if ".export-" in p.name]  # no temporary folder left


def test_int8_quantization_keeps_the_tags_of_new_posts(shared, tmp_path):
    fp32 = _predict(str(shared["run"]), shared, tmp_path, "fp32", device="cpu")
    int8 = _predict(str(shared["run"]), shared, tmp_path, "int8", device="cpu", quantize="int8")
    assert [r["tags"] for r in int8] == [r["tags"] for r in fp32]
    for a, b in zip(int8, fp32, strict=True):
        assert [e["score"] for e in a["entities"]] == pytest.approx([e["score"] for e in b["entities"]], abs=0.05)
    model = umt.load(shared["run"], device="cpu", quantize="int8").model
    from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

    fp32 = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"emission.linear", "span_detector.emission.linear"} <= set(fp32)  # the scores the CRF reads stay exact
    assert all(m.out_features < m.in_features for m in fp32.values())  # only narrowing layers stay fp32
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert len(int8) > 10 and all(m.out_features >= m.in_features for m in int8)


def test_eval_of_a_hub_id_scores_as_the_run_did(shared, hub_cache, tiny_root, tmp_path, monkeypatch):
    place_in_hub_cache(shared["export"], hub_cache, REPO)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="records no data root"):
        main_without_exit(["eval", REPO])
    main_without_exit(["eval", REPO, "--data-root", str(tiny_root), "--features", str(shared["cache"])])
    scores = json.loads((tmp_path / "eval_test.json").read_text())  # here: a hub model has no folder of yours
    metrics = json.loads((shared["run"] / "metrics.json").read_text())
    assert scores["run"] == REPO and scores["default"]["f1"] == pytest.approx(metrics["test"]["default"]["f1"])


def main_without_exit(argv: list[str]) -> None:
    """The CLI's command, its user errors raised rather than printed (as ``umt.cli.app`` runs them)."""
    from umt.cli import app

    app(args=argv, standalone_mode=False)


def test_the_cards_shell_commands_are_commands_umt_accepts(shared, monkeypatch):
    """Each `umt ...` line of the card's usage block parses through the real command line."""
    import shlex

    from typer.testing import CliRunner

    from umt import cli
    from umt.stages import serve

    card = (shared["export"] / "README.md").read_text(encoding="utf-8")
    block = card.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("|")[-1].split("#")[0].strip() for line in block.splitlines() if "umt " in line]
    commands = [c for c in commands if c.startswith("umt ")]
    assert {shlex.split(c)[1] for c in commands} == {"predict", "serve"}
    asked = []
    monkeypatch.setattr(predict, "run", lambda req, *a, **k: asked.append(req))
    monkeypatch.setattr(serve, "run", lambda req, *a, **k: asked.append(req))
    for command in commands:
        result = CliRunner().invoke(cli.app, shlex.split(command)[1:], input="")
        assert result.exit_code == 0, f"{command}: {result.output}"
    assert [str(req.run) for req in asked] == [REPO, REPO]
