"""The MLflow UI as a reader meets mlviz's output: a real `mlflow server` on 127.0.0.1 and headless Chromium.

One server per module holds a small synthetic sweep analysed by `mlviz visualize`, and two candidate runs
(logistic regressions on scikit-learn's digits) diagnosed by `mlviz best-model`. The browser checks that:
the experiment opens on its runs through the address mlviz gives (not the GenAI overview); the analysis
run's `mlviz/index.html` shows every image inside the artifact viewer's sandboxed frame with nothing
scrolling sideways at the viewer's width; a figure opens at full size in place; related-report links
carry the UI's address; and the image grid lines up both candidates under `mlviz_roc_curve`.

`MLVIZ_SCREENSHOTS=1` saves what the browser saw to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import describe_result, run_cli

from mlviz.render.html import write_index
from mlviz.store.ui import EXPERIMENT_KIND_TAG, MODEL_TRAINING, experiment_url, mark_model_training, run_url

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
STARTUP_TIMEOUT_S = 60
PAGE_TIMEOUT_S = 45
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900"]
WIDTH, HEIGHT = 1280, 900  # the screen the screenshots are taken at


# --------------------------------------------------------------------------- without a browser
def _png(path: Path, width: int, height: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 200, dtype=np.uint8)).save(path)


def test_index_page_is_self_contained_and_links_related_reports(tmp_path):
    _png(tmp_path / "mlviz" / "best_model" / "roc_curve.png", 1500, 900)
    _png(tmp_path / "mlviz" / "best_model" / "calibration.png", 600, 400)
    _png(tmp_path / "mlviz" / "training_progress" / "loss.png", 900, 300)
    figures = [
        {"section": "best_model", "file": "mlviz/best_model/roc_curve.png", "caption": "ROC <one-vs-rest>"},
        {"section": "best_model", "file": "mlviz/best_model/calibration.png", "caption": "reliability"},
        {"section": "training_progress", "file": "mlviz/training_progress/loss.png", "caption": "loss"},
    ]
    summary = {
        "kind": "compare",
        "compare": {"runs": ["a", "b"]},
        "headline_metrics": {"mlviz.auc": 0.98765, "mlviz.n_samples": 719},
        "selection": {"tracking_uri": "http://127.0.0.1:5999"},
        "related": [{"title": "candidate A", "run_id": "abc123", "experiment_id": "7", "page": "mlviz/index.html"},
                    {"title": "no experiment", "run_id": "def456", "experiment_id": None}],
        "figures_skipped": [{"section": "heatmaps", "figure": "heatmaps", "reason": "the run logged no model"}],
    }
    page = write_index(tmp_path, figures, summary)
    text = page.read_text(encoding="utf-8")
    assert page == tmp_path / "mlviz" / "index.html"
    assert '<meta name="mlviz-report" content="compare">' in text[:4000]  # publish reads it there
    assert text.count("src='data:image/png;base64,") == 3
    embedded = text.split("src='data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(embedded) == (tmp_path / "mlviz/best_model/roc_curve.png").read_bytes()
    assert "http" not in "".join(s.split("'")[0] for s in text.split("src='")[1:])  # nothing fetched from outside
    assert text.count("<details class='section'") == 2 and " open>" not in text  # two sections, both closed
    assert "ROC &lt;one-vs-rest&gt;" in text  # captions escaped
    assert "href='best_model/roc_curve.png'" in text  # the PNG beside index.html, for a page opened from a folder
    assert ("href='http://127.0.0.1:5999/#/experiments/7/runs/abc123/artifacts/mlviz/index.html"
            "?workflowType=machine_learning'") in text
    assert "data-route='/runs/def456?workflowType=machine_learning'" in text
    summary.pop("selection")  # a local store: `mlflow ui`'s default address until the viewer says otherwise
    text = write_index(tmp_path, figures, summary).read_text(encoding="utf-8")
    assert "href='http://127.0.0.1:5000/#/experiments/7/runs/abc123/artifacts/mlviz/index.html" in text
    assert "0.9877" in text and "719" in text and "the run logged no model" in text


# --------------------------------------------------------------------------- the server and its data
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path) -> tuple[subprocess.Popen, str]:
    import requests

    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(uri + "/health", timeout=2).status_code == 200:
                return proc, uri
        except requests.RequestException:
            pass
        time.sleep(0.3)
    _stop_server(proc)
    raise RuntimeError(f"mlflow server not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)  # nothing to flush that the tests need
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _digits_predictions(c: float) -> tuple[pd.DataFrame, float]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    xtr, xva, ytr, yva = train_test_split(x / 16.0, y, test_size=0.4, random_state=0, stratify=y)
    probs = LogisticRegression(C=c, max_iter=300).fit(xtr, ytr).predict_proba(xva)
    frame = pd.DataFrame({"sample_id": np.arange(len(yva)), "label": yva})
    for k in range(10):
        frame[f"prob_{k}"] = probs[:, k]
    return frame, float((probs.argmax(1) == yva).mean())


def _cli_ok(*args) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, describe_result(result)


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory):
    """A served store: sweep `ui-sweep` analysed by visualize, candidates `cand-strong`/`cand-weak` in
    `ui-candidates` diagnosed by best-model, and a page in `ui-links` that links both candidates."""
    pytest.importorskip("requests")
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    root = tmp_path_factory.mktemp("mlflow-ui")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(name, raising=False)
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mp.chdir(root)
        proc, uri = _start_server(root)
        try:
            client = MlflowClient(uri)
            _cli_ok("synthetic-sweep", "--tracking-uri", uri, "-e", "ui-sweep", "--runs", 16, "--steps", 3)
            _cli_ok("visualize", "--tracking-uri", uri, "-e", "ui-sweep")
            sweep = client.get_experiment_by_name("ui-sweep").experiment_id
            (analysis,) = client.search_runs([sweep], "tags.`mlviz.analysis` = 'visualize'")

            cands = client.create_experiment("ui-candidates")
            candidates = {}
            for name, c in (("cand-strong", 1.0), ("cand-weak", 0.01)):
                frame, accuracy = _digits_predictions(c)
                rid = client.create_run(cands, run_name=name).info.run_id
                local = root / name / "val_predictions.csv"
                local.parent.mkdir()
                frame.to_csv(local, index=False)
                client.log_artifact(rid, str(local), "predictions")
                client.log_batch(rid, metrics=[Metric("val_accuracy", accuracy, 0, 0)])
                client.set_terminated(rid, "FINISHED")
                _cli_ok("best-model", "--tracking-uri", uri, "--run", rid, "--n-boot", 50, "--no-heatmaps")
                candidates[name] = rid

            links = client.create_experiment("ui-links")
            links_run = client.create_run(links, run_name="links").info.run_id
            page_root = root / "links-page"
            roc = page_root / "mlviz" / "compare" / "roc_curve.png"
            roc.parent.mkdir(parents=True)
            shutil.copy(client.download_artifacts(candidates["cand-strong"], "mlviz/best_model/roc_curve.png",
                                                  str(root)), roc)
            write_index(page_root, [{"section": "compare", "file": "mlviz/compare/roc_curve.png", "caption": "ROC"}],
                        {"kind": "compare", "related": [{"title": name, "run_id": rid, "experiment_id": cands,
                                                         "page": "mlviz/index.html"}
                                                        for name, rid in candidates.items()]})
            client.log_artifacts(links_run, str(page_root / "mlviz"), "mlviz")
            client.set_terminated(links_run, "FINISHED")

            for exp in (sweep, cands, links):
                mark_model_training(client, exp)  # the writer does this too; here it must hold either way
            yield {"uri": uri, "client": client, "sweep": sweep, "analysis": analysis, "cands": cands,
                   "candidates": candidates, "links": links, "links_run": links_run}
        finally:
            _stop_server(proc)


@pytest.mark.server
def test_mark_model_training_never_overrides(ui_store):
    client = ui_store["client"]
    fresh = client.create_experiment("ui-fresh")
    users = client.create_experiment("ui-users", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert mark_model_training(client, fresh) is True
    assert client.get_experiment(fresh).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING == "custom_model_development"
    assert mark_model_training(client, fresh) is False  # already marked: nothing written again
    assert mark_model_training(client, users) is False
    assert client.get_experiment(users).tags[EXPERIMENT_KIND_TAG] == "genai_development"


# --------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("needs chromium and chromedriver (Debian: chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str, timeout: float = PAGE_TIMEOUT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; at {driver.current_url}") from None


def _open(driver, url: str) -> None:
    """A fresh load of the UI (not an in-app route change)."""
    driver.switch_to.default_content()
    driver.get("about:blank")
    driver.get(url)


def _close_assistant(driver) -> None:
    """The assistant panel takes a third of the screen; close it where it is open."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):
        if button.is_displayed():
            button.click()
            time.sleep(0.5)
            return


