"""The page `umt serve` serves, in a real browser: Selenium drives headless Chromium against the
real app (uvicorn in a thread) over a tiny trained UMT whose test posts have images. The tag view
shows exactly the entities ``umt.load(run).tag`` finds, with the attention overlay drawn on the
image; the browse view lists the test predictions, its errors-only filter shows the posts the API
calls wrong, and thumbnails load. A server with a token makes the page ask for it; a run without
test predictions says so.

Skipped when Debian's chromium / chromedriver are not installed, unless ``UMT_REQUIRE_BROWSER=1``
(CI), where that fails. ``UMT_SCREENSHOTS=DIR`` saves a screenshot of each view into DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import build_imaged_run

import umt

pytestmark = pytest.mark.usefixtures("one_thread")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
POST = "Great to see Jordan in Paris today"
TOKEN = "s3cret-token"
WAIT_S = 20


def _need_browser():
    """Selenium's webdriver module, or a skip (a failure with UMT_REQUIRE_BROWSER=1) naming what is missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    try:
        from selenium import webdriver
    except ImportError:
        webdriver = None
        missing.append("the selenium package")
    if missing:
        reason = (
            f"no browser to drive: {', '.join(missing)} not installed "
            "(apt-get install chromium chromium-driver; pip install selenium)"
        )
        if os.environ.get("UMT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"UMT_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return webdriver


class Server:
    """The app on uvicorn, on a free port of 127.0.0.1, in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def get_json(self, path: str, token: str | None = None):
        request = urllib.request.Request(self.url + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def served(tiny_root, tiny_encoder_dir, tmp_path_factory):
    """The tiny imaged run, its loaded model, and the app serving it (test images in the browse view)."""
    webdriver = _need_browser()
    from umt.pipeline.serving.app import ServeSettings, create_app

    built = build_imaged_run(tmp_path_factory.mktemp("serve_browser"), tiny_root, tiny_encoder_dir)
    trained = umt.load(built["run"])
    app = create_app(trained, ServeSettings(images=built["images"]))
    with Server(app) as server:
        yield {**built, "trained": trained, "server": server, "webdriver": webdriver}


@pytest.fixture(scope="module")
def driver(served):
    from selenium.webdriver.chrome.service import Service

    webdriver = served["webdriver"]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.add_argument("--force-device-scale-factor=1")
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_script_timeout(WAIT_S)
    yield browser
    browser.quit()


def wait_for(driver, condition, what: str, timeout: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def attr(driver, css: str, name: str):
    return driver.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.getAttribute(arguments[1]) : null;", css, name
    )


def screenshot(driver, name: str) -> None:
    """The whole page as ``$UMT_SCREENSHOTS/<name>.png`` (the window grown to the page's height)."""
    folder = os.environ.get("UMT_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 200, 4000)))
    time.sleep(0.2)
    driver.save_screenshot(str(Path(folder) / f"{name}.png"))
    driver.set_window_size(1280, 900)


# Whether the canvas shows more than the image alone: the image drawn again, at the same size and
# smoothing, on a canvas of its own, against the page's canvas (mean absolute difference per channel).
OVERLAY_DIFFERENCE = """
const canvas = document.getElementById('attention-canvas');
const preview = document.getElementById('image-preview');
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => {
  const w = canvas.width, h = canvas.height;
  const shown = canvas.getContext('2d').getImageData(0, 0, w, h).data;
  const plain = document.createElement('canvas');
  plain.width = w; plain.height = h;
  const ctx = plain.getContext('2d');
  ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(img, 0, 0, w, h);
  const alone = ctx.getImageData(0, 0, w, h).data;
  let diff = 0, opaque = 0, lo = 255, hi = 0;
  for (let k = 0; k < shown.length; k += 4) {
    for (let j = 0; j < 3; j++) diff += Math.abs(shown[k + j] - alone[k + j]);
    if (shown[k + 3] > 0) opaque++;
    lo = Math.min(lo, shown[k]); hi = Math.max(hi, shown[k]);
  }
  done({w, h, diff: diff / (3 * w * h), opaque: opaque / (w * h), spread: hi - lo});
};
img.onerror = () => done(null);
img.src = preview.src;
"""


def test_tag_view_shows_the_models_entities_and_attention(served, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    image = served["images"] / "test0.png"
    expected = served["trained"].tag([POST], [image])[0]["entities"]
    assert expected, "the tiny model tags nothing in the post: the test would check nothing"

    driver.get(served["server"].url + "/")
    wait_for(driver, lambda d: attr(d, "#model-info", "data-state") == "ready", "the model header")
    model = served["server"].get_json("/v1/model")
    assert driver.find_element(By.ID, "model-kind").text == model["model"] == "umt"
    assert driver.find_element(By.ID, "model-dataset").text == "tiny"
    assert driver.find_element(By.ID, "model-f1").text == f"{model['scores']['test']['f1'] * 100:.2f} %"
    assert driver.find_element(By.ID, "model-images").text == "reads images"
    assert driver.find_element(By.ID, "explain").is_selected(), "explain is on for a model that reads images"

    box = driver.find_element(By.ID, "post-text")
    box.send_keys(POST)
    driver.find_element(By.ID, "post-image").send_keys(str(image))
    wait_for(driver, lambda d: d.find_element(By.ID, "image-preview-box").is_displayed(), "the image preview")
    box.send_keys(Keys.CONTROL, Keys.ENTER)  # the shortcut submits like the button
    wait_for(driver, lambda d: attr(d, "#tag-result", "data-state") in ("done", "error"), "the tagged post")
    assert not driver.find_element(By.ID, "tag-error").is_displayed(), driver.find_element(By.ID, "tag-error").text

    marks = driver.find_elements(By.CSS_SELECTOR, "#tagged-text mark.entity")
    words = [m.find_element(By.CLASS_NAME, "entity-words").text for m in marks]
    types = [m.get_attribute("data-type") for m in marks]
    starts = [int(m.get_attribute("data-start")) for m in marks]
    shown = list(zip(types, words, starts, strict=True))
    assert shown == [(e["entity_group"], e["word"], e["start"]) for e in expected]
    for mark, entity in zip(marks, expected, strict=True):
        assert mark.find_element(By.CLASS_NAME, "entity-type").text == entity["entity_group"]
        assert mark.find_element(By.CLASS_NAME, "entity-score").text == f"{entity['score']:.2f}"
    rows = driver.find_elements(By.CSS_SELECTOR, "#entity-table tbody tr")
    assert [r.get_attribute("data-type") for r in rows] == [e["entity_group"] for e in expected]

    # The first entity's attention over the image, on the canvas.
    canvas = driver.find_element(By.ID, "attention-canvas")
    assert canvas.is_displayed()
    wait_for(driver, lambda d: canvas.get_attribute("data-drawn") == "overlay", "the attention overlay")
    assert canvas.get_attribute("data-entity") == "0"
    assert expected[0]["word"] in driver.find_element(By.ID, "attention-caption").text
    pixels = driver.execute_async_script(OVERLAY_DIFFERENCE)
    assert pixels and pixels["w"] > 100 and pixels["opaque"] == 1.0 and pixels["spread"] > 0, pixels
    assert pixels["diff"] > 3, f"the canvas shows the image without a visible overlay: {pixels}"
    if len(marks) > 1:  # clicking another entity shows its attention instead
        marks[-1].click()
        assert canvas.get_attribute("data-entity") == str(len(marks) - 1)
        assert marks[-1].get_attribute("aria-pressed") == "true"
    screenshot(driver, "tag_view")

    # An error from the server is shown in the error box.
    driver.execute_script("arguments[0].value = arguments[1]", box, "x" * 20_001)  # over the server's text limit
    driver.find_element(By.ID, "tag-button").click()
    wait_for(driver, lambda d: attr(d, "#tag-result", "data-state") == "error", "the error")
    error = driver.find_element(By.ID, "tag-error")
    assert error.is_displayed() and error.text.strip()


def posts_on_page(driver) -> list[tuple[int, str]]:
    found = driver.execute_script(
        "return [...document.querySelectorAll('#post-list article.post')]"
        ".map(p => [Number(p.dataset.index), p.dataset.correct]);"
    )
    return [tuple(post) for post in found]


def test_browse_view_lists_predictions_and_errors(served, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    server = served["server"]
    driver.get(server.url + "/")
    tab = driver.find_element(By.ID, "tab-tag")
    tab.send_keys(Keys.ARROW_RIGHT)  # the tabs work from the keyboard
    assert attr(driver, "#tab-browse", "aria-selected") == "true"
    assert driver.find_element(By.ID, "view-browse").is_displayed()
    assert not driver.find_element(By.ID, "view-tag").is_displayed()
    wait_for(driver, lambda d: attr(d, "#post-list", "data-state") == "done", "the test predictions")

    every = server.get_json("/v1/predictions?filter=all&type=&offset=0&limit=20")
    assert every["total"] > 0
    assert posts_on_page(driver) == [(p["index"], str(p["correct"]).lower()) for p in every["posts"]]
    first = driver.find_element(By.CSS_SELECTOR, "#post-list article.post")
    assert first.find_element(By.CSS_SELECTOR, '[data-row="gold"] .row-label').text.lower() == "gold"
    assert first.find_element(By.CSS_SELECTOR, '[data-row="pred"] .row-label').text.lower() == "predicted"
    n = len(every["posts"])
    assert driver.find_element(By.ID, "page-info").text == f"1–{n} of {every['total']}"
    gold_marks = first.find_elements(By.CSS_SELECTOR, '[data-row="gold"] mark.entity')
    assert [m.get_attribute("data-type") for m in gold_marks] == [e["entity_group"] for e in every["posts"][0]["gold"]]

    # Thumbnails: at least one test post's image loads (test0..test2 have files).
    with_images = [p["index"] for p in every["posts"] if p["image_url"]]
    assert with_images
    wait_for(
        driver,
        lambda d: d.execute_script(
            "return [...document.querySelectorAll('img.thumb[data-loaded=\"true\"]')].some(i => i.naturalWidth > 0)"
        ),
        "a loaded thumbnail",
    )
    screenshot(driver, "browse_view")

    # Errors only: exactly the posts the API calls wrong, each marked so.
    Select(driver.find_element(By.ID, "filter")).select_by_value("errors")
    errors = server.get_json("/v1/predictions?filter=errors&type=&offset=0&limit=20")
    total = errors["total"]
    wait_for(
        driver,
        lambda d: (attr(d, "#post-list", "data-state"), attr(d, "#post-list", "data-total")) == ("done", str(total)),
        "the errors-only list",
    )
    assert all(not p["correct"] for p in errors["posts"])
    assert posts_on_page(driver) == [(p["index"], "false") for p in errors["posts"]]
    for post in errors["posts"]:
        article = driver.find_element(By.CSS_SELECTOR, f'article.post[data-index="{post["index"]}"]')
        flagged = article.find_elements(By.CSS_SELECTOR, '[data-status="wrong"], [data-status="missed"]')
        assert flagged, f"test post {post['index']} is wrong but nothing on it is marked"
    if errors["posts"]:
        screenshot(driver, "browse_errors")


def test_token_and_no_predictions(served, driver, tmp_path):
    """A server with a token: the page asks for it and then works; a run without test predictions says so."""
    from selenium.webdriver.common.by import By

    from umt.pipeline.serving.app import ServeSettings, create_app

    bare = tmp_path / "run"
    shutil.copytree(served["run"], bare)
    (bare / "predictions_test.conll").unlink()
    app = create_app(umt.load(bare), ServeSettings(token=TOKEN))
    with Server(app) as server:
        driver.get(server.url + "/")
        wait_for(driver, lambda d: d.find_element(By.ID, "auth-form").is_displayed(), "the token form")
        driver.find_element(By.ID, "token-input").send_keys(TOKEN)
        driver.find_element(By.ID, "token-save").click()
        wait_for(driver, lambda d: attr(d, "#model-info", "data-state") == "ready", "the model header")
        assert driver.execute_script("return sessionStorage.getItem('umt.token')") == TOKEN
        driver.find_element(By.ID, "tab-browse").click()
        wait_for(driver, lambda d: attr(d, "#post-list", "data-state") == "unavailable", "the missing predictions")
        assert driver.find_element(By.ID, "browse-unavailable").is_displayed()
        driver.execute_script("sessionStorage.clear()")
