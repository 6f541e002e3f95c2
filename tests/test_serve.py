"""`umt serve` in process: POST /v1/tag answers what `umt predict` writes, for JSON and multipart,
one post or a list, with image attention when asked; concurrent requests share batches; every
bad request is a 4xx JSON error naming the problem; a token guards the API; the test
predictions view and its images."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import build_imaged_run, png_claiming_size
from PIL import Image

import umt
from umt.pipeline.errors import ConfigError
from umt.stages.requests import ServeRequest
from umt.stages.serve import build

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT = "Great to see Jordan in Paris today"


@pytest.fixture(scope="module")
def served(tiny_root, tiny_encoder_dir, tmp_path_factory) -> dict:
    built = build_imaged_run(tmp_path_factory.mktemp("serve"), tiny_root, tiny_encoder_dir)
    return {**built, "cache_dir": built["base"] / "grids"}


def _client(served: dict, **options):
    from fastapi.testclient import TestClient

    request = ServeRequest(
        run=str(served["run"]), device="cpu", images=served["images"], image_cache=served["cache_dir"], **options
    )
    app, _ = build(request)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(served):
    with _client(served, max_posts=4, max_image_mb=1, max_pixels=1_000_000, max_wait_ms=50) as c:
        yield c


def _expected(served: dict, texts, images=None) -> list[dict]:
    model = umt.load(served["run"], device="cpu")
    return model.tag(texts, images, image_cache=served["cache_dir"])


def _png(path: Path) -> bytes:
    return path.read_bytes()


def test_one_post_as_json_gets_the_record_umt_predict_writes(client, served):
    answer = client.post("/v1/tag", json={"text": TEXT})
    assert answer.status_code == 200, answer.text
    assert answer.json() == _expected(served, [TEXT])[0]
    assert answer.json()["entities"]  # the tiny model does find names here


def test_a_list_of_posts_gets_a_list_of_records_in_order(client, served):
    posts = [{"text": TEXT, "id": "a"}, {"tokens": ["Globex", "in", "Sydney"], "id": 7}, {"text": "see"}]
    answer = client.post("/v1/tag", json={"posts": posts})
    assert answer.status_code == 200, answer.text
    records = answer.json()
    assert [r["line"] for r in records] == [1, 2, 3] and [r.get("id") for r in records] == ["a", "7", None]
    expected = _expected(served, [TEXT, ["Globex", "in", "Sydney"], "see"])
    assert [r["entities"] for r in records] == [e["entities"] for e in expected]
    assert client.post("/v1/tag", json=posts).json() == records  # a bare list is the same request


def test_an_uploaded_image_is_read_as_umt_predict_reads_the_file(client, served):
    image = served["images"] / "test0.png"
    expected = _expected(served, [TEXT], [image])[0]
    multipart = client.post("/v1/tag", data={"text": TEXT}, files={"image": ("test0.png", _png(image), "image/png")})
    assert multipart.status_code == 200, multipart.text
    record = multipart.json()
    assert record["image"] == "image"  # the upload's field name: the server knows no path
    assert record["tags"] == expected["tags"] and record["entities"] == expected["entities"]
    encoded = base64.b64encode(_png(image)).decode()
    as_json = client.post("/v1/tag", json={"text": TEXT, "image": encoded}).json()
    assert as_json["entities"] == record["entities"]
    no_image = client.post("/v1/tag", json={"text": TEXT}).json()
    scores = [e["score"] for e in record["entities"]]
    assert scores != [e["score"] for e in no_image["entities"]]  # the image changed what the model saw


def test_explain_gives_each_entity_its_attention_over_the_image_grid(client, served):
    image = served["images"] / "test1.png"
    answer = client.post(
        "/v1/tag", data={"text": TEXT, "explain": "true"}, files={"image": ("x.png", _png(image), "image/png")}
    )
    entities = answer.json()["entities"]
    assert entities and all(np.asarray(e["attention"]).shape == (7, 7) for e in entities)
    for e in entities:
        assert np.asarray(e["attention"]).min() >= 0 and np.asarray(e["attention"]).sum() > 0
    plain = client.post("/v1/tag", data={"text": TEXT}, files={"image": ("x.png", _png(image), "image/png")})
    assert all("attention" not in e for e in plain.json()["entities"])


def test_concurrent_requests_are_tagged_in_shared_batches(client):
    batcher = client.app.state.batcher
    before = batcher.batches
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: client.post("/v1/tag", json={"text": f"{TEXT} {i}"}), range(32)))
    assert all(a.status_code == 200 for a in answers)
    assert [a.json()["text"] for a in answers] == [f"{TEXT} {i}" for i in range(32)]  # each got its own
    assert batcher.batches - before < 32  # some requests shared a forward pass
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["posts"] >= 32


def test_the_model_is_loaded_built_and_run_on_one_thread_of_its_own(served, monkeypatch):
    """libgomp gives every thread entering torch a team of OpenMP workers: loading on one thread
    and tagging on another leaves two teams, which made a batch ~20% slower on 2 cores."""
    import threading

    from umt.pipeline.inference import trained as trained_module
    from umt.pipeline.serving import app as app_module

    threads = {"load": set(), "build": set(), "work": set()}
    load, init, work = trained_module.load_run, app_module.Tagging.__init__, app_module.Tagging.work

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            threads[name].add(threading.get_ident())
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(trained_module, "load_run", spy("load", load))
    monkeypatch.setattr(app_module.Tagging, "__init__", spy("build", init))
    monkeypatch.setattr(app_module.Tagging, "work", spy("work", work))
    with _client(served) as c:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: c.post("/v1/tag", json={"text": f"{TEXT} {i}"}), range(8)))
    assert all(a.status_code == 200 for a in answers)
    used = set().union(*threads.values())
    assert all(threads.values()) and len(used) == 1, threads
    assert threading.get_ident() not in used and threading.main_thread().ident not in used


def _closed_loop(clients: list[tuple[float, int]], max_wait: float, seconds: float = 0.0) -> tuple[list[int], float]:
    """Clients (start delay, rounds), each sending one post and waiting for its answer in turn,
    against a batcher whose work takes ``seconds``: the batch sizes and the seconds it all took."""
    import asyncio
    import time

    from umt.pipeline.serving.batcher import MicroBatcher, ModelThread

    sizes: list[int] = []

    def work(items):
        sizes.append(len(items))
        time.sleep(seconds)
        return [2 * x for x in items]

    async def scenario() -> float:
        batcher = MicroBatcher(work, ModelThread(), max_batch=64, max_wait=max_wait)
        await batcher.start()

        async def client(k: int, delay: float, rounds: int) -> None:
            await asyncio.sleep(delay)
            for _ in range(rounds):
                assert await batcher.submit([k]) == [2 * k]

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(client(k, *c) for k, c in enumerate(clients)))
        took = asyncio.get_running_loop().time() - started
        await batcher.stop()
        return took

    return sizes, asyncio.run(scenario())


def test_closed_loop_clients_are_batched_together_without_waiting_out_max_wait():
    sizes, took = _closed_loop([(0.0, 8)] * 4, max_wait=1.0)
    assert sizes == [4] * 8  # every batch holds every client
    assert took < 4.0  # only the first batch waited out max_wait: eight would take 8 s


def test_new_clients_join_the_batch_and_split_groups_join_again():
    # 4 clients, then 4 more starting while the first 4 are served (a batch takes 20 ms): the new
    # ones wait as a group of their own while the others' batch runs, and are expected with them
    sizes, took = _closed_loop([(0.0, 30)] * 4 + [(0.3, 20)] * 4, max_wait=0.2, seconds=0.02)
    assert sum(sizes) == 4 * 30 + 4 * 20
    longest = max(len(run) for run in "".join("x" if n == 8 else "." for n in sizes).split("."))
    assert longest >= 15, sizes  # together, all eight clients in every batch
    assert took < 5.0, sizes


def _image_bytes(fmt: str = "PNG", size=(32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "send, status, words",
    [
        (lambda c: c.post("/v1/tag", content=b'{"text": "a"', headers={"content-type": "application/json"}), 400, "malformed JSON"),  # noqa: E501
        (lambda c: c.post("/v1/tag", json={"id": "x"}), 422, "missing 'text'"),
        (lambda c: c.post("/v1/tag", json={"txt": "x"}), 422, "unknown key 'txt' (did you mean 'text'?)"),
        (lambda c: c.post("/v1/tag", json={"text": "a", "image": "/etc/passwd"}), 422, "base64"),
        (lambda c: c.post("/v1/tag", json={"posts": [{"text": "a"}] * 5}), 413, "5 posts"),
        (lambda c: c.post("/v1/tag", json={"posts": []}), 422, "no posts"),
        (lambda c: c.post("/v1/tag", json=3), 422, "found int"),
        (lambda c: c.post("/v1/tag", content=b"text=a", headers={"content-type": "text/plain"}), 415, "text/plain"),
        (lambda c: c.post("/v1/tag", data={"text": "a"}, files={"image": ("a.png", b"not an image", "image/png")}), 415, "not an image"),  # noqa: E501
        (lambda c: c.post("/v1/tag", data={"text": "a"}, files={"image": ("a.png", b"\0" * (2 << 20), "image/png")}), 413, "over the limit"),  # noqa: E501
        (lambda c: c.post("/v1/tag", data={"text": "a"}, files={"image": ("a.png", png_claiming_size(4000, 4000), "image/png")}), 413, "pixels"),  # noqa: E501
        (lambda c: c.post("/v1/tag", data={"text": "a"}, files={"other": ("a.png", _image_bytes(), "image/png")}), 422, "'other' is named by no post"),  # noqa: E501
        (lambda c: c.post("/v1/tag", data={"posts": '[{"text": "a", "image": "f"}]'}), 422, "no file was uploaded"),
        (lambda c: c.post("/v1/tag", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}), 422, "missing 'text'"),  # noqa: E501
        (lambda c: c.post("/v1/tag", data={"text": "a", "explain": "maybe"}), 422, "'explain' must be true or false"),
        (lambda c: c.get("/v1/nothing"), 404, "Not Found"),
        (lambda c: c.get("/v1/predictions?filter=some"), 422, "filter 'some'"),
        (lambda c: c.get("/v1/predictions?limit=100000"), 422, "limit"),
        (lambda c: c.get("/v1/images/100000"), 404, "no image"),
        (lambda c: c.get("/v1/images/x"), 422, "index"),
    ],
)  # fmt: skip
def test_a_bad_request_is_a_4xx_json_error_naming_the_problem(client, send, status, words):
    answer = send(client)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert words in answer.json()["error"] and "Traceback" not in answer.text


def test_a_body_over_the_limit_is_refused_before_it_is_read(served):
    with _client(served, max_body_mb=1) as small:
        answer = small.post("/v1/tag", json={"text": "a " * (1 << 20)})
        assert answer.status_code == 413 and "body" in answer.json()["error"]
        chunks = iter([b'{"text": "', b"a" * (1 << 20), b"a" * (1 << 20), b'"}'])  # no length declared
        streamed = small.post("/v1/tag", content=chunks, headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_a_token_guards_the_api_but_not_the_health_check(served):
    with _client(served, token="s3cret", host="0.0.0.0") as guarded:
        assert guarded.get("/v1/health").status_code == 200
        refused = guarded.post("/v1/tag", json={"text": TEXT})
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        wrong = guarded.get("/v1/model", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        allowed = guarded.post("/v1/tag", json={"text": TEXT}, headers={"Authorization": "Bearer s3cret"})
        assert allowed.status_code == 200


def test_serving_beyond_loopback_without_a_token_is_refused():
    with pytest.raises(ConfigError, match="--token"):
        ServeRequest(run="x", host="0.0.0.0")
    ServeRequest(run="x", host="0.0.0.0", no_token=True)


def test_the_model_endpoint_describes_the_model(client, served):
    info = client.get("/v1/model").json()
    metrics = json.loads((served["run"] / "metrics.json").read_text())
    assert info["model"] == "umt" and info["reads_images"] is True and info["grid"] == [7, 7]
    assert info["types"] == ["LOC", "PER"] and info["scores"]["test"]["f1"] == metrics["test"]["default"]["f1"]
    assert client.get("/openapi.json").json()["paths"]["/v1/tag"]["post"]
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_the_test_predictions_view_and_its_images(client, served):
    everything = client.get("/v1/predictions?limit=100").json()
    conll = (served["run"] / "predictions_test.conll").read_text().strip().split("\n\n")
    assert everything["total"] == len(conll) == len(everything["posts"])
    errors = client.get("/v1/predictions?filter=errors&limit=100").json()
    assert {p["index"] for p in errors["posts"]} == {p["index"] for p in everything["posts"] if not p["correct"]}
    for post in everything["posts"]:
        for entity in post["gold"] + post["pred"]:
            assert post["text"][entity["start"] : entity["end"]] == " ".join(
                post["tokens"][entity["token_start"] : entity["token_end"]]
            )
    persons = client.get("/v1/predictions?type=PER&limit=100").json()
    assert all(any(e["entity_group"] == "PER" for e in p["gold"] + p["pred"]) for p in persons["posts"])
    with_image = next(p for p in everything["posts"] if p["image"] == "test0")
    served_image = client.get(with_image["image_url"])
    assert served_image.status_code == 200 and served_image.headers["content-type"] == "image/png"
    assert served_image.content == (served["images"] / "test0.png").read_bytes()
    without = next(p for p in everything["posts"] if p["image"] not in (None, *[f"test{i}" for i in range(3)]))
    assert client.get(f"/v1/images/{without['index']}").status_code == 404  # no such file in the folder


def test_an_int8_server_tags_as_the_fp32_one(client, served):
    with _client(served, quantize="int8") as int8:
        assert int8.get("/v1/model").json()["quantize"] == "int8"
        answer = int8.post("/v1/tag", json={"text": TEXT})
    assert answer.json()["tags"] == client.post("/v1/tag", json={"text": TEXT}).json()["tags"]
