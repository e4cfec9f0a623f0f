"""`mlviz explore`: seed 003's cache layout and a run's embedding files, in a real Dash server and a real
headless Chromium (selenium): the scatter draws every point, a click shows that sample's image, metadata
and rationale, hostile text stays text, and the image route serves nothing outside the image folder."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, headless_chromium, run_cli, tree_digest

from mlviz.cli import main
from mlviz.commands.explore import explore, prepare_explorer
from mlviz.explore.data import load_cache_dir, parse_rationale, resolve_image_path

if "explore" not in main.commands:  # until the lead registers it in mlviz/cli.py
    main.add_command(explore)

N = 36
MIS = "mis_Qwen_Qwen3-VL-4B-Instruct.csv"
CORRECT = "correct_Qwen_Qwen3-VL-4B-Instruct.csv"
HOSTILE_ROW = 5
HOSTILE_LABEL = '<script>window.__xss_label = 1</script>'
HOSTILE_NOTE = '<img src=x onerror="window.__xss_note = 1">'
HOSTILE_RATIONALE = '<img src=x onerror=window.__xss_rationale=1> and <b>bold</b>'
SECRET = b"TOPSECRET-not-an-image"
WORDS = ("cat", "dog", "bird")


# --------------------------------------------------------------------------- a seed-003 cache folder


def _png(width: int, height: int, colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """metadata.csv, vis_umap_coords.npy (three clusters), mis/correct CSVs with JSON rationales, and a
    folder of PNGs whose widths (10 + row) say which sample they belong to; a secret file beside the
    folder, a symlink from inside it to the secret, and one metadata row naming `../secret.png`."""
    root = tmp_path_factory.mktemp("explore")
    cache_dir, images = root / "feat_cache_vis" / "seed1", root / "images"
    cache_dir.mkdir(parents=True)
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    labels = np.arange(N) % 3
    coords = (np.array([[0, 0], [10, 0], [5, 9]])[labels] + rng.normal(0, 0.8, (N, 2))).astype(np.float32)
    names = [f"sub/plot_{i:02d}.png" if i % 7 == 0 else f"plot_{i:02d}.png" for i in range(N)]
    names[-2], names[-1] = "../secret.png", "link.png"
    for i, name in enumerate(names[:-2]):
        (images / name).write_bytes(_png(10 + i, 12, (40 * labels[i], 200, 90)))
    (root / "secret.png").write_bytes(SECRET)
    (root / "secret.txt").write_bytes(SECRET)
    (images / "link.png").symlink_to(root / "secret.png")
    (images / "notes.txt").write_bytes(b"inside the folder but not an image")
    meta = pd.DataFrame({"file_name": names, "ground_truth_word_label": [WORDS[k] for k in labels],
                         "ground_truth_num_label": labels, "note": "plain"})
    meta.loc[HOSTILE_ROW, "ground_truth_word_label"] = HOSTILE_LABEL
    meta.loc[HOSTILE_ROW, "note"] = HOSTILE_NOTE
    meta.to_csv(cache_dir / "metadata.csv", index=False)
    np.save(cache_dir / "vis_umap_coords.npy", coords)
    mis_rows = [1, 2, HOSTILE_ROW]
    mis = pd.DataFrame({"file_name": [names[i] for i in mis_rows] + ["not_in_metadata.png"],
                        "rationale": [json.dumps({"prediction": "misclassification", "score": 0.9,
                                                  "rationale": f"the plot of row {i} shows sparse cover"})
                                      for i in mis_rows[:2]]
                        + [json.dumps({"prediction": "misclassification", "score": 2,
                                       "rationale": HOSTILE_RATIONALE})]
                        + [json.dumps({"prediction": "x", "score": 1, "rationale": "y"})]})
    mis.to_csv(cache_dir / MIS, index=False)
    correct = pd.DataFrame({"file_name": [names[3], names[4]],
                            "rationale": ['```json\n{"prediction": "correct classification", "score": 5, '
                                          '"rationale": "dense canopy"}\n```', "not json at all"]})
    correct.to_csv(cache_dir / CORRECT, index=False)
    return {"root": root, "dir": cache_dir, "images": images, "coords": coords, "names": names, "labels": labels}


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium("1400,900")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def cache_server(cache):
    from mlviz.explore.app import Server

    app, table = prepare_explorer(cache_dir=str(cache["dir"]), coords_file="vis_umap_coords.npy",
                                  image_dir=str(cache["images"]))
    server = Server(app, "127.0.0.1", 0).start()
    yield {"server": server, "url": server.url, "table": table}
    server.stop()


# --------------------------------------------------------------------------- browser helpers

PLOT = "#scatter .js-plotly-plot"


def _open(driver, url):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        f"var g = document.querySelector('{PLOT}'); return g && g._fullLayout && g.data && g.data.length > 0"))


def _points(driver) -> dict[int, tuple[float, float]]:
    """{row: (x, y)} of every point plotly drew, from the plot's own data."""
    data = driver.execute_script(
        f"var g = document.querySelector('{PLOT}'); "
        "return g.data.map(t => [t.type, t.x, t.y, t.customdata.map(c => c[0])]);")
    assert {t[0] for t in data} == {"scattergl"}
    return {int(r): (x, y) for _, xs, ys, rows in data for x, y, r in zip(xs, ys, rows, strict=True)}


