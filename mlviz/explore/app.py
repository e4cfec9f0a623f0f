"""The explorer: a Dash app over an `ExploreTable`.

A WebGL scatter (plotly `scattergl`, so 100,000 points stay fluid) with the `--hover` columns in its
tooltips and a colour-by dropdown; clicking a point shows its image, every metadata field and, when a
reviewer's CSVs were given, its parsed prediction, score and rationale.

Untrusted text (metadata, rationales, file names) reaches the page only as text: Dash components escape
what they render (nothing here uses `dangerously_allow_html`), and strings that plotly would read as its
small HTML subset (tooltips, legend entries) are HTML-escaped first, so plotly shows them literally.
Images come from `resolve_image_path` under the folder the user named (and only for names the metadata
lists), from a URL prefix the user gave, or from the run's image array as a data URI.
"""

from __future__ import annotations

import base64
import html as html_text
import io
import logging
import threading
from dataclasses import dataclass
from urllib.parse import quote

import numpy as np
import pandas as pd

from mlviz.errors import MlvizError
from mlviz.explore.data import ExploreTable, ImageArrays, resolve_image_path

IMAGE_ROUTE = "/images/"
MAX_CATEGORIES = 60  # more distinct values than this in a numeric column: a colour scale, not a legend
MISSING = "(missing)"
MUTED = "#9a9a9a"
MIN_DISPLAY_PX = 192  # small images (8×8 digits) are enlarged with nearest-neighbour so pixels stay pixels


@dataclass
class Images:
    """Where a point's image comes from: a folder (served by the app), a URL prefix, or an array."""

    folder: str | None = None
    url_prefix: str | None = None
    arrays: ImageArrays | None = None

    @property
    def any(self) -> bool:
        return bool(self.folder or self.url_prefix or self.arrays is not None)


# --------------------------------------------------------------------------- the scatter


def _text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _categorical(values: pd.Series) -> bool:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return not numeric or values.nunique(dropna=True) <= MAX_CATEGORIES


def _palette(k: int) -> list[str]:
    from plotly.colors import qualitative

    base = qualitative.D3 if k <= 10 else qualitative.Dark24 + qualitative.Light24
    return [base[i % len(base)] for i in range(k)]


def _sort_key(v: str):
    try:
        return (0, float(v), v)
    except ValueError:
        return (1, 0.0, v)


