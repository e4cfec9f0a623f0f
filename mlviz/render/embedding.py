"""Drawing an `EmbeddingResult`: a static map (`plot_embedding`) and a self-contained interactive page
(`embedding_html`) where hovering a point shows its metadata and image.

The page needs no network: points are inline SVG circles (drawn even where scripts cannot run), the
data and thumbnails are inline JSON and data-URI PNGs, the hover code is a few lines of inline JS. It is
made for the MLflow UI's artifact viewer (a sandboxed frame about 715 px wide that allows scripts): the
map scales to the frame's width. Metadata text reaches the page only as JSON with `<`, `>` and `&`
escaped, and is put on screen with `textContent`, so HTML or script in it is shown as text, never run.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np
import pandas as pd

from mlviz.analysis.embedding import EmbeddingResult, check_color_by, is_categorical
from mlviz.render.style import MUTED, figure, plt

METHOD_NAMES = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}
CATEGORY_COLOURS = [plt.get_cmap("tab20")(i) for i in range(0, 20, 2)] + [plt.get_cmap("tab20")(i)
                                                                          for i in range(1, 20, 2)]
HOVER_COLUMNS = 24  # at most this many metadata columns in the hover box
THUMB_PX = 64
MAX_THUMBNAILS = 20000


# --------------------------------------------------------------------------- words
def quality_text(result: EmbeddingResult, sep: str = "; ") -> str:
    """The neighbourhood numbers, each with its n, in words."""
    q = result.quality
    parts = []
    if q.trustworthiness is not None:
        sub = f"n={q.trust_n:,}" + (f" of {result.n_samples:,}" if q.trust_n < result.n_samples else "")
        parts.append(f"trustworthiness {q.trustworthiness:.3f} (k={q.trust_k}, {sub})")
    if q.knn_accuracy_2d is not None:
        parts.append(f"{q.knn_k}-NN accuracy of {q.label_column} {q.knn_accuracy_2d:.3f} in 2-D vs "
                     f"{q.knn_accuracy_original:.3f} in {result.n_features}-D ({q.knn_folds}-fold, n={q.knn_n:,}; "
                     f"chance {q.knn_chance:.3f})")
    return sep.join(parts) or "neighbourhood quality not measured"


def title_text(result: EmbeddingResult, color_by: str | None = None) -> str:
    colour = color_by or result.color_by
    return (f"{METHOD_NAMES[result.method]} of {result.n_samples:,} samples × {result.n_features:,} features"
            + (f", coloured by {colour}" if colour else ""))


def _class_name(result: EmbeddingResult, value) -> str:
    names = result.metadata.attrs.get("class_names")
    if names and isinstance(value, (int, np.integer)) and 0 <= int(value) < len(names) and str(names[int(value)]) != str(value):
        return f"{value} ({names[int(value)]})"
    return str(value)


def colouring(result: EmbeddingResult, color_by: str | None) -> dict:
    """How each point is coloured: {"kind": "categorical", "codes", "legend": [(name, colour, n)]},
    {"kind": "continuous", "values", "vmin", "vmax"}, or {"kind": "none"}."""
    if color_by is None:
        return {"kind": "none"}
    values = result.metadata[color_by]
    if is_categorical(values):
        cats = pd.Series(values.astype(object).where(values.notna(), "missing"))
        order = sorted(cats.unique(), key=lambda v: (isinstance(v, str), v) if not isinstance(v, bool) else (False, int(v)))
        codes = cats.map({v: i for i, v in enumerate(order)}).to_numpy()
        counts = cats.value_counts()
        legend = [(_class_name(result, v), CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)] if len(order) <= 20 else
                   plt.get_cmap("turbo")(i / max(1, len(order) - 1)), int(counts[v])) for i, v in enumerate(order)]
        return {"kind": "categorical", "codes": codes, "legend": legend}
    v = values.to_numpy(dtype=float)
    finite = v[np.isfinite(v)]
    return {"kind": "continuous", "values": v, "vmin": float(finite.min()) if len(finite) else 0.0,
            "vmax": float(finite.max()) if len(finite) else 1.0}


def _point_size(n: int) -> float:
    return float(np.clip(8000 / max(n, 1), 2, 40))


# --------------------------------------------------------------------------- static figure
def plot_embedding(result: EmbeddingResult, color_by: str | None = None, mark_errors: bool = True):
    """The 2-D map coloured by `color_by` (default: the result's), misclassified samples marked with a
    black ×, a legend with n per class (or a colour bar), the quality numbers under the title."""
    color_by = check_color_by(result.metadata, color_by) if color_by else result.color_by
    xy = result.coords
    n = len(xy)
    col = colouring(result, color_by)
    fig = figure(7.6, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    s = _point_size(n)
    order = np.random.default_rng(0).permutation(n)  # no class drawn wholly on top of another
    if col["kind"] == "categorical":
        colours = np.array([col["legend"][c][1] for c in col["codes"]])
        ax.scatter(xy[order, 0], xy[order, 1], c=colours[order], s=s, linewidths=0, alpha=0.85, rasterized=True)
        handles = [plt.Line2D([], [], marker="o", ls="", color=c, markersize=6, label=f"{name} (n={k:,})")
                   for name, c, k in col["legend"]]
    elif col["kind"] == "continuous":
        sc = ax.scatter(xy[order, 0], xy[order, 1], c=col["values"][order], cmap="viridis", s=s, linewidths=0,
                        vmin=col["vmin"], vmax=col["vmax"], alpha=0.9, rasterized=True)
        fig.colorbar(sc, ax=ax, shrink=0.8, label=color_by)
        handles = []
    else:
        ax.scatter(xy[:, 0], xy[:, 1], color="#1f77b4", s=s, linewidths=0, alpha=0.8, rasterized=True)
        handles = []
    meta = result.metadata
    if mark_errors and "correct" in meta:
        wrong = ~meta["correct"].to_numpy(dtype=bool)
        if wrong.any():
            ax.scatter(xy[wrong, 0], xy[wrong, 1], marker="x", color="black", s=max(12.0, s * 1.4),
                       linewidths=0.9, zorder=3)
            handles.append(plt.Line2D([], [], marker="x", ls="", color="black", markersize=6,
                                      label=f"misclassified (n={int(wrong.sum()):,} of {n:,})"))
    if handles:
        ncol = 1 if len(handles) <= 16 else 2
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                  title=color_by if col["kind"] == "categorical" else None, ncol=ncol, fontsize=7.5)
    name = METHOD_NAMES[result.method]
    ev = result.explained_variance
    ax.set_xlabel(f"{name} 1" + (f" ({ev[0]:.1%} of variance)" if ev else ""))
    ax.set_ylabel(f"{name} 2" + (f" ({ev[1]:.1%} of variance)" if ev else ""))
    if result.method != "pca":  # UMAP/t-SNE axes have no units: only distances between near points mean anything
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(title_text(result, color_by) + "\n" + quality_text(result, sep="\n"), fontsize=9, loc="left")
    if result.notes:  # a figure-level label: constrained layout keeps room for it under the axis label
        fig.supxlabel("\n".join(result.notes), fontsize=7, color=MUTED, x=0.01, ha="left")
    return fig


# --------------------------------------------------------------------------- thumbnails
def thumbnail_uris(images, size: int = THUMB_PX) -> list[str]:
    """Images (N, C, H, W), (N, H, W) or (N, H, W, C) → small PNG data URIs (nearest-neighbour enlarged
    when tiny, so 8×8 digits stay readable)."""
    from PIL import Image

    a = np.asarray(images, dtype=np.float32)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 1, -1)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (3, 4):
        raise ValueError(f"images of shape {a.shape} cannot be thumbnails")
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    scaled = np.clip((a - lo) / (hi - lo if hi > lo else 1.0) * 255, 0, 255).astype(np.uint8)
    out = []
    for img in scaled:
        im = Image.fromarray(img)
        h, w = img.shape[:2]
        factor = size / max(h, w)
        im = im.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                       Image.NEAREST if factor >= 1 else Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


# --------------------------------------------------------------------------- interactive page
def _json_for_script(obj) -> str:
    """JSON safe inside <script>: no '<', '>' or '&' that could close the tag or start markup."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _hex(c) -> str:
    r, g, b = (int(round(v * 255)) for v in c[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _cell(v):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(f"{float(v):.5g}")
    return str(v)


def _colourings(result: EmbeddingResult) -> dict:
    """Per colourable column: a colour per point and a legend (categories, or the scale's ends)."""
    import matplotlib.colors as mcolors

    out = {}
    for c in result.color_columns:
        col = colouring(result, c)
        if col["kind"] == "categorical":
            pal = [_hex(x[1]) for x in col["legend"]]
            out[c] = {"codes": col["codes"].tolist(), "palette": pal,
                      "legend": [[name, pal[i], k] for i, (name, _, k) in enumerate(col["legend"])]}
        else:
            cmap = plt.get_cmap("viridis")
            norm = mcolors.Normalize(col["vmin"], col["vmax"] if col["vmax"] > col["vmin"] else col["vmin"] + 1)
            pal = [_hex(cmap(i / 15)) for i in range(16)] + ["#bbbbbb"]
            v = col["values"]
            codes = np.where(np.isfinite(v), np.clip((norm(np.nan_to_num(v)) * 15.999).astype(int), 0, 15), 16)
            out[c] = {"codes": codes.tolist(), "palette": pal,
                      "legend": [[f"{col['vmin']:.4g}", pal[0], None], ["→", pal[8], None],
                                 [f"{col['vmax']:.4g}", pal[15], None]]}
    return out


_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:8px;color:#222;font-size:13px}
h1{font-size:15px;margin:0 0 2px 0}p.q{margin:0 0 6px 0;color:#444}
#bar{margin:4px 0}#map{width:100%;max-width:900px;height:auto;border:1px solid #ddd;display:block}
circle.pt{stroke:none}circle.pt.wrong{stroke:#000;stroke-width:0.35}circle.pt.hl{stroke:#d62728;stroke-width:0.8}
#legend{display:flex;flex-wrap:wrap;gap:2px 12px;margin:6px 0;max-width:900px}
#legend span.sw{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:5px;vertical-align:middle}
#tip{position:fixed;display:none;background:#fff;border:1px solid #888;padding:6px;max-width:320px;z-index:9;
box-shadow:0 2px 6px rgba(0,0,0,.25);pointer-events:none;font-size:12px}
#tip img{image-rendering:pixelated;display:block;margin-bottom:4px;border:1px solid #ccc}
#tip table{border-collapse:collapse}#tip td{padding:0 6px 0 0;vertical-align:top;word-break:break-all}
#tip td.k{color:#666;white-space:nowrap;word-break:normal}
"""

_JS = """
(function(){
var D=JSON.parse(document.getElementById('mlviz-data').textContent);
var svg=document.getElementById('map'),tip=document.getElementById('tip'),sel=document.getElementById('colour');
var pts=svg.querySelectorAll('circle.pt');
function paint(name){var c=D.colourings[name];if(!c)return;
 for(var i=0;i<pts.length;i++){pts[i].setAttribute('fill',c.palette[c.codes[+pts[i].dataset.i]]);}
 var lg=document.getElementById('legend');lg.textContent='';
 c.legend.forEach(function(e){var s=document.createElement('span');var w=document.createElement('span');
  w.className='sw';w.style.background=e[1];s.appendChild(w);
  s.appendChild(document.createTextNode(e[2]===null?e[0]:e[0]+' (n='+e[2]+')'));lg.appendChild(s);});}
if(sel){sel.addEventListener('change',function(){paint(sel.value);});}
var last=null;
function show(ev){var t=ev.target;if(!t.dataset||t.dataset.i===undefined){return;}
 var i=+t.dataset.i;if(last){last.classList.remove('hl');}t.classList.add('hl');last=t;
 tip.textContent='';
 if(D.thumbs&&D.thumbs[i]){var im=document.createElement('img');im.src=D.thumbs[i];im.alt='sample '+i;
  tip.appendChild(im);}
 var tb=document.createElement('table');
 D.columns.forEach(function(c,j){var v=D.rows[i][j];if(v===null)return;var tr=document.createElement('tr');
  var a=document.createElement('td');a.className='k';a.textContent=c;var b=document.createElement('td');
  b.textContent=String(v);tr.appendChild(a);tr.appendChild(b);tb.appendChild(tr);});
 tip.appendChild(tb);tip.style.display='block';
 var x=ev.clientX+14,y=ev.clientY+14,w=tip.offsetWidth,h=tip.offsetHeight;
 if(x+w>window.innerWidth){x=Math.max(0,ev.clientX-w-14);}if(y+h>window.innerHeight){y=Math.max(0,ev.clientY-h-14);}
 tip.style.left=x+'px';tip.style.top=y+'px';}
svg.addEventListener('mouseover',show);svg.addEventListener('mousemove',function(ev){if(ev.target.dataset&&ev.target.dataset.i!==undefined)show(ev);});
svg.addEventListener('mouseleave',function(){tip.style.display='none';if(last){last.classList.remove('hl');}});
window.mlvizEmbedding={n:pts.length,columns:D.columns};
})();
"""


def embedding_html(result: EmbeddingResult, thumbnails=None, color_by: str | None = None) -> str:
    """A self-contained page: the map as inline SVG, a colour-by choice, hover shows a sample's metadata
    and thumbnail. `thumbnails`: one data URI (or None) per point, or images to make them from."""
    e = html.escape
    color_by = check_color_by(result.metadata, color_by) if color_by else result.color_by
    xy = np.asarray(result.coords, dtype=float)
    n = len(xy)
    if thumbnails is not None and not (isinstance(thumbnails, list) and all(t is None or isinstance(t, str)
                                                                             for t in thumbnails)):
        thumbnails = thumbnail_uris(thumbnails)
    if thumbnails is not None and len(thumbnails) != n:
        raise ValueError(f"{len(thumbnails)} thumbnails for {n} points")
    if thumbnails is not None and n > MAX_THUMBNAILS:
        thumbnails = None
    size, pad = 1000.0, 12.0
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    scale = (size - 2 * pad) / max(float((hi - lo).max()), 1e-12)
    px = pad + (xy - lo) * scale
    width, height = size, pad * 2 + float(hi[1] - lo[1]) * scale
    px[:, 1] = height - px[:, 1]  # y grows upwards, as in the PNG
    r = float(np.clip(300 / np.sqrt(max(n, 1)), 1.5, 7))
    colourings = _colourings(result)
    default = colourings.get(color_by) if color_by else None
    wrong = (~result.metadata["correct"].to_numpy(dtype=bool)) if "correct" in result.metadata else np.zeros(n, bool)
    order = np.random.default_rng(0).permutation(n)
    circles = []
    for i in order:
        fill = default["palette"][default["codes"][i]] if default else "#1f77b4"
        cls = "pt wrong" if wrong[i] else "pt"
        circles.append(f'<circle class="{cls}" data-i="{i}" cx="{px[i, 0]:.1f}" cy="{px[i, 1]:.1f}" r="{r:.1f}" '
                       f'fill="{fill}"/>')
    meta = result.metadata
    columns = list(meta.columns[:HOVER_COLUMNS])
    rows = [[_cell(v) for v in row] for row in meta[columns].itertuples(index=False, name=None)]
    data = {"columns": columns, "rows": rows, "colourings": colourings, "thumbs": thumbnails}
    options = "".join(f'<option value="{e(c)}"{" selected" if c == color_by else ""}>{e(c)}</option>'
                      for c in colourings)
    legend = ""
    if default:
        legend = "".join(f'<span><span class="sw" style="background:{c}"></span>'
                         f'{e(name if k is None else f"{name} (n={k:,})")}</span>' for name, c, k in default["legend"])
    n_wrong = int(wrong.sum())
    return "\n".join([
        "<!doctype html><html><head><meta charset='utf-8'>",
        '<meta name="mlviz-report" content="embedding">',
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{e(title_text(result))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title_text(result))}</h1>",
        f"<p class='q'>{e(quality_text(result))}"
        + (f"; black ring: misclassified (n={n_wrong:,} of {n:,})" if n_wrong else "") + ". Hover a point.</p>",
        f"<div id='bar'><label>colour by <select id='colour'>{options}</select></label></div>" if colourings else "",
        f'<svg id="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="{e(title_text(result))}">',
        *circles,
        "</svg>",
        f"<div id='legend'>{legend}</div>",
        "<div id='tip'></div>",
        f'<script type="application/json" id="mlviz-data">{_json_for_script(data)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ])
