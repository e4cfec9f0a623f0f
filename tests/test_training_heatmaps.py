"""The training-time heatmap grids go through the one publish path: `HeatmapCallback.figure` is figures-as-data,
`publish_step` draws it as every figure is drawn and logs it into a real run by step (or hands it to a function)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from PIL import Image  # noqa: E402

from mlviz.attribution.callback import TrainingGrid  # noqa: E402
from mlviz.publish import IntoRun  # noqa: E402
from mlviz.report import Figure  # noqa: E402
from mlviz.sections.training_heatmaps import HeatmapCallback  # noqa: E402
from mlviz.store.read import Store  # noqa: E402
from mlviz.store.write import Writer  # noqa: E402
from tests.attribution_tasks import FlatHeadCNN, fit, quadrant_task  # noqa: E402
from tests.conftest import fresh_sqlite_store  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_grids_are_figures_published_into_the_run_by_step(tmp_path):
    x, y = quadrant_task(96, seed=1)
    model = FlatHeadCNN()
    fit(model, x, y, epochs=2)
    fs = fresh_sqlite_store(tmp_path / "store")
    store = Store(fs["uri"])
    try:
        writer = Writer(store)
        exp = writer.experiment("train", artifact_location=str(tmp_path / "store" / "art"))
        run_id = writer.create_run(exp, "training")
        heads = ["tl", "tr", "bl", "br"]
        cb = HeatmapCallback(model, x[:3], every_n_epochs=2, to=IntoRun(store, run_id), key="cams",
                             labels=y[:3], head_names=heads, sample_ids=["a", "b", "c"])
        mine: list[tuple[int, np.ndarray]] = []
        own = HeatmapCallback(model, x[:3], 2, log_fn=lambda e, rgb: mine.append((e, rgb)),
                              labels=y[:3], head_names=heads, sample_ids=["a", "b", "c"])

        figure = cb.figure(2)  # the data step alone: nothing drawn, nothing logged
        assert isinstance(figure, Figure) and isinstance(figure.data, TrainingGrid)
        assert (figure.section, figure.name, figure.grid_key) == ("heatmaps", "training_epoch_0002", "cams")
        grid = figure.data
        assert len(grid.cams) == 3 and all(len(row) == 4 for row in grid.cams)
        assert grid.col_titles == heads and grid.row_titles[0].startswith("#a: true ")
        assert all(0 <= c.min() and c.max() <= 1 for row in grid.cams for c in row)
        assert store.artifact_paths(run_id) == []

        returned = {e: cb(e) for e in (1, 2, 3, 4)}
        for e in (1, 2, 3, 4):
            own(e)
        assert cb.logged == [2, 4] and returned[1] is None and returned[3] is None
        # the same drawing for both destinations (one road), and what was logged is what was drawn
        assert [e for e, _ in mine] == [2, 4]
        assert all(np.array_equal(returned[e], rgb) for e, rgb in mine)
        rgb = returned[2]
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] > 200

        logged = [p for p in store.artifact_paths(run_id) if "compressed" not in p]
        assert all(p.startswith("images/cams+step+") for p in logged), logged
        steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in logged if p.endswith(".png"))
        assert steps == [2, 4]
        png = next(p for p in logged if p.endswith(".png") and "+step+4+" in p)
        with Image.open(store.download(run_id, png, tmp_path / "dl")) as img:
            assert np.array_equal(np.asarray(img.convert("RGB")), returned[4])
        assert not [p for p in store.artifact_paths(run_id) if p.startswith("mlviz/")]  # no report files mid-training
    finally:
        store.close()
