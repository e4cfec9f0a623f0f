"""Images named by a predictions table are read only from the run's artifacts or the folder the user names.

A run on a shared server may be written by someone else and name any file on this machine; galleries must
not read it. Checked on the resolver directly (absolute paths, `..`, symlinks out of the root, percent-
encoded traversal, file:// URIs) and end to end through `mlviz best-model --image-root` on a real store.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import assert_one_line_error, describe_result, run_cli

from mlviz.sections.model import _image_source

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def layout(tmp_path):
    """root/ with images (one in a sub-folder), a secret file beside root, and a symlink out of root."""
    from PIL import Image

    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 255, 0)).save(root / "a.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(root / "sub" / "b.png")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    os.symlink(secret, root / "link.png")
    os.symlink(root / "a.png", root / "inner_link.png")  # a symlink that stays inside is fine
    return root, secret


def test_relative_and_absolute_paths_inside_the_root_are_read(layout):
    root, _ = layout
    assert _image_source("a.png", set(), root) == ("file", (root / "a.png").resolve())
    assert _image_source("sub/b.png", set(), root) == ("file", (root / "sub" / "b.png").resolve())
    assert _image_source(str(root / "sub" / "b.png"), set(), root) == ("file", (root / "sub" / "b.png").resolve())
    assert _image_source("./sub/../a.png", set(), root)[0] == "refused"  # no '..' even when it stays inside
    assert _image_source("inner_link.png", set(), root) == ("file", (root / "a.png").resolve())
    assert _image_source("nope.png", set(), root) == ("missing", "not found")


@pytest.mark.parametrize("value, why", [
    ("../secret.png", "a '..' path"),
    ("sub/../../secret.png", "a '..' path"),
    ("..\\secret.png", "a '..' path"),
    ("%2e%2e/secret.png", "a '..' path"),
    ("%2E%2E%2Fsecret.png", "a '..' path"),
    ("%252e%252e%252fsecret.png", "a '..' path"),  # encoded twice
    ("link.png", "a symlink out of the image root"),
])
def test_traversal_and_links_out_of_the_root_are_refused(layout, value, why):
    root, _ = layout
    assert _image_source(value, set(), root) == ("refused", why)


def test_absolute_paths_outside_the_root_are_refused(layout):
    root, secret = layout
    assert _image_source(str(secret), set(), root) == ("refused", "outside the image root")
    assert _image_source(secret.as_uri(), set(), root) == ("refused", "outside the image root")
    assert _image_source("/etc/passwd", set(), root) == ("refused", "outside the image root")
    assert _image_source("%2Fetc%2Fpasswd", set(), root) == ("refused", "an encoded absolute path")


def test_without_an_image_root_only_artifacts_are_read(layout):
    root, secret = layout
    assert _image_source("images/s001.png", {"images/s001.png"}, None) == ("artifact", "images/s001.png")
    kind, why = _image_source(str(secret), {"images/s001.png"}, None)
    assert kind == "missing" and "--image-root" in why
    assert _image_source("images/../../x.png", {"images/../../x.png"}, None)[0] == "refused"


def _store_with_paths(tmp_path, paths):
    """A real run whose predictions (logistic regression on digits, 300 samples) name images by path."""
    from mlflow import MlflowClient
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    x, y = x[:300] / 16.0, (y[:300] == 3).astype(int)
    score = LogisticRegression(C=0.05, max_iter=300).fit(x[::2], y[::2]).predict_proba(x)[:, 1]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("by-path", artifact_location=str(tmp_path / "artifacts"))
    rid = client.create_run(exp).info.run_id
    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"sample_id": np.arange(len(x)), "label": y, "score": score,
                  "image_path": [paths(i) for i in range(len(x))]}).to_csv(src / "val_predictions.csv", index=False)
    client.log_artifact(rid, str(src / "val_predictions.csv"), "predictions")
    client.set_terminated(rid, "FINISHED")
    return uri, rid, x


def test_best_model_reads_local_images_only_under_image_root(tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    root.mkdir()
    secret = tmp_path / "private.png"
    Image.new("RGB", (32, 32), (255, 0, 0)).save(secret)
    os.symlink(secret, root / "shortcut.png")
    bad = [str(secret), "../private.png", "shortcut.png", "%2e%2e/private.png"]

    def paths(i):
        return bad[i // 5 % len(bad)] if i % 5 == 0 else f"s{i:03d}.png"

    uri, rid, x = _store_with_paths(tmp_path, paths)
    for i in range(len(x)):
        Image.fromarray((x[i].reshape(8, 8) * 255).astype(np.uint8)).resize((32, 32)).save(root / f"s{i:03d}.png")

    out = tmp_path / "out"
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--n-boot", "20", "--no-heatmaps",
                "--image-root", root, "--out", out)
    assert r.exit_code == 0, describe_result(r)
    refused_shown = 0
    for name in ("case_gallery", "hardest_samples"):
        data = json.loads((out / "mlviz" / "best_model" / f"{name}.json").read_text())
        shown = [row["image_path"] for row in data["table"]]
        n_bad = sum(v in bad for v in shown)
        refused_shown += n_bad
        assert data["pixels"]["shape"][0] == len(shown)
        note = data["pixels"]["note"]
        if n_bad:
            assert f"{n_bad} refused (outside the image root)" in note, (note, shown)
        else:
            assert "refused" not in note, note
        assert "not found" not in note, note
    assert refused_shown >= 2  # the galleries did show rows naming files outside the root

    # Without --image-root the same table's local files are not read at all, and the run says why.
    out2 = tmp_path / "out2"
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--n-boot", "20", "--no-heatmaps", "--out", out2)
    assert r.exit_code == 0, describe_result(r)
    assert "could be read from artifacts of the run (pass --image-root DIR for local files)" in r.output, r.output
    gallery = json.loads((out2 / "mlviz" / "best_model" / "case_gallery.json").read_text())
    assert gallery["pixels"].get("shape") in (None, [])


def test_image_root_that_is_not_a_folder_is_one_line(tmp_path):
    uri, rid, _ = _store_with_paths(tmp_path, lambda i: f"s{i:03d}.png")
    r = run_cli("best-model", "--tracking-uri", uri, "--run", rid, "--image-root", tmp_path / "missing",
                "--out", tmp_path / "out")
    assert_one_line_error(r, "--image-root", "is not a folder")
