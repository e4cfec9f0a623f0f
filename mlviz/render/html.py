"""`index.html`: one self-contained page with every figure of the run, grouped by section.

Images are embedded as data URIs because the MLflow UI shows an HTML artifact in a sandboxed frame
where relative links to sibling artifacts do not resolve.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

SECTION_TITLES = {
    "stage1": "Stage 1: screening sweep",
    "stage2": "Stage 2: full training of the candidates",
    "best_model": "Best model",
    "training_progress": "Training progress",
    "heatmaps": "Attribution heatmaps",
    "embedding": "Embedding",
    "compare": "Comparison",
}


def write_index(root: Path, figures: list[dict], summary: dict) -> Path:
    """`figures`: dicts with section, file (relative to root), caption; in display order."""
    e = html.escape
    sel = summary.get("selection", {})
    sweep = summary.get("sweep", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mlviz report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1400px}"
        "figure{margin:0 0 28px 0}img{max-width:100%;border:1px solid #ddd}"
        "figcaption{color:#444;font-size:14px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}nav a{margin-right:12px}</style>",
        "</head><body>",
        "<h1>mlviz report</h1>",
    ]
    if "run" in summary:
        run = summary["run"]
        heads = ", ".join(f"{k} {v:.4g}" for k, v in summary.get("headline_metrics", {}).items()
                          if isinstance(v, (int, float)))
        parts.append(f"<p>Run <b>{e(str(run.get('run_name') or ''))}</b> ({e(str(run.get('run_id')))}), "
                     f"predictions <code>{e(str(run.get('predictions')))}</code>. {e(heads)}</p>")
    else:
        parts.append(
            f"<p>Experiment <b>{e(str(sel.get('experiment_name', '')))}</b> "
            f"({e(str(sel.get('experiment_id', '')))}), store <code>{e(str(sel.get('tracking_uri', '')))}</code>; "
            f"objective <b>{e(str(sweep.get('objective', '')))}</b> ({e(str(sweep.get('mode', '')))}), "
            f"{sweep.get('n_runs', 0)} runs analysed, {sweep.get('excluded', {}).get('count', 0)} left out.</p>")
    sections = list(dict.fromkeys(f["section"] for f in figures))
    parts.append("<nav>" + "".join(f"<a href='#{e(s)}'>{e(SECTION_TITLES.get(s, s))}</a>" for s in sections) + "</nav>")
    for section in sections:
        parts.append(f"<h2 id='{e(section)}'>{e(SECTION_TITLES.get(section, section))}</h2>")
        for f in (f for f in figures if f["section"] == section):
            data = base64.b64encode((root / f["file"]).read_bytes()).decode("ascii")
            parts.append(
                f"<figure><img alt='{e(f['file'])}' src='data:image/png;base64,{data}'>"
                f"<figcaption><b>{e(f['file'])}</b>: {e(f['caption'])}</figcaption></figure>"
            )
    skipped = summary.get("figures_skipped", [])
    if skipped:
        parts.append("<h2>Skipped</h2><table><tr><th>figure</th><th>why</th></tr>")
        parts += [f"<tr><td>{e(s['section'])}/{e(s['figure'])}</td><td>{e(s['reason'])}</td></tr>" for s in skipped]
        parts.append("</table>")
    by_reason = sweep.get("excluded", {}).get("by_reason", {})
    if by_reason:
        parts.append("<h2>Runs left out</h2><table><tr><th>reason</th><th>runs</th></tr>")
        parts += [f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in by_reason.items()]
        parts.append("</table>")
    parts.append("</body></html>")
    path = root / "mlviz" / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