def _screenshot(driver, name: str) -> None:
    if os.environ.get("MLVIZ_SCREENSHOTS") != "1":
        return
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.switch_to.default_content()
    driver.save_screenshot(str(path))
    with Image.open(path) as img:  # keep the repository small: palette PNG, at most 1280 x 900
        img.thumbnail((WIDTH, HEIGHT))
        img.convert("RGB").quantize(colors=128).save(path, optimize=True)


def _viewer_frame(driver):
    """Switch into the artifact viewer's iframe once the HTML page in it has loaded; returns the frame and
    its width in CSS pixels."""
    from selenium.webdriver.common.by import By

    frame = _wait(driver, lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "iframe.mlflow-html-iframe")), None),
                  "the artifact viewer's iframe")
    assert "allow-scripts" in frame.get_attribute("sandbox")  # what the page was made for
    width = frame.size["width"]
    driver.switch_to.frame(frame)
    _wait(driver, lambda d: d.execute_script(
        "return document.readyState === 'complete' && !!document.querySelector('meta[name=mlviz-report]')"),
        "index.html inside the viewer")
    return frame, width


@pytest.mark.server
def test_experiment_opens_on_its_runs(ui_store, browser):
    """Through the address mlviz gives. The experimentKind tag alone does not do it in MLflow 3.17: the
    UI's workflow switch (default GenAI) picks the landing tab; see mlviz/store/ui.py."""
    from selenium.webdriver.common.by import By

    client = ui_store["client"]
    for exp in (ui_store["sweep"], ui_store["cands"]):
        assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    url = experiment_url(ui_store["uri"], ui_store["sweep"])
    _open(browser, url)
    _wait(browser, lambda d: "mlviz-visualize" in d.find_element(By.TAG_NAME, "body").text,
          "the runs table listing the analysis run")
    route = browser.current_url.split("#", 1)[1]
    assert route.startswith(f"/experiments/{ui_store['sweep']}/runs"), route
    assert "/overview" not in route and "/traces" not in route
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "stage1" in body and "Detect Issues" not in body
    _close_assistant(browser)
    _screenshot(browser, "experiment_runs.png")