def _point_position(driver, row: int) -> tuple[int, int]:
    return driver.execute_script(
        f"var g = document.querySelector('{PLOT}'), L = g._fullLayout, r = g.getBoundingClientRect();"
        "for (const t of g.data) { const k = t.customdata.findIndex(c => c[0] == arguments[0]);"
        "  if (k >= 0) return [Math.round(r.left + L._size.l + L.xaxis.l2p(t.x[k])),"
        "                      Math.round(r.top + L._size.t + L.yaxis.l2p(t.y[k]))]; }", row)


def _move(driver, row: int, click: bool):
    from selenium.webdriver.common.action_chains import ActionChains

    x, y = _point_position(driver, row)
    chain = ActionChains(driver)
    chain.w3c_actions.pointer_action.move_to_location(x, y)
    if click:
        chain.w3c_actions.pointer_action.click()
    chain.perform()


def _click(driver, row: int, expect_title: str):
    from selenium.webdriver.support.ui import WebDriverWait

    _move(driver, row, click=True)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "var t = document.getElementById('detail-title'); return t && t.textContent.includes(arguments[0])",
        expect_title))


def _wait_image(driver) -> tuple[int, str]:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 15).until(lambda d: d.execute_script(
        "var i = document.getElementById('detail-image'); "
        "return i && i.complete && i.naturalWidth > 0 ? [i.naturalWidth, i.src] : null"))


def _no_alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


# --------------------------------------------------------------------------- the safe resolver


@pytest.mark.parametrize("name", [
    "../secret.png", "../secret.txt", "sub/../../secret.png", "..", ".", "./plot_00.png", "/etc/passwd",
    str(Path("/etc/hostname")), "~/secret.png", "C:/secret.png", "c:secret.png", "..\\secret.png",
    "sub\\..\\..\\secret.png", "%2e%2e/secret.png", "%2e%2e%2fsecret.png", "..%2fsecret.png",
    "%252e%252e%252fsecret.png", "%25252e%25252e%25252fsecret.png", "%2fetc%2fpasswd", "%2Fetc%2Fpasswd",
    "plot_01.png\x00.txt", "plot_01.png%00", "link.png", "notes.txt", "missing.png", "sub", "", None, 3,
])
def test_resolver_refuses_everything_outside_the_folder_and_non_images(cache, name):
    assert resolve_image_path(cache["images"], name) is None