def scatter_figure(table: ExploreTable, color_by: str | None, hover: list[str]) -> dict:
    """The plotly figure (a plain dict): one `scattergl` trace per category of `color_by` (a legend to
    toggle them), or one trace on a colour scale for a numeric column with many values. Each point carries
    its row number as `customdata[0]` (what a click reports) and its escaped hover fields after it."""
    meta = table.metadata
    x, y = table.coords[:, 0], table.coords[:, 1]
    fields = np.array([[html_text.escape(_text(v)) for v in meta[h]] for h in hover], dtype=object).T \
        if hover else np.empty((table.n, 0), dtype=object)
    custom = np.concatenate([np.arange(table.n, dtype=object)[:, None], fields], axis=1)
    template = "<br>".join(f"{html_text.escape(h)}: %{{customdata[{k + 1}]}}" for k, h in enumerate(hover))
    template = (template or "row %{customdata[0]}") + "<extra></extra>"
    marker = {"size": 7 if table.n <= 2000 else 4, "opacity": 0.85, "line": {"width": 0}}
    traces = []
    wrong = _misclassified(meta)
    if color_by is None:
        traces.append(_trace(np.arange(table.n), x, y, custom, template, marker, "points", "#1f77b4", wrong))
    elif _categorical(meta[color_by]):
        labels = np.array([_text(v) or MISSING for v in meta[color_by]], dtype=object)
        cats = sorted(set(labels) - {MISSING}, key=_sort_key) + ([MISSING] if MISSING in labels else [])
        colours = dict(zip(cats, _palette(len(cats)), strict=True))
        colours[MISSING] = MUTED
        for cat in cats:
            rows = np.flatnonzero(labels == cat)
            name = f"{html_text.escape(cat)} (n={len(rows)})"
            traces.append(_trace(rows, x, y, custom, template, marker, name, colours[cat], wrong))
    else:
        values = pd.to_numeric(meta[color_by], errors="coerce").to_numpy(dtype=float)
        have = np.isfinite(values)
        if (~have).any():
            rows = np.flatnonzero(~have)
            traces.append(_trace(rows, x, y, custom, template, marker, f"{MISSING} (n={len(rows)})", MUTED, wrong))
        rows = np.flatnonzero(have)
        t = _trace(rows, x, y, custom, template, marker, f"{html_text.escape(color_by)} (n={len(rows)})", values, wrong)
        t["marker"].update(colorscale="Viridis", showscale=True,
                           colorbar={"title": {"text": html_text.escape(color_by)}, "thickness": 12})
        t["showlegend"] = False
        traces.append(t)
    title = f"{table.n} points" + (f", coloured by {html_text.escape(color_by)}" if color_by else "")
    if wrong is not None:
        title += f"; × marks the {int(wrong.sum())} misclassified"
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "font": {"size": 14}, "x": 0.01, "xanchor": "left"},
            "hovermode": "closest",
            "clickmode": "event",
            "dragmode": "pan",
            "margin": {"l": 40, "r": 10, "t": 40, "b": 30},
            "xaxis": {"zeroline": False, "showticklabels": False, "title": {"text": ""}},
            "yaxis": {"zeroline": False, "showticklabels": False, "scaleanchor": "x", "title": {"text": ""}},
            "legend": {"itemsizing": "constant", "title": {"text": html_text.escape(color_by or "")}},
            "plot_bgcolor": "#fafafa",
            "uirevision": "keep-zoom",
        },
    }


def _misclassified(meta: pd.DataFrame) -> np.ndarray | None:
    """Which points a `correct` column (bool, 0/1 or true/false text) says are wrong; None without one."""
    if "correct" not in meta.columns:
        return None
    words = meta["correct"].map(lambda v: _text(v).strip().lower())
    if not words.isin(["true", "false", "1", "0", "1.0", "0.0", ""]).all():
        return None
    return words.isin(["false", "0", "0.0"]).to_numpy()


def _trace(rows, x, y, custom, template, marker, name, colour, wrong=None) -> dict:
    """One scattergl trace of `rows`; `colour` is one colour or a value per point (all n points)."""
    m = dict(marker)
    if wrong is not None and wrong[rows].any():
        rows = rows[np.argsort(wrong[rows], kind="stable")]  # mistakes drawn on top; the legend shows a circle
        m["symbol"] = np.where(wrong[rows], "x", "circle").tolist()
    if isinstance(colour, np.ndarray):
        m["color"] = colour[rows].tolist()
    elif colour is not None:
        m["color"] = colour
    return {"type": "scattergl", "mode": "markers", "name": name, "x": x[rows].tolist(), "y": y[rows].tolist(),
            "customdata": custom[rows].tolist(), "hovertemplate": template, "marker": m}