@pytest.mark.server
def test_index_reads_in_the_artifact_viewer(ui_store, browser, tmp_path):
    from selenium.webdriver.common.by import By

    client, analysis = ui_store["client"], ui_store["analysis"]
    local = client.download_artifacts(analysis.info.run_id, "mlviz/summary.json", str(tmp_path))
    summary = json.loads(Path(local).read_text())
    made = summary["figures_made"]
    assert len(made) >= 5
    _open(browser, run_url(ui_store["uri"], analysis.info.run_id, ui_store["sweep"], "mlviz/index.html"))
    frame, viewer_width = _viewer_frame(browser)
    assert 300 < viewer_width < 800, viewer_width  # the narrow frame the page is made for
    assert browser.execute_script(
        "return document.querySelector('meta[name=mlviz-report]').content") == "visualize"
    widths = _wait(browser, lambda d: (lambda w: w if len(w) == len(made) and all(w) else None)(
        d.execute_script("return Array.from(document.images).map(i => i.naturalWidth)")), "every image decoded")
    assert len(widths) == len(made) and min(widths) > 0

    def sideways() -> tuple[int, int]:
        return tuple(browser.execute_script(
            "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"))

    closed = sideways()
    assert closed[0] <= closed[1], closed
    browser.find_element(By.ID, "open-all").click()
    opened = sideways()
    assert opened[0] <= opened[1], f"scrolls sideways at {viewer_width} px: {opened}"
    shown = browser.execute_script(
        "return Array.from(document.images).map(i => Math.round(i.getBoundingClientRect().width))")
    assert all(0 < w <= opened[1] for w in shown), shown  # every figure drawn, none wider than the frame
    _screenshot(browser, "index_in_viewer.png")

    # a figure opens at full size in place (the sandbox blocks new windows), and closes again
    browser.switch_to.default_content()
    browser.switch_to.frame(frame)
    widest = int(np.argmax(widths))
    image = browser.find_elements(By.CSS_SELECTOR, "label.zoom img")[widest]
    browser.execute_script("arguments[0].scrollIntoView()", image)
    image.click()
    assert image.get_property("clientWidth") == widths[widest] > opened[1]  # its own pixels, one for one
    assert sideways()[0] <= sideways()[1]  # the figure's own box scrolls, not the page
    image.click()
    assert image.rect["width"] <= opened[1]

    # the narrowest this viewer gets on a 1280 px screen: beside the assistant panel, about 515 px
    browser.switch_to.default_content()
    browser.execute_script("arguments[0].style.width = '515px'", frame)
    browser.switch_to.frame(frame)
    narrow = _wait(browser, lambda d: (lambda s: s if s[1] < 515 else None)(sideways()), "the frame at 515 px")
    assert narrow[0] <= narrow[1], f"scrolls sideways at 515 px: {narrow}"