def test_resolver_finds_images_inside_the_folder(cache, tmp_path):
    images = cache["images"]
    assert resolve_image_path(images, "plot_01.png") == (images / "plot_01.png").resolve()
    assert resolve_image_path(images, "sub/plot_07.png") == (images / "sub/plot_07.png").resolve()
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "a b%20c.png").write_bytes(b"x")  # a literal %20 in a file name is looked up as written
    assert resolve_image_path(odd, "a b%20c.png") == (odd / "a b%20c.png").resolve()
    (odd / "inside.png").symlink_to(odd / "a b%20c.png")  # a link that stays inside is fine
    assert resolve_image_path(odd, "inside.png") == (odd / "a b%20c.png").resolve()
    linked_root = tmp_path / "linked"  # the folder itself may be a symlink
    linked_root.symlink_to(images)
    assert resolve_image_path(linked_root, "plot_01.png") == (images / "plot_01.png").resolve()


# --------------------------------------------------------------------------- reading the inputs


def test_seed_003_cache_dir_is_read_as_it_is(cache):
    table = load_cache_dir(cache["dir"])  # coords and both reviewer CSVs found by their names
    assert table.n == N and table.image_column == "file_name"
    np.testing.assert_array_equal(table.coords, cache["coords"].astype(np.float64))
    assert list(table.metadata["file_name"]) == cache["names"]
    m = table.metadata
    assert m.loc[1, "llm_prediction"] == "misclassification" and m.loc[1, "llm_score"] == 0.9
    assert m.loc[1, "llm_rationale"] == "the plot of row 1 shows sparse cover" and m.loc[1, "llm_file"] == MIS
    assert m.loc[HOSTILE_ROW, "llm_rationale"] == HOSTILE_RATIONALE
    assert (m.loc[3, "llm_prediction"], m.loc[3, "llm_score"]) == ("correct classification", 5)  # ```json fence
    assert m.loc[4, "llm_prediction"] is None and m.loc[4, "llm_rationale"] == "not json at all"
    assert m["llm_rationale"].notna().sum() == 5
    assert any("1 of 4 rows match no sample" in note for note in table.notes), table.notes
    assert table.choose_columns(None, None) == (
        "ground_truth_word_label", ["file_name", "ground_truth_word_label", "ground_truth_num_label"])
    assert parse_rationale('{"Verdict": "ok", "Reason": "r"}') == {"prediction": "ok", "score": None,
                                                                    "rationale": "r", "parsed": True}


def _bad_cache(tmp_path, cache, coords=None, metadata=None, extra: dict | None = None) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    meta = pd.read_csv(cache["dir"] / "metadata.csv") if metadata is None else metadata
    if isinstance(meta, pd.DataFrame):
        meta.to_csv(d / "metadata.csv", index=False)
    else:
        (d / "metadata.csv").write_text(meta)
    if isinstance(coords, bytes):
        (d / "vis_umap_coords.npy").write_bytes(coords)
    else:
        np.save(d / "vis_umap_coords.npy", cache["coords"] if coords is None else coords, allow_pickle=True)
    for name, text in (extra or {}).items():
        (d / name).write_text(text)
    return d