# --------------------------------------------------------------------------- the detail panel


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 image as a PNG data URI, enlarged (nearest neighbour) to at least MIN_DISPLAY_PX."""
    from PIL import Image

    pic = Image.fromarray(image)
    scale = max(1, int(np.ceil(MIN_DISPLAY_PX / max(pic.size))))
    if scale > 1:
        pic = pic.resize((pic.size[0] * scale, pic.size[1] * scale), Image.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _image_source(table: ExploreTable, images: Images, row: int) -> tuple[str | None, str]:
    """(src for <img>, or None; a line saying why there is no image)."""
    if images.arrays is not None:
        arr = images.arrays.image_for(row)
        return (png_data_uri(arr), "") if arr is not None else (None, "this sample has no image in the run")
    col = table.image_column
    if not (images.folder or images.url_prefix):
        return None, "no images: pass --image-dir (or --image-root) to see them"
    if col is None:
        return None, "the metadata has no file_name column to find images by"
    name = _text(table.metadata.at[row, col])
    if images.url_prefix:
        return images.url_prefix.rstrip("/") + "/" + quote(name), ""
    if resolve_image_path(images.folder, name) is None:
        return None, f"no image file '{name}' in the image folder"
    return IMAGE_ROUTE + quote(name), ""


def detail_panel(table: ExploreTable, images: Images, row: int):
    """Dash components for one sample: image, reviewer's verdict and rationale, then every metadata field."""
    from dash import html

    meta = table.metadata
    src, why = _image_source(table, images, row)
    ident = next((_text(meta.at[row, c]) for c in ("sample_id", "file_name", "index") if c in meta.columns), "")
    parts = [html.H4(f"Sample {ident or row}", id="detail-title", style={"margin": "4px 0"})]
    if src:
        parts.append(html.Img(id="detail-image", src=src, alt=f"image of sample {ident or row}",
                              style={"width": "100%", "maxWidth": "360px", "imageRendering": "pixelated",
                                     "border": "1px solid #ddd", "boxSizing": "border-box"}))
    else:
        parts.append(html.P(why, id="detail-no-image", style={"color": "#777", "fontStyle": "italic"}))
    if table.has_rationale:
        rationale = meta.at[row, "llm_rationale"]
        if _text(rationale):
            parts.append(html.Div(id="detail-llm", children=[
                html.H5("Reviewer", style={"margin": "10px 0 4px"}),
                html.Div(["prediction: ", html.B(_text(meta.at[row, "llm_prediction"]) or "–",
                                                  id="detail-llm-prediction")]),
                html.Div(["score: ", html.B(_text(meta.at[row, "llm_score"]) or "–", id="detail-llm-score")]),
                html.P(_text(rationale), id="detail-llm-rationale",
                       style={"whiteSpace": "pre-wrap", "background": "#f6f6f6", "padding": "6px"}),
                html.Div(f"from {_text(meta.at[row, 'llm_file'])}", style={"color": "#777", "fontSize": "12px"}),
            ]))
        else:
            parts.append(html.P("no reviewer rationale for this sample", id="detail-llm",
                                style={"color": "#777", "fontStyle": "italic"}))
    rows = [html.Tr([html.Th(str(col), style={"textAlign": "left", "paddingRight": "8px"}),
                     html.Td(_text(meta.at[row, col]))])
            for col in meta.columns if col not in ("llm_prediction", "llm_score", "llm_rationale", "llm_file")]
    rows.append(html.Tr([html.Th("x, y", style={"textAlign": "left"}),
                         html.Td(f"{table.coords[row, 0]:.4g}, {table.coords[row, 1]:.4g}")]))
    parts.append(html.Table(html.Tbody(rows), id="detail-metadata",
                            style={"fontSize": "13px", "marginTop": "8px", "borderCollapse": "collapse"}))
    return parts


# --------------------------------------------------------------------------- the app


