"""`umt reproduce`: the plan (systems, the paper's settings), a stop in the middle and a rerun that
finishes the work without redoing any of it, and finished runs made with other settings refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_grid_cache

from umt.pipeline.data.layout import load_split
from umt.pipeline.errors import ConfigError
from umt.pipeline.models.registry import get_recipe
from umt.stages import reproduce, train
from umt.stages.requests import ReproduceRequest

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_tables_name_the_papers_systems_and_the_settings_follow_the_authors_script():
    table2 = reproduce.systems("table2")
    assert len(table2) == 11 and table2[0] == "bilstm-crf" and table2[-1] == "umt"
    assert sum(get_recipe(m).multimodal for m in table2) == 6
    assert reproduce.systems("table3") == reproduce.TABLE3 and len(reproduce.systems("all")) == 15
    assert reproduce.paper_settings("umt", "twitter2015")["epochs"] == 24
    assert reproduce.paper_settings("bert-crf", "twitter2017") == {"epochs": 22, **reproduce.AUTHORS_SETTINGS}
    assert reproduce.paper_settings("hbilstm-crf", "twitter2017") == {}  # its own paper's recipe
    assert "epochs" not in reproduce.paper_settings("umt", "my-own-data")
    with pytest.raises(ConfigError, match="unknown model"):
        reproduce.systems("umt,no-such-model")


@pytest.fixture
def tiny_request(tiny_root, tiny_encoder_dir, tmp_path) -> ReproduceRequest:
    rng = np.random.default_rng(0)
    ids = [p.image for split in ("train", "valid", "test") for p in load_split(tiny_root, "tiny", split)]
    cache = write_grid_cache(tmp_path / "tiny.h5", {i: rng.standard_normal((49, 2048)) for i in ids})
    return ReproduceRequest(
        dataset="tiny",
        data_root=tiny_root,
        seeds=(1, 2),
        systems="bert-crf,umt",
        encoder=str(tiny_encoder_dir),
        features=cache,
        runs=tmp_path / "runs",
        device="cpu",
        train_overrides={"epochs": 1, "batch_size": 8},
    )


def test_a_stopped_reproduction_resumes_where_it_stopped_and_writes_the_report(tiny_request, monkeypatch):
    real_run = train.run

    def stop_at_umt(request, console=None, stop_after_epoch=None):
        if request.model == "umt":
            raise KeyboardInterrupt
        return real_run(request, console=console)

    monkeypatch.setattr(train, "run", stop_at_umt)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run(tiny_request)
    monkeypatch.setattr(train, "run", real_run)
    states = reproduce.run(ReproduceRequest(**{**vars(tiny_request), "dry_run": True}))["planned"]
    assert states == {"bert-crf": ["finished", "finished"], "umt": ["to train", "to train"]}
    runs = tiny_request.runs / "tiny"
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("bert-crf/seed*/model.safetensors")}

    result = reproduce.run(tiny_request)
    assert result["planned"] == {"bert-crf": ["finished"] * 2, "umt": ["finished"] * 2}
    assert {p: p.stat().st_mtime_ns for p in runs.glob("bert-crf/seed*/model.safetensors")} == stamps  # not retrained
    assert set(result["reports"]) == {"table2"}
    table = (runs / "report" / "table2.md").read_text(encoding="utf-8")
    assert "bert-crf" in table and "umt" in table
    assert all(Path(f).is_file() for f in result["reports"]["table2"]["files"])


def test_finished_runs_made_with_other_settings_are_not_counted_as_the_plans(tiny_request):
    reproduce.run(ReproduceRequest(**{**vars(tiny_request), "systems": "bert-crf", "seeds": (1,)}))
    other = ReproduceRequest(
        **{
            **vars(tiny_request),
            "systems": "bert-crf",
            "seeds": (1,),
            "train_overrides": {"epochs": 2, "batch_size": 8},
        }
    )
    (state,) = reproduce.run(ReproduceRequest(**{**vars(other), "dry_run": True}))["planned"]["bert-crf"]
    assert state == "finished with other settings: epochs 1 (planned 2)"
    with pytest.raises(ConfigError, match="finished with other settings"):
        reproduce.run(other)