@pytest.mark.parametrize("case, fragments", [
    ("short_coords", ("35 points", "36 rows", "pair row by row")),
    ("empty_coords", ("empty",)),
    ("text_coords", ("not numeric",)),
    ("object_coords", ("not a numeric array",)),
    ("three_columns", ("expected (n, 2)",)),
    ("nan_coords", ("1 point(s) with NaN",)),
    ("not_npy", ("cannot read",)),
    ("empty_metadata", ("metadata.csv is empty",)),
    ("header_only", ("metadata.csv has no rows",)),
    ("unknown_colour", ("--color-by column 'species'", "ground_truth_word_label")),
    ("unknown_hover", ("--hover column 'nope'",)),
    ("rationale_column_missing", ("no 'rationale' column",)),
    ("no_cache_folder", ("--cache-dir", "no such folder")),
    ("no_source", ("--run", "--cache-dir")),
    ("both_sources", ("not both",)),
    ("bad_port", ("--port", "'http'")),
    ("missing_image_dir", ("--image-dir", "no such folder")),
])
def test_bad_input_is_one_line_and_exit_2(cache, tmp_path, clean_env, monkeypatch, case, fragments):
    from mlviz.explore.app import Server

    def must_not_serve(self):  # a case that passed validation would otherwise serve until killed
        raise AssertionError("the explorer started serving")

    monkeypatch.setattr(Server, "serve_forever", must_not_serve)
    c = cache["coords"]
    args = {
        "short_coords": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=c[:-1])],
        "empty_coords": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=np.zeros((0, 2)))],
        "text_coords": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=np.array([["a", "b"]] * N))],
        "object_coords": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=np.array(
            [[{"a": 1}, 2]] * N, dtype=object))],
        "three_columns": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=np.zeros((N, 3)))],
        "nan_coords": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=np.where(
            np.arange(N)[:, None] == 4, np.nan, c))],
        "not_npy": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, coords=b"hello, not numpy")],
        "empty_metadata": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, metadata="")],
        "header_only": lambda: ["--cache-dir", _bad_cache(tmp_path, cache, metadata="file_name,label\n")],
        "unknown_colour": lambda: ["--cache-dir", cache["dir"], "--color-by", "species"],
        "unknown_hover": lambda: ["--cache-dir", cache["dir"], "--hover", "file_name, nope"],
        "rationale_column_missing": lambda: ["--cache-dir", _bad_cache(
            tmp_path, cache, extra={"mis_x.csv": "file_name,reason\nplot_01.png,hm\n"})],
        "no_cache_folder": lambda: ["--cache-dir", tmp_path / "nowhere"],
        "no_source": lambda: [],
        "both_sources": lambda: ["--cache-dir", cache["dir"], "--run", "0" * 32],
        "bad_port": lambda: ["--cache-dir", cache["dir"], "--port", "http"],
        "missing_image_dir": lambda: ["--cache-dir", cache["dir"], "--image-dir", tmp_path / "no-images"],
    }[case]()
    result = run_cli("explore", *args, "--no-browser", *(["--port", "0"] if "--port" not in args else []))
    assert_one_line_error(result, *fragments)


def test_scatter_figure_keeps_every_point_with_its_own_row():
    """Colours, symbols and hover fields travel with the point they belong to, whatever the trace order."""
    from mlviz.explore.app import scatter_figure
    from mlviz.explore.data import ExploreTable

    rng = np.random.default_rng(1)
    n = 500
    meta = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "label": rng.integers(0, 4, n),
                         "confidence": rng.random(n).round(4), "correct": rng.random(n) > 0.2})
    meta.loc[7, "label"] = np.nan
    table = ExploreTable(rng.normal(size=(n, 2)), meta, "test")
    for colour in ("confidence", "label", "sample_id"):
        fig = scatter_figure(table, colour, ["sample_id", "confidence"])
        seen = []
        for trace in fig["data"]:
            assert trace["type"] == "scattergl"
            symbols = trace["marker"].get("symbol", ["circle"] * len(trace["x"]))
            for k, (row, sid, conf) in enumerate(trace["customdata"]):
                seen.append(row)
                assert (trace["x"][k], trace["y"][k]) == tuple(table.coords[row])
                assert sid == f"s{row}" and float(conf) == meta.loc[row, "confidence"]
                assert (symbols[k] == "x") == (not meta.loc[row, "correct"])
                if colour == "confidence":
                    assert trace["marker"]["color"][k] == meta.loc[row, "confidence"]
        assert sorted(seen) == list(range(n))
        assert f"the {int((~meta['correct']).sum())} misclassified" in fig["layout"]["title"]["text"]
    names = [t["name"] for t in scatter_figure(table, "label", [])["data"]]
    counts = meta["label"].value_counts()
    assert names == [f"{k} (n={counts[float(k)]})" for k in range(4)] + ["(missing) (n=1)"]  # 0.0 shown as 0