def build_app(table: ExploreTable, color_by: str | None = None, hover=None, images: Images | None = None,
              title: str = "mlviz explore"):
    """The Dash app (its Flask server is `app.server`). `color_by`/`hover` are checked against the metadata."""
    from dash import Dash, Input, Output, dcc, html

    images = images or Images()
    color_by, hover = table.choose_columns(color_by, hover)
    app = Dash(__name__, title=title, serve_locally=True, update_title=None)
    _add_image_route(app.server, table, images)

    options = [{"label": str(c), "value": str(c)} for c in table.metadata.columns
               if table.metadata[c].nunique(dropna=True) > 1 or c == color_by]
    intro = (f"{table.n} points from {table.source}. Hover for {', '.join(hover) or 'the row'}; "
             "click a point for its image and metadata.")
    app.layout = html.Div(style={"fontFamily": "sans-serif", "margin": "8px 16px"}, children=[
        html.H3(title, style={"margin": "4px 0"}),
        html.Div(intro, id="intro", style={"color": "#555", "fontSize": "13px"}),
        *[html.Div(note, className="note", style={"color": "#a0522d", "fontSize": "13px"}) for note in table.notes],
        html.Div(style={"display": "flex", "alignItems": "center", "gap": "8px", "margin": "8px 0"}, children=[
            html.Label("Colour by", htmlFor="color-by"),
            dcc.Dropdown(id="color-by", options=options, value=color_by, clearable=False,
                         style={"width": "320px"}),
        ]),
        html.Div(style={"display": "flex", "gap": "16px"}, children=[
            dcc.Graph(id="scatter", figure=scatter_figure(table, color_by, hover),
                      config={"scrollZoom": True, "displaylogo": False},
                      style={"flex": "3 1 0", "height": "78vh", "minWidth": "400px"}),
            html.Div(id="detail", style={"flex": "1 1 0", "minWidth": "260px", "maxWidth": "420px",
                                         "overflowY": "auto", "overflowX": "hidden", "maxHeight": "78vh"},
                     children=[html.P("Click a point.", style={"color": "#777"})]),
        ]),
    ])

    @app.callback(Output("scatter", "figure"), Input("color-by", "value"), prevent_initial_call=True)
    def recolour(column):
        return scatter_figure(table, column if column in table.metadata.columns else None, hover)

    @app.callback(Output("detail", "children"), Input("scatter", "clickData"), prevent_initial_call=True)
    def show(click):
        try:
            row = int(click["points"][0]["customdata"][0])
        except (TypeError, KeyError, IndexError, ValueError):
            return [html.P("Click a point.", style={"color": "#777"})]
        if not 0 <= row < table.n:
            return [html.P("Click a point.", style={"color": "#777"})]
        return detail_panel(table, images, row)

    return app


def _add_image_route(server, table: ExploreTable, images: Images) -> None:
    """`/images/<name>`: a file of the image folder, only for names the metadata lists, only through
    `resolve_image_path`; everything else is a 404 that says nothing about the file system. Every answer
    carries nosniff (an image is never run as a page) and may not be framed."""
    from flask import abort, request, send_file

    allowed = set()
    if images.folder and table.image_column:
        allowed = {_text(v) for v in table.metadata[table.image_column]}
    folder = images.folder

    def image(name: str):
        if not folder or name not in allowed:
            abort(404)
        path = resolve_image_path(folder, name)
        if path is None:
            abort(404)
        return send_file(path, max_age=300)

    server.add_url_rule(IMAGE_ROUTE + "<path:name>", "mlviz_image", image)

    @server.before_request
    def single_page():
        # Dash answers every unknown path with its page (for multi-page apps); this app has one page, so
        # `/../x`, `/images//etc/passwd` and the like get a plain 404 rather than a page that looks like success
        if request.endpoint == "/<path:path>" or request.endpoint is None:
            abort(404)

    from dash.exceptions import DependencyException

    # Dash raises (HTTP 500 and a traceback) for a component-suite path naming no registered library
    server.register_error_handler(DependencyException, lambda _exc: ("Not Found", 404))

    @server.after_request
    def harden(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


# --------------------------------------------------------------------------- serving


class Server:
    """The app on a real HTTP server (werkzeug, threaded) that can be started in a thread and stopped."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8050):
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        try:
            self._server = make_server(host, port, app.server, threaded=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MlvizError(f"cannot listen on {host}:{port} ({reason}); pick another --port") from None
        self.host, self.port = host, self._server.port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> Server:
        self._thread = threading.Thread(target=self._server.serve_forever, name="mlviz-explore", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

