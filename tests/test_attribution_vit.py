"""Transformers (token Grad-CAM with the grid from the token count, attention rollout) and video (3-D CNN,
per-frame maps), on tiny models built and trained here."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pytorch_grad_cam")

from mlviz.attribution.cam import compute_cams  # noqa: E402
from mlviz.attribution.hooks import hook_count  # noqa: E402
from mlviz.attribution.layers import TokenReshape, infer_grid  # noqa: E402
from mlviz.attribution.rollout import attention_rollout, rollout_matrix  # noqa: E402
from mlviz.errors import MlvizError  # noqa: E402
from tests.attribution_tasks import (  # noqa: E402
    TinyVideoCNN,
    TinyViT,
    fit,
    patch_task,
    quadrant_mass,
    video_task,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: torch on one thread


@pytest.fixture(scope="module")
def vit(one_thread):
    x, y, _ = patch_task(800, seed=0)
    torch.manual_seed(0)
    model = TinyViT(n_classes=3)
    assert fit(model, x, y, epochs=10) > 0.9
    xt, yt, qt = patch_task(48, seed=1)
    return model, xt, yt, qt


# --------------------------------------------------------------------------- token grid
@pytest.mark.parametrize("n, hw, expected", [
    (197, (224, 224), (1, (14, 14))),  # ViT-B/16: CLS + 14×14
    (196, (224, 224), (0, (14, 14))),  # mean pooled, no CLS
    (198, (224, 224), (2, (14, 14))),  # DeiT: CLS + distillation token
    (25, (16, 24), (1, (4, 6))),  # non-square image
    (50, (224, 224), (1, (7, 7))),  # ViT-B/32
])
def test_grid_from_the_token_count(n, hw, expected):
    assert infer_grid(n, hw) == expected


def test_grid_prefers_the_patch_embedding_and_explicit_values():
    assert infer_grid(21, (16, 16), patch_grid=(4, 5)) == (1, (4, 5))
    assert infer_grid(17, (16, 16), grid=(4, 4)) == (1, (4, 4))
    assert infer_grid(17, (16, 16), grid=(5, 5)) is None


@pytest.mark.parametrize("cls_token, embed, attn, size", [
    (True, "conv", "mha", (16, 24)),
    (False, "conv", "mha", (16, 16)),
    (True, "linear", "timm", (20, 12)),  # no convolution at all: grid from tokens and aspect ratio
])
def test_vit_gradcam_on_the_last_blocks_norm_equals_library(one_thread, cls_token, embed, attn, size):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = TinyViT(n_classes=3, size=size, cls_token=cls_token, embed=embed, attn=attn).eval()
    x = torch.rand(5, 1, *size)
    r = compute_cams(model, x, "gradcam")
    gh, gw = size[0] // 4, size[1] // 4
    assert r.layer["name"] == "blocks.1.norm1" and r.layer["kind"] == "tokens"
    assert r.layer["token_grid"] == [gh, gw] and r.layer["prefix_tokens"] == (1 if cls_token else 0)
    assert r.maps.shape == (5, 1, *size)
    reshape = TokenReshape(1 if cls_token else 0, (gh, gw))
    with GradCAM(model, [model.blocks[1].norm1], reshape_transform=reshape) as cam:
        ref = cam(x, [ClassifierOutputTarget(int(c)) for c in r.target_classes[:, 0]])
    np.testing.assert_allclose(r.maps[:, 0], ref, atol=1e-5)
    assert hook_count(model) == 0


def test_rollout_points_at_the_pattern(vit):
    model, xt, _, qt = vit
    r = compute_cams(model, xt, "attention_rollout")
    assert not r.is_cam and not r.class_specific and "not a CAM" in r.label
    assert r.params["token_grid"] == [4, 4] and r.params["prefix_tokens"] == 1 and r.params["attention_layers"] == 2
    share = quadrant_mass(r.maps[:, 0])[np.arange(len(qt)), qt]
    assert np.mean(share > 0.5) >= 0.7
    assert hook_count(model) == 0
    cam = compute_cams(model, xt, "hirescam")  # the token CAM runs on the same model
    assert cam.is_cam and cam.maps.shape == r.maps.shape


def test_rollout_matrix_by_hand():
    a = torch.tensor([[[[0.5, 0.5], [0.2, 0.8]]]], dtype=torch.float64)  # (B=1, heads=1, 2, 2)
    one = (a[0, 0] + torch.eye(2, dtype=torch.float64)) / 2  # + identity, rows renormalised
    np.testing.assert_allclose(rollout_matrix([a]).numpy()[0], one.numpy())
    np.testing.assert_allclose(rollout_matrix([a, a]).numpy()[0], (one @ one).numpy())


def test_rollout_on_timm_style_attention_and_on_a_cnn(one_thread):
    torch.manual_seed(0)
    model = TinyViT(attn="timm").eval()
    r = attention_rollout(model, torch.rand(3, 1, 16, 16), discard_ratio=0.5, head_fusion="max")
    assert r.maps.shape == (3, 1, 16, 16) and r.params["attention_layers"] == 2
    from tests.attribution_tasks import TinyCNN

    with pytest.raises(MlvizError, match="no attention layer"):
        attention_rollout(TinyCNN().eval(), torch.rand(2, 1, 16, 16))


# --------------------------------------------------------------------------- video
@pytest.fixture(scope="module")
def video_model(one_thread):
    x, y, _, _ = video_task(600, seed=0, presence=True)
    torch.manual_seed(0)
    model = TinyVideoCNN(n_classes=2)
    assert fit(model, x, y, epochs=8, lr=1e-2) > 0.9
    return model, video_task(40, seed=1, presence=True)


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_video_per_frame_maps_find_the_frame_and_the_place(video_model, method):
    model, (xt, yt, frame, quadrant) = video_model
    r = compute_cams(model, xt, method)
    assert r.maps.shape == (40, 1, 4, 16, 16) and r.layer["kind"] == "spatial3d" and r.is_video
    present = (yt == 1) & (r.predicted[:, 0] == 1)
    assert present.sum() >= 10
    per_frame = r.maps[:, 0].sum(axis=(2, 3))
    assert np.mean(per_frame.argmax(1)[present] == frame[present]) >= 0.8
    where = quadrant_mass(r.maps[:, 0].sum(axis=1))[np.arange(40), quadrant]
    assert np.mean(where[present] > 0.5) >= 0.8


def test_video_occlusion_and_unsupported_methods(video_model):
    model, (xt, _, _, _) = video_model
    r = compute_cams(model, xt[:2], "occlusion", patch=4, stride=4, frames=1)
    assert r.maps.shape == (2, 1, 4, 16, 16) and not r.is_cam
    with pytest.raises(MlvizError, match="2-D images only"):
        compute_cams(model, xt[:2], "scorecam")
    assert hook_count(model) == 0