def test_no_images_is_said_in_the_panel(cache):
    from mlviz.explore.app import Images, detail_panel

    table = load_cache_dir(cache["dir"])
    parts = detail_panel(table, Images(), 1)
    ids = [getattr(c, "id", None) for c in parts]
    assert "detail-image" not in ids and "detail-no-image" in ids and "detail-llm" in ids
    assert "pass --image-dir" in parts[ids.index("detail-no-image")].children
    hosted = detail_panel(table, Images(url_prefix="https://images.example.org/test/"), 14)  # seed 003's --image_root
    assert hosted[1].id == "detail-image" and hosted[1].src == "https://images.example.org/test/sub/plot_14.png"


# --------------------------------------------------------------------------- in a real browser


def test_scatter_click_shows_the_image_metadata_and_rationale(browser, cache, cache_server):
    from selenium.webdriver.common.by import By

    _open(browser, cache_server["url"])
    points = _points(browser)
    assert len(points) == N
    np.testing.assert_allclose([points[i] for i in range(N)], cache["coords"], rtol=1e-6)
    assert browser.execute_script(f"return document.querySelectorAll('{PLOT} canvas').length") >= 1
    legend = browser.find_element(By.CSS_SELECTOR, f"{PLOT} .legend").text
    assert "cat (n=12)" in legend and "dog (n=12)" in legend and "bird (n=11)" in legend, legend
    assert f"{HOSTILE_LABEL} (n=1)" in legend  # drawn as its characters

    _click(browser, 1, "plot_01.png")
    width, src = _wait_image(browser)
    assert width == 10 + 1 and src.endswith("/images/plot_01.png")
    detail = browser.find_element(By.ID, "detail").text
    assert "dog" in detail and "the plot of row 1 shows sparse cover" in detail and "misclassification" in detail
    assert browser.find_element(By.ID, "detail-llm-score").text == "0.9"

    _click(browser, 14, "sub/plot_14.png")  # an image in a sub-folder, no rationale
    width, src = _wait_image(browser)
    assert width == 10 + 14 and src.endswith("/images/sub/plot_14.png")
    assert "no reviewer rationale" in browser.find_element(By.ID, "detail-llm").text

    _click(browser, N - 2, "../secret.png")  # metadata naming a file outside the folder: no image
    assert browser.find_elements(By.ID, "detail-image") == []
    assert "no image file '../secret.png'" in browser.find_element(By.ID, "detail-no-image").text


def test_hostile_metadata_and_rationale_are_shown_as_text(browser, cache_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, cache_server["url"])
    _move(browser, HOSTILE_ROW, click=False)
    hover = WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        f"var h = document.querySelector('{PLOT} .hoverlayer .hovertext'); return h && h.textContent"))
    assert HOSTILE_LABEL in hover
    assert browser.execute_script(f"return document.querySelectorAll('{PLOT} .hoverlayer script, "
                                  f"{PLOT} .hoverlayer img, {PLOT} .legend script').length") == 0
    _click(browser, HOSTILE_ROW, "plot_05.png")
    _wait_image(browser)
    detail = browser.find_element(By.ID, "detail")
    assert HOSTILE_LABEL in detail.text and HOSTILE_NOTE in detail.text
    assert browser.find_element(By.ID, "detail-llm-rationale").text == HOSTILE_RATIONALE
    assert browser.execute_script("return document.querySelectorAll('#detail script, #detail b').length") == 2  # ours
    assert len(detail.find_elements(By.TAG_NAME, "img")) == 1  # the sample's own image, nothing injected
    assert browser.execute_script(
        "return [window.__xss_label, window.__xss_note, window.__xss_rationale]") == [None, None, None]
    assert browser.execute_script(
        "return [...document.querySelectorAll('script')].filter(e => e.textContent.includes('__xss')).length") == 0
    _no_alert(browser)


