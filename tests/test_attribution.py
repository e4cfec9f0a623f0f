"""CAMs on tiny models trained here on tasks whose evidence is known; one-pass multi-head CAMs against
pytorch_grad_cam's own per-head calls; hooks and model state left clean, even after errors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from torch import nn  # noqa: E402

from mlviz.attribution.cam import compute_cams, input_gradients, occlusion_sensitivity  # noqa: E402
from mlviz.attribution.faithfulness import faithfulness  # noqa: E402
from mlviz.attribution.hooks import hook_count  # noqa: E402
from mlviz.errors import MlvizError  # noqa: E402
from tests.attribution_tasks import (  # noqa: E402
    FlatHeadCNN,
    TinyCNN,
    TupleHeads,
    fit,
    patch_task,
    quadrant_mass,
    quadrant_task,
)

GRADIENT_CAMS = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigengradcam"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def patch_model(one_thread):
    x, y, _ = patch_task(1200, seed=0)
    torch.manual_seed(0)  # the initial weights too: runs are repeatable
    model = TinyCNN(n_classes=3)
    assert fit(model, x, y, epochs=8) > 0.95
    xt, yt, qt = patch_task(48, seed=1)
    return model, xt, yt, qt


@pytest.fixture(scope="module")
def zone_model(one_thread):
    """Four outputs, output k = 'a bright square lies in quadrant k' (head k depends only on region k)."""
    x, y = quadrant_task(1000, seed=0)
    torch.manual_seed(0)
    model = FlatHeadCNN(n_heads=4, n_classes=2)
    assert fit(model, x, y, epochs=8) > 0.95
    xt, yt = quadrant_task(48, seed=1)
    return model, xt, yt


def _in_quadrant(maps: np.ndarray, quadrants: np.ndarray) -> np.ndarray:
    return quadrant_mass(maps)[np.arange(len(quadrants)), quadrants]


# --------------------------------------------------------------------------- evidence
@pytest.mark.parametrize("method, at_least", [
    ("gradcam", 0.8), ("gradcam++", 0.8), ("hirescam", 0.8), ("layercam", 0.8), ("scorecam", 0.8),
    ("ablationcam", 0.8), ("occlusion", 0.8),
    ("eigencam", 0.7),  # class-agnostic first principal component, whose sign SVD leaves open: some maps invert
])
def test_map_falls_on_the_pattern(patch_model, method, at_least):
    model, xt, yt, qt = patch_model
    r = compute_cams(model, xt, method)
    assert r.maps.shape == (48, 1, 16, 16)
    assert 0 <= r.maps.min() and r.maps.max() <= 1 + 1e-6
    share = _in_quadrant(r.maps[:, 0], qt)
    assert np.mean(share > 0.5) >= at_least, f"{method}: {np.mean(share > 0.5):.2f} of maps mostly in the quadrant"


def test_input_gradients_are_labelled_and_better_than_chance(patch_model):
    model, xt, _, qt = patch_model
    r = input_gradients(model, xt)
    assert not r.is_cam and "not a CAM" in r.label
    assert np.median(_in_quadrant(r.maps[:, 0], qt)) > 0.28  # noisy, but above the 0.25 of chance


@pytest.mark.parametrize("method", ["hirescam", "layercam"])
def test_each_head_points_to_its_own_quadrant(zone_model, method):
    model, xt, yt = zone_model
    r = compute_cams(model, xt, method, head_names=["q0", "q1", "q2", "q3"])
    assert r.maps.shape == (48, 4, 16, 16) and r.head_names == ["q0", "q1", "q2", "q3"]
    mass = quadrant_mass(r.maps)  # (N, head, quadrant)
    for k in range(4):
        present = (yt[:, k] == 1) & (r.predicted[:, k] == 1)
        assert present.sum() >= 10
        assert np.mean(mass[present, k, k] > 0.5) >= 0.8, f"head {k}"


def test_binary_single_logit(one_thread):
    x, y, _ = patch_task(800, seed=3, n_classes=2)
    torch.manual_seed(0)
    model = TinyCNN(binary=True)
    assert fit(model, x, y, epochs=6) > 0.95
    xt, yt, qt = patch_task(32, seed=4, n_classes=2)
    r = compute_cams(model, xt, "gradcam")
    assert r.maps.shape == (32, 1, 16, 16)
    assert set(np.unique(r.predicted)) <= {0, 1}
    assert np.mean(_in_quadrant(r.maps[:, 0], qt) > 0.5) >= 0.8
    with torch.no_grad():
        logits = model(torch.as_tensor(xt))
    np.testing.assert_array_equal(r.predicted[:, 0], (logits > 0).long().numpy())
    p1 = torch.sigmoid(logits).numpy()
    np.testing.assert_allclose(r.probability[:, 0], np.where(r.predicted[:, 0] == 1, p1, 1 - p1), rtol=1e-5)

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    for cls in (0, 1):  # the signed logit, as the library's binary target
        ours = compute_cams(model, xt[:8], "gradcam", targets=cls)
        with GradCAM(model, [model.features[3]]) as cam:
            ref = cam(torch.as_tensor(xt[:8]), [BinaryClassifierOutputTarget(cls)] * 8)
        np.testing.assert_allclose(ours.maps[:, 0], ref, atol=1e-5)


# --------------------------------------------------------------------------- one pass == library per head
class _HeadTarget:
    def __init__(self, head, cls):
        self.head, self.cls = head, int(cls)

    def __call__(self, sample_output):  # one sample's (heads, classes) output
        return sample_output[self.head, self.cls]


@pytest.mark.parametrize("method", GRADIENT_CAMS)
def test_one_pass_multi_head_equals_separate_library_calls(zone_model, method):
    import pytorch_grad_cam as pgc

    cls = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
           "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigengradcam": pgc.EigenGradCAM}[method]
    model, xt, yt = zone_model
    x = torch.as_tensor(xt[:12])
    for targets in ("predicted", "true"):
        ours = compute_cams(model, x, method, targets=targets, labels=yt[:12])
        assert ours.layer["name"] == "features.3"
        for k in range(4):
            with cls(model=model, target_layers=[model.features[3]]) as cam:
                ref = cam(x, [_HeadTarget(k, c) for c in ours.target_classes[:, k]])
            np.testing.assert_allclose(ours.maps[:, k], ref, atol=1e-5, err_msg=f"{method} head {k}")


def test_tuple_of_heads_with_different_class_counts(one_thread):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = TupleHeads((2, 5)).eval()
    x = torch.rand(6, 1, 12, 12)
    r = compute_cams(model, x, "gradcam")
    assert r.maps.shape == (6, 2, 12, 12) and r.output_names == ["output0", "output1"]
    for k in range(2):
        view = _Pick(model, k)
        with GradCAM(view, [model.features[2]]) as cam:
            ref = cam(x, [ClassifierOutputTarget(c) for c in r.target_classes[:, k]])
        np.testing.assert_allclose(r.maps[:, k], ref, atol=1e-5)
    assert compute_cams(model, x, "gradcam", heads=["output1"], head_names=["a", "output1"]).maps.shape == (6, 1, 12, 12)


class _Pick(nn.Module):
    def __init__(self, model, k):
        super().__init__()
        self.model, self.k = model, k

    def forward(self, x):
        return self.model(x)[self.k]


def test_named_layers_and_module_objects(patch_model):
    model, xt, _, _ = patch_model
    a = compute_cams(model, xt[:4], "gradcam", target_layer="features.3")
    b = compute_cams(model, xt[:4], "gradcam", target_layer=model.features[3])
    c = compute_cams(model, xt[:4], "gradcam", target_layer="features[-1]")  # the ReLU after it
    assert a.layer["name"] == b.layer["name"] == "features.3" and c.layer["name"] == "features.4"
    np.testing.assert_allclose(a.maps, b.maps)
    early = compute_cams(model, xt[:4], "gradcam", target_layer="features.0")
    assert early.layer["output_shape"] == [16, 16, 16]


def test_automatic_layer_is_the_last_conv_called_not_declared(one_thread):
    class Reordered(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(8, 8, 3, padding=1)  # declared first, runs last
            self.early = nn.Conv2d(1, 8, 3, padding=1)
            self.squash = nn.Conv2d(8, 8, 8)  # runs after both, but 1×1 output: no spatial extent
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.squash(torch.relu(self.late(torch.relu(self.early(x))))).flatten(1))

    r = compute_cams(Reordered().eval(), torch.rand(3, 1, 8, 8), "gradcam")
    assert r.layer["name"] == "late"


# --------------------------------------------------------------------------- faithfulness
def test_faithfulness_beats_random_maps(patch_model):
    model, xt, _, _ = patch_model
    r = compute_cams(model, xt, "gradcam")
    f = faithfulness(model, xt, r, max_samples=12, n_boot=200)
    road = f["metrics"]["road_combined"]
    assert f["source"] == "pytorch_grad_cam.metrics" and f["n_samples"] == 12
    assert road["mean"] > road["random_baseline"]["mean"] + 0.1
    assert road["ci95"][0] is not None and road["ci95"][0] <= road["mean"] <= road["ci95"][1]
    assert "cam_mult_confidence_change" in f["metrics"]
    again = faithfulness(model, xt, r, max_samples=12, n_boot=200)
    assert again["metrics"]["road_combined"]["mean"] == road["mean"]  # seeded imputation noise


# --------------------------------------------------------------------------- hooks, state, errors
class _Fragile(TinyCNN):
    """Fails in the middle of a CAM: only when gradients are enabled (the CAM's own forward pass)."""

    def forward(self, x):
        out = super().forward(x)
        if torch.is_grad_enabled() and getattr(self, "fail", False):
            raise RuntimeError("boom")
        if not torch.is_grad_enabled() and x.shape[0] >= 8 and getattr(self, "fail_ablating", False):
            raise RuntimeError("boom while the AblationLayer stands in for the target layer")
        return out


def test_hooks_removed_after_many_calls_and_after_errors(one_thread):
    torch.manual_seed(0)
    model = _Fragile(n_classes=3)
    model.train()  # as inside a training loop
    x = torch.rand(4, 1, 16, 16)
    for _ in range(10):
        for method in ("gradcam", "hirescam", "eigencam", "scorecam", "ablationcam", "occlusion", "input_gradients"):
            compute_cams(model, x, method)
    for bad in (dict(target_layer="features.9"), dict(images=torch.rand(4, 3, 16, 16)), dict(targets=7),
                dict(targets="true"), dict(method="nonsense")):
        kw = {"images": x, **bad}
        with pytest.raises(MlvizError):
            compute_cams(model, kw.pop("images"), **kw)
    model.fail = True
    for method in ("gradcam", "ablationcam", "input_gradients"):
        with pytest.raises((MlvizError, RuntimeError)):
            compute_cams(model, x, method)
    model.fail = False
    model.fail_ablating = True  # fails after AblationCAM swapped its stand-in layer in
    with pytest.raises(MlvizError, match="ablationcam failed"):
        compute_cams(model, x, "ablationcam")
    model.fail_ablating = False
    assert hook_count(model) == 0
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # autograd.grad, never backward()
    assert isinstance(model.features[3], nn.Conv2d)  # AblationCAM's stand-in layer put back


def test_unknown_layer_lists_candidates(patch_model):
    model, xt, _, _ = patch_model
    with pytest.raises(MlvizError) as err:
        compute_cams(model, xt[:2], "gradcam", target_layer="backbone.layer4")
    msg = str(err.value)
    assert "unknown layer 'backbone.layer4'" in msg and "features.3 (Conv2d, 32×8×8)" in msg and "\n" not in msg
    with pytest.raises(MlvizError, match="no spatial extent"):
        compute_cams(model, xt[:2], "gradcam", target_layer="head")


@pytest.mark.parametrize("shape, words", [
    ((16, 16), "(N, C, H, W)"),
    ((1, 16, 16), "add a batch axis"),
    ((2, 3, 16, 16), "expects 1 channel(s), the images have 3"),
    ((2, 16, 16, 1), "channels-last"),
    ((0, 1, 16, 16), "empty"),
])
def test_images_of_the_wrong_shape(patch_model, shape, words):
    model = patch_model[0]
    with pytest.raises(MlvizError) as err:
        compute_cams(model, np.zeros(shape, np.float32), "gradcam")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert hook_count(model) == 0


def test_model_without_a_conv_layer_offers_alternatives(one_thread):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.rand(3, 1, 8, 8)
    with pytest.raises(MlvizError) as err:
        compute_cams(mlp, x, "gradcam")
    assert "no layer to compute a CAM on" in str(err.value) and "occlusion" in str(err.value)
    occ = compute_cams(mlp, x, "occlusion")
    grads = compute_cams(mlp, x, "input_gradients")
    for r in (occ, grads):
        assert not r.is_cam and "not a CAM" in r.label and r.layer is None and r.maps.shape == (3, 1, 8, 8)
    assert occ.params["patch"] >= 1 and occ.params["max_drop"].shape == (3, 1)


def test_no_gradient_reaching_the_layer_offers_alternatives(one_thread):
    class Detached(TinyCNN):
        def forward(self, x):
            return self.head(self.features(x).detach().mean((2, 3)))

    model = Detached().eval()
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(MlvizError) as err:
        compute_cams(model, x, "gradcam")
    assert "no gradient reaches layer 'features.3'" in str(err.value) and "occlusion" in str(err.value)
    assert hook_count(model) == 0
    assert compute_cams(model, x, "eigencam").is_cam  # gradient-free CAM still works


def test_targets_and_heads(zone_model):
    model, xt, yt = zone_model
    r = compute_cams(model, xt[:5], "gradcam", targets="true", labels=yt[:5], heads=[2])
    assert r.maps.shape == (5, 1, 16, 16) and r.heads == [2] and r.target_mode == "true"
    np.testing.assert_array_equal(r.target_classes[:, 0], yt[:5, 2])
    fixed = compute_cams(model, xt[:5], "gradcam", targets=1)
    assert (fixed.target_classes == 1).all() and fixed.target_mode == "class 1"
    with pytest.raises(MlvizError, match="out of range"):
        compute_cams(model, xt[:5], "gradcam", targets=2)
    with pytest.raises(MlvizError, match="unknown output"):
        compute_cams(model, xt[:5], "gradcam", heads=["lung"], head_names=["a", "b", "c", "d"])


def test_occlusion_one_pass_for_all_heads_and_direct_call(zone_model):
    model, xt, yt = zone_model
    r = occlusion_sensitivity(model, xt[:16], patch=4, stride=2)
    assert r.maps.shape == (16, 4, 16, 16) and r.method == "occlusion"
    mass = quadrant_mass(r.maps)
    present = (yt[:16] == 1) & (r.predicted == 1)
    assert np.mean([mass[i, k, k] > 0.5 for i, k in np.argwhere(present)]) >= 0.8
