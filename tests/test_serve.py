"""``umt serve``: the API's limits and safety with a tiny model (no browser), then the page in a real
headless Chromium (Debian's, driven by Playwright) on the quick demo's model.

Screenshots of every tab go to ``$UMT_SCREENSHOTS`` when it is set (the README's come from here)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import _inference_fixtures as fx
from tests._subprocess import checkout_env

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'umt[serve]')")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from fastapi.testclient import TestClient

    from umt.inference import TranslationPipeline
    from umt.serve.app import create_app
    from umt.serve.work import Models

    root = tmp_path_factory.mktemp("serve")
    model = fx.make_model_folder(root, tasks=["omr", "m2a", "i2a", "amt"])
    pipeline = TranslationPipeline.from_pretrained(model, device="cpu")
    app = create_app(Models(pipeline), max_upload_mb=0.5, queue_depth=2, work_dir=root / "work")
    with TestClient(app) as test_client:
        yield test_client, root


def _png(root: Path) -> bytes:
    return fx.save_png(fx.render(fx.piano_musicxml(2)), root / "system.png").read_bytes()


def _wait(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError("the job did not finish")


def test_the_page_lists_only_the_model_s_tasks(client):
    test_client, _ = client
    info = test_client.get("/api/info").json()
    runs = {tab["id"]: tab["runs"] for tab in info["tabs"]}
    assert runs == {"score": ["cascade-i2a", "i2a"], "follow": ["i2a"], "audio": ["amt"], "midi": ["m2a"]}
    assert "<title>UMT" in test_client.get("/").text


def test_uploads_are_judged_by_content_and_size_and_the_server_goes_on(client):
    pytest.importorskip("verovio")
    test_client, root = client
    text_as_wav = test_client.post("/api/jobs?tab=audio", files={"file": ("song.wav", b"hello, not audio")})
    assert text_as_wav.status_code == 415 and "not a file this app reads" in text_as_wav.json()["error"]
    image_as_midi = test_client.post("/api/jobs?tab=midi", files={"file": ("a.mid", _png(root))})
    assert image_as_midi.status_code == 415 and "the upload is a image file" in image_as_midi.json()["error"]
    raw = test_client.post("/api/jobs?tab=score", content=b"\x89PNG", headers={"content-type": "image/png"})
    assert raw.status_code == 400 and "multipart form" in raw.json()["error"]
    big = test_client.post(
        "/api/jobs?tab=score", files={"file": ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(600_000))}
    )
    assert big.status_code == 413 and "larger than 0.5 MB" in big.json()["error"]
    corrupt = test_client.post(
        "/api/jobs?tab=score", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"junk" * 50)}
    )
    job = _wait(test_client, corrupt.json()["id"])
    assert job["state"] == "failed" and "image" in job["error"] and "Traceback" not in job["error"]
    assert str(root) not in job["error"]  # nothing of the server's folders
    good = test_client.post("/api/jobs?tab=score", files={"file": ("s.png", _png(root))})
    job = _wait(test_client, good.json()["id"])
    assert job["state"] == "done", job["error"]
    assert job["result"]["runs"][0]["label"] == "1 system(s) found"
    names = {f["name"] for run in job["result"]["runs"] for f in run["files"]}
    assert {"input.musicxml", "input.mid", "input.wav"} <= names  # the cascade; the direct run's WAV too
    url = next(f["url"] for run in job["result"]["runs"] for f in run["files"] if f["name"] == "input.wav")
    assert test_client.get("/" + url).content[:4] == b"RIFF"
    # a PDF plays as one recording, system after system
    pdf = fx.save_pdf(root / "system.png", root / "score.pdf").read_bytes()
    job = _wait(
        test_client, test_client.post("/api/jobs?tab=score", files={"file": ("s.pdf", pdf)}).json()["id"]
    )
    assert job["state"] == "done", job["error"]
    assert sum(f["kind"] == "audio" for run in job["result"]["runs"] for f in run["files"]) == 2
    assert job["result"]["runs"][0]["label"] == "1 system(s) found"
    # only what the job wrote is served: no other name, no path out of its folder
    base = url.rsplit("/files/", 1)[0]
    for name in ("input.png", "../../../etc/passwd", "out/i2a/../../input.png", "%2e%2e/%2e%2e/x"):
        assert test_client.get(f"/{base}/files/{name}").status_code == 404


def test_a_full_queue_says_busy_and_a_queued_job_can_be_cancelled(tmp_path):
    from umt.serve.jobs import Busy, JobQueue

    release = threading.Event()
    queue = JobQueue(tmp_path, depth=1)
    blocking = queue.submit(lambda folder: lambda job: release.wait(10) and {"runs": []})
    deadline = time.monotonic() + 5
    while blocking.state != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    waiting = queue.submit(lambda folder: lambda job: {"runs": []})
    with pytest.raises(Busy):
        queue.submit(lambda folder: lambda job: {"runs": []})
    assert queue.cancel(waiting.id).state == "cancelled" and not waiting.folder.exists()
    release.set()
    deadline = time.monotonic() + 5
    while blocking.state != "done" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert blocking.state == "done"
    # a running job stops at its next progress report once cancelled
    started = threading.Event()

    def long_job(job):
        started.set()
        for step in range(1000):
            time.sleep(0.01)
            job.progress(done=step)
        return {"runs": []}

    running = queue.submit(lambda folder: long_job)
    assert started.wait(5)
    queue.cancel(running.id)
    deadline = time.monotonic() + 5
    while running.state == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.state == "cancelled"


# ------------------------------------------------------------------------------ the real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or shutil.which("fluidsynth") is None,
    reason="needs Debian's chromium and fluidsynth (the set-up command installs them as root)",
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (the set-up command installs it as root)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(model: str, cwd: Path, *options: str):
    """``umt serve MODEL`` on a free port, standing in ``cwd``; yields its URL, then stops it."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "umt", "serve", model, "--port", str(port), "--device", "cpu", *options],
        cwd=cwd, env=checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert process.poll() is None, process.communicate()[1][-2000:]
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``umt serve`` on the quick demo's model, as the README has a new user do it."""
    pytest.importorskip("playwright", reason="playwright (the dev extra) is not installed")
    if CHROMIUM is None or shutil.which("fluidsynth") is None:
        pytest.skip("needs Debian's chromium and fluidsynth")
    here = tmp_path_factory.mktemp("browser")
    demo = subprocess.run(
        [sys.executable, "-m", "umt", "demo", "--quick", "--no-progress", "--workers", "2", "--out", "demo"],
        cwd=here, env=checkout_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-2000:]
    for url in _serve("demo/run/model", here):
        yield url, here / "demo"


