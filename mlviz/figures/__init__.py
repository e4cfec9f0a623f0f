"""The figure registry: each figure's section, file name, caption, the analysis and renderer behind it,
and what it needs.

A section walks its table in order (`compute_figures`): a figure whose analysis raises `NotApplicable`
is recorded as skipped with its reason. Adding a figure is an analysis function, a renderer and one
`FigureSpec` line in the section's table (`mlviz.figures.sweep.REGISTRY`,
`mlviz.figures.model.BEST_MODEL_FIGURES` / `PROGRESS_FIGURES`), or `register(spec)` from outside.
Renderers may be given as "module:function" so that importing a table costs nothing; a test resolves
every one of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlviz.report import Figure, Report


def resolve(ref: Callable | str) -> Callable:
    """A callable, or "module:function" imported now."""
    if callable(ref):
        return ref
    module, func = ref.split(":")
    return getattr(importlib.import_module(module), func)


def analysis(ref: str, *args, **kwargs):
    """`mlviz.analysis.<ref>` ("module:function") called with the arguments, imported only now (so that
    importing a figure table costs nothing)."""
    return resolve(f"mlviz.analysis.{ref}")(*args, **kwargs)


@dataclass(frozen=True)
class FigureSpec:
    section: str
    key: str  # registry key; also the file stem unless `many` (then compute returns {file stem: result})
    caption: str
    needs: str
    compute: Callable[[Any], Any]  # the section's context → the analysis result
    renderer: Callable | str  # the result → a matplotlib Figure
    many: bool = False
    grid_key: str | None = None  # also logged to the MLflow UI's image grid under this key

    def render(self, result):
        return resolve(self.renderer)(result)


def compute_all(specs, ctx, on_step: Callable[[str], None] | None = None) -> tuple[dict, dict, dict, list[dict]]:
    """Run each spec's analysis in order on `ctx` (any context with a `results` dict, which later specs
    read). Returns (results, captions, specs, skipped), keyed by (section, file stem); a spec whose
    analysis raises NotApplicable is skipped with its reason."""
    from mlviz.analysis import NotApplicable

    results, captions, renderers, skipped = {}, {}, {}, []
    for spec in specs:
        if on_step:
            on_step(f"{spec.section}/{spec.key}")
        try:
            result = spec.compute(ctx)
        except NotApplicable as exc:
            skipped.append({"section": spec.section, "figure": spec.key, "reason": str(exc)})
            continue
        ctx.results[spec.key] = result
        for stem, item in (dict(result) if spec.many else {spec.key: result}).items():
            results[(spec.section, stem)] = item
            captions[(spec.section, stem)] = spec.caption
            renderers[(spec.section, stem)] = spec
    return results, captions, renderers, skipped


def as_report(kind: str, results: dict, captions: dict, specs: dict, skipped: list[dict]) -> Report:
    """compute_all's output as figures-as-data for `mlviz.publish`."""
    figures = []
    for (section, stem), result in results.items():
        spec = specs[(section, stem)]
        figures.append(Figure(section, stem, captions[(section, stem)], result, resolve(spec.renderer),
                              grid_key=spec.grid_key.replace("{stem}", stem) if spec.grid_key else None))
    return Report(kind, figures, list(skipped))


def compute_figures(kind: str, specs, ctx, on_step: Callable[[str], None] | None = None) -> Report:
    return as_report(kind, *compute_all(specs, ctx, on_step))


EXTRA: dict[str, list[FigureSpec]] = {}  # section → specs added with register()


def register(spec: FigureSpec) -> FigureSpec:
    """Add a figure to its section's walk (after the built-in ones), e.g. from a plugin or a test."""
    EXTRA.setdefault(spec.section, []).append(spec)
    return spec


def unregister(spec: FigureSpec) -> None:
    EXTRA.get(spec.section, []).remove(spec) if spec in EXTRA.get(spec.section, []) else None


def extra_specs(sections) -> list[FigureSpec]:
    return [s for sec in sections for s in EXTRA.get(sec, [])]