def test_colour_by_dropdown_recolours(browser, cache_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(browser, cache_server["url"])
    assert len(browser.execute_script(f"return document.querySelector('{PLOT}').data")) == 4  # 3 words + hostile
    browser.find_element(By.ID, "color-by").click()
    option = WebDriverWait(browser, 10).until(lambda d: next(
        (e for e in d.find_elements(By.XPATH, "//*[normalize-space(text())='note']") if e.is_displayed()), None))
    option.click()
    WebDriverWait(browser, 15).until(lambda d: d.execute_script(
        f"return document.querySelector('{PLOT}').data.length") == 2)
    names = browser.execute_script(f"return document.querySelector('{PLOT}').data.map(t => t.name)")
    assert sorted(names) == sorted([f"plain (n={N - 1})", "&lt;img src=x onerror=&quot;window.__xss_note = 1&quot;&gt; (n=1)"])
    assert len(_points(browser)) == N


# --------------------------------------------------------------------------- HTTP: nothing outside the folder


def _get(url: str, path: str) -> tuple[int, bytes]:
    """A raw GET (http.client sends the path byte for byte: no client-side normalisation of ../)."""
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/images/../secret.png", "/images/../../secret.txt", "/images/sub/../../secret.png", "/images/..%2fsecret.png",
    "/images/%2e%2e/secret.png", "/images/%2e%2e%2fsecret.png", "/images/%252e%252e%252fsecret.png",
    "/images/%25252e%25252e%25252fsecret.txt", "/images//etc/passwd", "/images/%2fetc%2fpasswd",
    "/images/%2Fetc%2Fhostname", "/images/..%5csecret.png", "/images/link.png", "/images/notes.txt",
    "/images/plot_01.png%00.txt", "/../secret.png", "/%2e%2e/secret.png", "/images/" + "a/" * 300 + "x.png",
    "/_dash-component-suites/../../secret.png", "/assets/../secret.png",
])
def test_image_route_serves_nothing_outside_the_folder(cache_server, path):
    status, body = _get(cache_server["url"], path)
    assert status in (400, 403, 404), (status, body[:200])
    assert SECRET not in body and b"root:" not in body


def test_image_route_serves_the_folder(cache, cache_server):
    status, body = _get(cache_server["url"], "/images/sub/plot_07.png")
    assert status == 200 and body == (cache["images"] / "sub/plot_07.png").read_bytes()
    status, _ = _get(cache_server["url"], "/images/plot_1.png")  # not named by the metadata
    assert status == 404


# --------------------------------------------------------------------------- a run in a real SQLite store


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    """A run logging what `mlviz embed` logs: embedding_coords.npy + embedding_metadata.csv, and the digits
    images as data/val_images.npz, paired through a shuffled image_index."""
    from mlflow import MlflowClient
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    root = tmp_path_factory.mktemp("explore-run")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("embeddings", artifact_location=str(root / "artifacts"))
    run_id = client.create_run(exp, run_name="best-cnn").info.run_id
    digits = load_digits()
    n = 60
    images = (digits.images[:n] / 16.0).astype(np.float32)[:, None]
    order = np.random.default_rng(0).permutation(n)  # metadata row i shows image order[i]
    coords = PCA(2, random_state=0).fit_transform(digits.data[:n][order]).astype(np.float32)
    labels = digits.target[:n][order]
    predictions = np.where(np.arange(n) % 9 == 0, (labels + 1) % 10, labels)
    meta = pd.DataFrame({"index": np.arange(n), "sample_id": [f"digit-{k}" for k in order], "label": labels,
                         "prediction": predictions, "correct": predictions == labels,
                         "confidence": np.linspace(0.5, 0.99, n).round(3), "image_index": order})
    src = root / "src"
    (src / "mlviz/embedding").mkdir(parents=True)
    (src / "data").mkdir()
    np.save(src / "mlviz/embedding/embedding_coords.npy", coords)
    meta.to_csv(src / "mlviz/embedding/embedding_metadata.csv", index=False)
    np.savez(src / "data/val_images.npz", images=images, labels=digits.target[:n],
             sample_ids=np.array([f"digit-{k}" for k in range(n)]), class_names=np.array([str(k) for k in range(10)]))
    client.log_artifacts(run_id, str(src / "mlviz"), "mlviz")
    client.log_artifacts(run_id, str(src / "data"), "data")
    client.set_terminated(run_id, "FINISHED")
    bare = client.create_run(exp, run_name="no-embedding").info.run_id
    client.set_terminated(bare, "FINISHED")
    return {"uri": uri, "root": root, "run_id": run_id, "bare": bare, "coords": coords, "images": images,
            "order": order, "meta": meta}


