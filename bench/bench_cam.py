"""Benchmark: Grad-CAM throughput on a ResNet-18-sized model, and per-head maps of a 6-head model from
one forward pass (mlviz.attribution.compute_cams) against six separate pytorch_grad_cam calls.

    python bench/bench_cam.py [--batch 8] [--repeats 3] [--threads N] [--device cpu] [--no-write]

Prints a markdown table and replaces its section of bench/RESULTS.md (unless --no-write). Weights are random
(torchvision resnet18(weights=None)): speed does not depend on them. The compared cases run alternately,
`repeats` times each after a warm-up; the table gives the best and the median time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlviz.attribution.cam import compute_cams  # noqa: E402

HERE = Path(__file__).resolve().parent


class MultiHeadResNet(nn.Module):
    """ResNet-18 trunk, six heads of four classes each: output (B, 6, 4), like a six-zone model."""

    def __init__(self, heads: int = 6, classes: int = 4):
        super().__init__()
        from torchvision.models import resnet18

        self.backbone = resnet18(weights=None)
        self.backbone.fc = nn.Linear(512, heads * classes)
        self.heads, self.classes = heads, classes

    def forward(self, x):
        return self.backbone(x).view(-1, self.heads, self.classes)


class HeadTarget:
    def __init__(self, head: int, cls: int):
        self.head, self.cls = head, int(cls)

    def __call__(self, sample_output):
        return sample_output[self.head, self.cls]


def timed_pair(fn_a, fn_b, repeats: int) -> tuple[list[float], list[float], object, object]:
    """Run a and b alternately (after one warm-up each) so that a busy machine slows both alike."""
    out_a, out_b = fn_a(), fn_b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, store in ((fn_a, ta), (fn_b, tb)):
            t0 = time.perf_counter()
            out = fn()
            store.append(time.perf_counter() - t0)
            if fn is fn_a:
                out_a = out
            else:
                out_b = out
    return ta, tb, out_a, out_b


def main(argv=None) -> str:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchvision.models import resnet18

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 224, 224, device=device)
    rows = []

    # ---------------------------------------------------------------- single-output ResNet-18
    model = resnet18(weights=None).to(device).eval()
    layer = model.layer4[1].conv2  # what the automatic choice picks: the last Conv2d with a spatial output
    with torch.no_grad():
        pred = model(x).argmax(1).tolist()

    def library_single():
        with GradCAM(model, [layer]) as cam:
            return cam(x, [ClassifierOutputTarget(c) for c in pred])

    ta, tb, ref, res = timed_pair(library_single, lambda: compute_cams(model, x, "gradcam", batch_size=args.batch),
                                  args.repeats)
    assert res.layer["name"] == "layer4.1.conv2"
    diff1 = float(np.abs(res.maps[:, 0] - ref).max())
    rows.append(("ResNet-18, 1 output: GradCAM, pytorch_grad_cam call", ta, "", ""))
    rows.append(("ResNet-18, 1 output: GradCAM, mlviz compute_cams", tb, f"{min(ta) / min(tb):.1f}×",
                 f"{diff1:.1e}"))

    # ---------------------------------------------------------------- six heads
    multi = MultiHeadResNet().to(device).eval()
    mlayer = multi.backbone.layer4[1].conv2
    with torch.no_grad():
        mpred = multi(x).argmax(-1).cpu().numpy()

    def six_library_calls():
        maps = []
        for h in range(6):
            with GradCAM(multi, [mlayer]) as cam:
                maps.append(cam(x, [HeadTarget(h, c) for c in mpred[:, h]]))
        return np.stack(maps, axis=1)

    t6, t1, ref6, res6 = timed_pair(six_library_calls, lambda: compute_cams(multi, x, "gradcam", batch_size=args.batch),
                                    args.repeats)
    diff6 = float(np.abs(res6.maps - ref6).max())
    speedup = min(t6) / min(t1)
    rows.append(("ResNet-18, 6 heads: 6 separate pytorch_grad_cam calls", t6, "", ""))
    rows.append(("ResNet-18, 6 heads: one pass, mlviz compute_cams", t1, f"{speedup:.1f}×", f"{diff6:.1e}"))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Grad-CAM speed (bench/bench_cam.py)",
        "",
        f"{args.batch} images of 224×224, {device.type}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"intra-op thread(s), {os.cpu_count()} CPU(s), load average {load:.1f} when done, "
        f"{platform.processor() or platform.machine()}; {args.repeats} runs of each case after a warm-up, the "
        "compared cases alternating; best (median) seconds. Speed-ups from the best runs, the ones a busy "
        "machine disturbed least.",
        "",
        "| case | seconds per batch | images / s | speed-up | max abs diff vs library |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, ts, sp, d in rows:
        best, med = min(ts), statistics.median(ts)
        lines.append(f"| {name} | {best:.3f} ({med:.3f}) | {args.batch / best:.1f} ({args.batch / med:.1f}) | {sp} | {d} |")
    lines += [
        "",
        f"Six per-head maps from one forward pass: {speedup:.1f}× faster than six separate pytorch_grad_cam "
        f"calls (target ≥ 4×), identical maps (max abs difference {diff6:.1e}). The one-pass path runs one "
        "forward and, per head, a backward from the output down to the target layer only "
        "(torch.autograd.grad); each library call runs a forward and a full backward to the input, filling "
        "every parameter's .grad.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.no_write:
        from _common import update_results

        update_results("bench_cam", "Grad-CAM speed (`bench/bench_cam.py`)", table.split("\n", 2)[2])
    return table


if __name__ == "__main__":
    main()
