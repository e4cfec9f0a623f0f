"""`index.html`: one self-contained page with every figure of a report, made to be read inside the MLflow
UI's artifact viewer.

What that viewer allows, as measured in MLflow 3.17 with Chromium (tests/test_mlflow_ui.py): the page is
loaded from a `blob:` URL into `<iframe sandbox="allow-scripts">`, on a 1280 px window about 515 px
wide beside the assistant panel and about 755 px without it. So:

- images are embedded as data URIs (relative links to sibling artifacts do not resolve from a blob);
- every figure is scaled to the width; clicking it toggles its full size in place (a CSS checkbox, no
  script needed), because the sandbox blocks new windows (`target=_blank`, `window.open`), navigation
  of the top window (`target=_top`) and downloads (`get-artifact` answers as an attachment);
- sections are `<details>`, closed, so the page opens as a contents list; tables and long names wrap,
  so nothing scrolls sideways;
- links to related reports point at the MLflow UI's run page (`#/experiments/<exp>/runs/<run>/artifacts/
  <page>?workflowType=machine_learning`). Inside the viewer a small script finds the UI's address from
  the page's own URL and shows each address to copy (the sandbox will not follow the link); opened any
  other way (a browser tab, an `--out` folder) the links work as they are.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from urllib.parse import quote, urlparse

SECTION_TITLES = {"stage1": "Stage 1: screening sweep", "stage2": "Stage 2: full training of the candidates",
                  "best_model": "Best model", "training_progress": "Training progress",
                  "heatmaps": "Attribution heatmaps", "embedding": "Embedding", "compare": "Comparison"}
KIND_TITLES = {"visualize": "sweep analysis", "best_model": "model diagnostics",
               "heatmaps": "attribution heatmaps", "embedding": "embedding", "compare": "comparison"}
ML_WORKFLOW = "workflowType=machine_learning"  # the same route format as mlviz.store.ui (render may not import it)
DEFAULT_UI = "http://127.0.0.1:5000/"  # `mlflow ui` / `mlflow server` without --host/--port

STYLE = """
*{box-sizing:border-box}
html{background:#fff;color:#222}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:10px 12px 40px;
 max-width:1100px;overflow-wrap:anywhere}