def test_run_explorer_over_a_sqlite_store(browser, run_store):
    from PIL import Image
    from selenium.webdriver.common.by import By

    from mlviz.explore.app import MIN_DISPLAY_PX, Server

    before = tree_digest(run_store["root"])
    app, table = prepare_explorer(run_id=run_store["run_id"], tracking_uri=run_store["uri"])
    assert tree_digest(run_store["root"]) == before  # reading the run changed nothing in the store
    assert table.n == 60 and table.notes == []
    server = Server(app, "127.0.0.1", 0).start()
    try:
        _open(browser, server.url)
        points = _points(browser)
        assert len(points) == 60
        np.testing.assert_allclose([points[i] for i in range(60)], run_store["coords"], rtol=1e-6)
        assert len(browser.execute_script(f"return document.querySelector('{PLOT}').data")) == 10  # by label
        row = 9  # misclassified (every 9th row)
        _click(browser, row, run_store["meta"].loc[row, "sample_id"])
        width, src = _wait_image(browser)
        assert width == 8 * (MIN_DISPLAY_PX // 8) and src.startswith("data:image/png;base64,")
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
        expected = np.round(run_store["images"][run_store["order"][row], 0] * 255).astype(np.uint8)
        np.testing.assert_array_equal(shown[:: MIN_DISPLAY_PX // 8, :: MIN_DISPLAY_PX // 8], expected)
        detail = browser.find_element(By.ID, "detail-metadata").text
        label, pred = run_store["meta"].loc[row, ["label", "prediction"]]
        assert f"label {label}" in detail and f"prediction {pred}" in detail and "correct False" in detail
    finally:
        server.stop()
    assert tree_digest(run_store["root"]) == before


def test_run_without_embedding_files_is_one_line(run_store, clean_env):
    result = run_cli("explore", "--run", run_store["bare"], "--tracking-uri", run_store["uri"], "--no-browser")
    assert_one_line_error(result, "mlviz/embedding/embedding_coords.npy", "mlviz embed --run")
    result = run_cli("explore", "--run", "f" * 32, "--tracking-uri", run_store["uri"], "--no-browser")
    assert_one_line_error(result, "no run")


# --------------------------------------------------------------------------- the command, in its own process


def test_command_serves_on_loopback_until_stopped(cache, tmp_path):
    code = ("import sys; from mlviz.cli import main; from mlviz.commands.explore import explore; "
            "main.add_command(explore); sys.argv[0] = 'mlviz'; main()")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "explore", "--cache-dir", str(cache["dir"]), "--image-dir",
         str(cache["images"]), "--hover", "file_name,note", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    try:
        deadline, lines = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "points at http" in line:
                break
        assert lines and "36 points at http://127.0.0.1:" in lines[-1], "".join(lines)
        url = lines[-1].split(" at ")[1].split()[0]
        status, body = _get(url, "/")
        assert status == 200 and b"mlviz explore" in body
        status, body = _get(url, "/images/plot_02.png")
        assert status == 200 and body == (cache["images"] / "plot_02.png").read_bytes()
        assert any("note: " in ln and "match no sample" in ln for ln in lines), lines
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert not list(tmp_path.iterdir())  # it wrote nothing where it ran