@pytest.fixture(scope="module")
def random_server(tmp_path_factory):
    """``umt serve`` on a tiny model with random weights: its attention wanders over the image (the
    quick demo's model, 24 steps old, looks at one column all along), so there is something to follow."""
    pytest.importorskip("playwright", reason="playwright (the dev extra) is not installed")
    here = tmp_path_factory.mktemp("random")
    model = fx.make_model_folder(here, tasks=["i2a"])
    image = fx.save_png(fx.render(fx.piano_musicxml(2)), here / "system.png")
    for url in _serve(str(model), here, "--max-len", "96"):  # random weights never stop on their own
        yield url, image


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright", reason="playwright (the dev extra) is not installed")
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (the set-up command installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("UMT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _held_out_image(demo: Path) -> Path:
    return next((demo / "corpus" / "test").rglob("*.png"))


@needs_browser
def test_a_score_image_plays_and_its_musicxml_downloads(server, browser, tmp_path):
    from umt.utils.safe_xml import parse_musicxml

    url, demo = server
    page = browser.new_page()
    page.goto(url)
    page.click("#tab-score")
    page.set_input_files("#panel-score input[type=file]", str(_held_out_image(demo)))
    page.click("#panel-score .go")
    page.wait_for_selector("#panel-score .run audio", timeout=120_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#panel-score audio')].every(a => a.readyState >= 1)",
        timeout=60_000,
    )  # every audio element has a playable source
    assert page.locator("#panel-score audio").count() == 2  # the cascade and the direct model
    link = page.locator("#panel-score a.download", has_text=".musicxml").first
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "score.musicxml"
    download.value.save_as(saved)
    assert parse_musicxml(saved.read_bytes(), saved).tag.endswith("score-partwise")
    _shot(page, "score-to-audio")


@needs_browser
def test_a_corrupt_upload_is_one_message_and_the_next_request_works(server, browser, tmp_path):
    url, demo = server
    page = browser.new_page()
    page.goto(url)
    page.click("#tab-score")
    corrupt = tmp_path / "scan.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken" * 100)
    page.set_input_files("#panel-score input[type=file]", str(corrupt))
    page.click("#panel-score .go")
    error = page.locator("#panel-score .error")
    error.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('#panel-score .error').textContent.length > 0")
    assert "image" in error.inner_text() and "Traceback" not in error.inner_text()
    renamed = tmp_path / "song.png"
    renamed.write_text("just text")
    page.set_input_files("#panel-score input[type=file]", str(renamed))
    page.click("#panel-score .go")
    page.wait_for_function(
        "() => document.querySelector('#panel-score .error').textContent.includes('takes')"
    )
    page.set_input_files("#panel-score input[type=file]", str(_held_out_image(demo)))
    page.click("#panel-score .go")
    page.wait_for_selector("#panel-score .run audio", timeout=120_000)
    assert page.locator("#panel-score .error").inner_text() == ""


@needs_chromium
def test_score_following_moves_with_the_audio(random_server, browser):
    url, image = random_server
    page = browser.new_page()
    page.goto(url)
    page.click("#tab-follow")
    page.set_input_files("#panel-follow input[type=file]", str(image))
    page.click("#panel-follow .go")
    page.wait_for_selector("#panel-follow .follow img", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#panel-follow audio').readyState >= 1")
    alignment = page.evaluate(
        "async () => (await (await fetch([...document.querySelectorAll('#panel-follow a.download')]"
        ".find(a => a.textContent === 'alignment.json').href)).json())"
    )
    frames = alignment["frames"]
    first = frames[0]["x"]
    later = next(i for i, f in enumerate(frames) if abs(f["x"] - first) > 1)
    positions = []
    for index in (0, later):
        seconds = (index + 0.5) * alignment["frame_seconds"]
        page.evaluate(
            f"() => {{ const a = document.querySelector('#panel-follow audio'); a.currentTime = {seconds}; }}"
        )
        page.wait_for_function(
            f"() => document.querySelector('#panel-follow .cursor').dataset.frame === '{index}'",
            timeout=10_000,
        )
        positions.append(page.evaluate("() => document.querySelector('#panel-follow .cursor').style.left"))
    expected = [f"{100 * frames[i]['x'] / alignment['width']:.3f}" for i in (0, later)]
    assert [f"{float(p.rstrip('%')):.3f}" for p in positions] == expected and positions[0] != positions[1]
    _shot(page, "score-following")


@needs_browser
def test_every_tab_opens_with_an_example(server, browser):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("nav button")
    tabs = page.evaluate("() => [...document.querySelectorAll('nav button')].map(b => b.id.slice(4))")
    assert "score" in tabs and "midi" in tabs
    page.click("#tab-midi")
    pick = page.locator("#panel-midi select.examples")
    option = pick.locator("option").nth(1).get_attribute("value")
    pick.select_option(option)
    page.wait_for_selector("#panel-midi .run audio", timeout=120_000)
    for tab in tabs:
        page.click(f"#tab-{tab}")
        _shot(page, f"tab-{tab}")