h1{font-size:19px;margin:4px 0 6px}
h1 small{font-weight:normal;color:#666;font-size:14px}
h2{font-size:15px;margin:18px 0 6px}
p{margin:4px 0 8px}
code{font-size:12px;background:#f4f4f4;padding:0 3px;border-radius:3px;overflow-wrap:anywhere}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(135px,1fr));gap:4px;margin:6px 0 10px;
 padding:0;list-style:none}
.metrics li{border:1px solid #e3e3e3;border-radius:4px;padding:2px 6px}
.metrics b{display:block;font-size:15px}
.metrics span{color:#555;font-size:12px}
.related ul{margin:4px 0;padding-left:18px}
.related li{margin:2px 0}
.addr{display:none;width:100%;font:12px ui-monospace,monospace;margin:2px 0 4px;padding:2px 4px;
 border:1px solid #ccc;border-radius:3px;color:#333;background:#fafafa}
.hint{color:#555;font-size:12px}
.viewer-only{display:none}
.in-viewer .viewer-only{display:block}
.in-viewer .addr{display:block}
.in-viewer .local-only{display:none}
.tools{display:none;gap:6px;margin:6px 0}
.js .tools{display:flex}
.tools button{font:12px system-ui,sans-serif;padding:2px 8px;border:1px solid #bbb;border-radius:4px;
 background:#f7f7f7;cursor:pointer}
details{border:1px solid #ddd;border-radius:5px;margin:6px 0;background:#fff}
summary{cursor:pointer;padding:6px 10px;font-weight:600;font-size:15px;list-style-position:inside}
summary .n{font-weight:normal;color:#666;font-size:13px}
details[open]>summary{border-bottom:1px solid #eee}
.body{padding:6px 10px 2px}
figure{margin:0 0 18px}
.zoom{display:block;position:relative;overflow-x:auto;cursor:zoom-in}
.zoom input{position:absolute;opacity:0;width:1px;height:1px;margin:0}
.zoom img{display:block;max-width:100%;height:auto;border:1px solid #e3e3e3}
.zoom input:checked+img{max-width:none;width:auto;cursor:zoom-out}
.zoom input:focus-visible+img{outline:2px solid #2272b4}
figcaption{color:#444;font-size:13px;margin-top:3px}
table{border-collapse:collapse;font-size:13px;width:100%;table-layout:fixed}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f6f6f6}
col.narrow{width:38%}
"""

# Inside MLflow's viewer the page's URL is blob:<server origin>/<uuid> and its referrer the UI's address
# (with any static prefix): build each related link from that, and show it to copy.
SCRIPT = """
(function () {
  var root = document.documentElement;
  root.classList.add('js');
  var inViewer = location.protocol === 'blob:';
  if (inViewer) {
    root.classList.add('in-viewer');
    var base = '';
    if (/^https?:/.test(document.referrer)) base = document.referrer.split('#')[0].split('?')[0];
    else { try { base = new URL(location.href.slice(5)).origin + '/'; } catch (e) { base = ''; } }
    if (base && base.charAt(base.length - 1) !== '/') base += '/';
    document.querySelectorAll('a[data-route]').forEach(function (a) {
      if (base) a.href = base + '#' + a.getAttribute('data-route');
      var box = a.parentNode.querySelector('.addr');
      if (box) box.value = a.href;
    });
  }
  document.querySelectorAll('.addr').forEach(function (box) {
    box.addEventListener('focus', function () { box.select(); });
  });
  function all(open) {
    document.querySelectorAll('details').forEach(function (d) { d.open = open; });
  }
  var openAll = document.getElementById('open-all'), closeAll = document.getElementById('close-all');
  if (openAll) openAll.addEventListener('click', function () { all(true); });
  if (closeAll) closeAll.addEventListener('click', function () { all(false); });
  var wanted = location.hash && document.getElementById(location.hash.slice(1));
  if (wanted && wanted.tagName === 'DETAILS') wanted.open = true;
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _breakable(name: str) -> str:
    """Escaped, with break opportunities after dots and underscores (long metric names in narrow cells)."""
    return _e(name).replace(".", ".<wbr>").replace("_", "_<wbr>")


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:d}" if isinstance(value, int) else f"{value:.4g}"


def related_route(run_id: str, experiment_id: str | None, page: str | None) -> str:
    """The MLflow UI route (after '#') of a related report: its page in the run's artifact viewer."""
    run = quote(str(run_id), safe="")
    if not experiment_id:
        return f"/runs/{run}?{ML_WORKFLOW}"
    route = f"/experiments/{quote(str(experiment_id), safe='')}/runs/{run}"
    if page:
        route += "/artifacts/" + quote(str(page).strip("/"), safe="/")
    return f"{route}?{ML_WORKFLOW}"


def _server_base(summary: dict) -> str:
    """The UI's address: the tracking server the report was made against, else where `mlflow ui` serves
    by default (inside MLflow's viewer the page's script replaces it with the address actually used)."""
    uri = str((summary.get("selection") or {}).get("tracking_uri") or summary.get("tracking_uri") or "")
    return uri.rstrip("/") + "/" if urlparse(uri).scheme in ("http", "https") else DEFAULT_UI


def _intro(summary: dict) -> list[str]:
    """What the report is about, in a sentence or two."""
    out = []
    sel, sweep = summary.get("selection") or {}, summary.get("sweep") or {}
    if "run" in summary:
        run = summary["run"] or {}
        line = f"Run <b>{_e(run.get('run_name') or '')}</b> <code>{_e(run.get('run_id'))}</code>"
        if run.get("predictions"):
            line += f", predictions <code>{_e(run['predictions'])}</code>"
        out.append(f"<p>{line}.</p>")
    if sel or sweep:
        excluded = sweep.get("excluded", {}) or {}
        out.append(
            f"<p>Experiment <b>{_e(sel.get('experiment_name', ''))}</b> "
            f"(<code>{_e(sel.get('experiment_id', ''))}</code>), store <code>{_e(sel.get('tracking_uri', ''))}</code>; "
            f"objective <b>{_e(sweep.get('objective', ''))}</b> ({_e(sweep.get('mode', ''))}), "
            f"{_e(sweep.get('n_runs', 0))} runs analysed, {_e(excluded.get('count', 0))} left out.</p>")
    compare = summary.get("compare") or {}
    if compare:
        items = compare.get("runs") or compare.get("sweeps") or []
        what = "runs" if compare.get("runs") else "sweeps"
        out.append(f"<p>Comparison of {len(items)} {what}.</p>")
    return out


def _metrics(summary: dict) -> str:
    heads = [(k, v) for k, v in (summary.get("headline_metrics") or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not heads:
        return ""
    cells = "".join(f"<li><b>{_e(_number(v))}</b><span>{_breakable(k)}</span></li>" for k, v in heads)
    return f"<ul class='metrics' aria-label='headline metrics'>{cells}</ul>"


def _related(summary: dict) -> str:
    items = summary.get("related") or []
    if not items:
        return ""
    base = _server_base(summary)
    rows = []
    for item in items:
        route = related_route(item.get("run_id", ""), item.get("experiment_id"), item.get("page", "mlviz/index.html"))
        rows.append(
            f"<li><a href='{_e(base + '#' + route)}' target='_top' data-route='{_e(route)}'>{_e(item.get('title') or 'report')}</a>"
            f" <span class='hint'>run <code>{_e(item.get('run_id', ''))}</code></span>"
            f"<input class='addr' readonly aria-label='address of {_e(item.get('title') or 'report')}'></li>")
    return ("<section class='related'><h2>Related reports</h2><ul>" + "".join(rows) + "</ul>"
            "<p class='hint viewer-only'>MLflow's artifact viewer does not follow links out of its frame: "
            "copy an address into a new tab (or right-click the link, then open it in a new tab).</p></section>")


def _figure(root: Path, index_dir: Path, f: dict, i: int) -> str:
    png = root / f["file"]
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    rel = Path(os.path.relpath(png, index_dir)).as_posix()
    name = Path(f["file"]).stem
    return (
        f"<figure id='fig-{i}'><label class='zoom' title='click: full size / fit to width'>"
        f"<input type='checkbox' aria-label='show {_e(name)} at full size'>"
        f"<img alt='{_e(f['file'])}' src='data:image/png;base64,{data}'></label>"
        f"<figcaption><b>{_e(name)}</b>: {_e(f.get('caption', ''))} <code>{_e(f['file'])}</code>"
        f" <a class='local-only' href='{_e(quote(rel))}' target='_blank'>PNG</a></figcaption></figure>")


def write_index(root: Path, figures: list[dict], summary: dict) -> Path:
    """`figures`: dicts with section, file (relative to root), caption; in display order. `summary`: the
    report's summary (kind, run / selection / compare, headline_metrics, related, figures_skipped).
    Writes root/mlviz/index.html and returns its path."""
    root = Path(root)
    path = root / "mlviz" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = str(summary.get("kind") or "report")
    sweep = summary.get("sweep") or {}
    sections = list(dict.fromkeys(f["section"] for f in figures))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta name=\"mlviz-report\" content=\"{_e(kind)}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>mlviz {_e(KIND_TITLES.get(kind, kind))}</title><style>{STYLE}</style></head><body>",
        f"<h1>mlviz report <small>{_e(KIND_TITLES.get(kind, kind))}</small></h1>",
        *_intro(summary),
        _metrics(summary),
        _related(summary),
    ]
    if figures:
        parts.append(
            f"<p class='hint'>{len(figures)} figure{'s' if len(figures) != 1 else ''} in {len(sections)} "
            f"section{'s' if len(sections) != 1 else ''}: open a section to see its figures; click a figure to "
            "see it at full size, again to fit it to the width.</p>"
            "<div class='tools'><button type='button' id='open-all'>open all</button>"
            "<button type='button' id='close-all'>close all</button></div>")
    else:
        parts.append("<p>No figures were made.</p>")
    i = 0
    for section in sections:
        mine = [f for f in figures if f["section"] == section]
        opened = " open" if len(sections) == 1 else ""
        parts.append(
            f"<details class='section' id='{_e(section)}'{opened}><summary>{_e(SECTION_TITLES.get(section, section))}"
            f" <span class='n'>· {len(mine)} figure{'s' if len(mine) != 1 else ''}</span></summary><div class='body'>")
        for f in mine:
            parts.append(_figure(root, path.parent, f, i))
            i += 1
        parts.append("</div></details>")
    skipped = summary.get("figures_skipped") or []
    if skipped:
        parts.append(f"<details id='skipped'><summary>Skipped <span class='n'>· {len(skipped)} "
                     f"figure{'s' if len(skipped) != 1 else ''}, with why</span></summary><div class='body'>"
                     "<table><colgroup><col class='narrow'><col></colgroup><tr><th>figure</th><th>why</th></tr>")
        parts += [f"<tr><td>{_e(s.get('section', ''))}/{_e(s.get('figure', ''))}</td><td>{_e(s.get('reason', ''))}</td></tr>"
                  for s in skipped]
        parts.append("</table></div></details>")
    by_reason = (sweep.get("excluded") or {}).get("by_reason") or {}
    if by_reason:
        parts.append(f"<details id='left-out'><summary>Runs left out <span class='n'>· "
                     f"{_e(sum(v for v in by_reason.values() if isinstance(v, int)))} runs</span></summary>"
                     "<div class='body'><table><colgroup><col><col class='narrow'></colgroup>"
                     "<tr><th>reason</th><th>runs</th></tr>")
        parts += [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in by_reason.items()]
        parts.append("</table></div></details>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path.write_text("\n".join(p for p in parts if p), encoding="utf-8")
    return path