@pytest.mark.server
def test_related_links_carry_the_ui_address(ui_store, browser):
    from selenium.webdriver.common.by import By

    uri, candidates = ui_store["uri"], ui_store["candidates"]
    _open(browser, run_url(uri, ui_store["links_run"], ui_store["links"], "mlviz/index.html"))
    _viewer_frame(browser)
    links = browser.find_elements(By.CSS_SELECTOR, ".related a[data-route]")
    hrefs = [a.get_attribute("href") for a in links]
    assert hrefs == [run_url(uri, rid, ui_store["cands"], "mlviz/index.html") for rid in candidates.values()]
    boxes = [b.get_attribute("value") for b in browser.find_elements(By.CSS_SELECTOR, ".related .addr")]
    assert boxes == hrefs  # shown to copy: the sandbox does not follow links out of the frame
    assert all(b.is_displayed() for b in browser.find_elements(By.CSS_SELECTOR, ".related .addr"))
    # what a reader gets from that address in a new tab: the candidate's own report
    _open(browser, hrefs[0])
    _viewer_frame(browser)
    assert browser.execute_script("return document.querySelector('meta[name=mlviz-report]').content") == "best_model"
    assert candidates["cand-strong"] in browser.find_element(By.TAG_NAME, "body").text
    _close_assistant(browser)
    _screenshot(browser, "model_report_in_viewer.png")


@pytest.mark.server
def test_image_grid_lines_up_both_candidates(ui_store, browser):
    from selenium.webdriver.common.by import By

    candidates = ui_store["candidates"]
    _open(browser, experiment_url(ui_store["uri"], ui_store["cands"]) + "&compareRunsMode=CHART")
    _close_assistant(browser)
    search = _wait(browser, lambda d: next(iter(d.find_elements(
        By.CSS_SELECTOR, "input[placeholder='Search metric charts']")), None), "the chart view")
    search.send_keys("mlviz_roc_curve")  # the metric charts step aside; cards off screen are not drawn
    card = _wait(browser, lambda d: next(iter(d.find_elements(
        By.XPATH, "//*[@data-testid='experiment-view-compare-runs-card'][.//h4[@title='mlviz_roc_curve']]")), None),
        "the mlviz_roc_curve image card")
    browser.execute_script("arguments[0].scrollIntoView()", card)

    def roc_images(d):
        found = {}
        for img in card.find_elements(By.TAG_NAME, "img"):
            src = img.get_attribute("src") or ""
            if "mlviz_roc_curve" in src and d.execute_script("return arguments[0].naturalWidth", img) > 0:
                found[src.split("run_uuid=")[-1].split("&")[0]] = src
        return found if len(found) == len(candidates) else None

    found = _wait(browser, roc_images, "both candidates' ROC images in the card")
    assert set(found) == set(candidates.values())
    texts = card.text
    assert all(name in texts for name in candidates)
    card.find_element(By.CSS_SELECTOR, "button[data-component-id='fullscreen_button_chartcard']").click()
    _wait(browser, lambda d: len([i for i in d.find_elements(By.CSS_SELECTOR, "[role=dialog] img")
                                  if "mlviz_roc_curve" in (i.get_attribute("src") or "")]) == len(candidates),
          "the full-screen image grid")
    _screenshot(browser, "image_grid_roc.png")
