"""Figures as data: what every section hands to `mlviz.publish`.

A section (the sweep, one model's predictions, its heatmaps, an embedding, a comparison) is a function
from its inputs to a `Report`: a list of `Figure`s (where each goes, what it says, the analysis result,
and how to draw it), what it skipped and why, and what to log beside the files (headline metrics, tags,
tables for the MLflow UI, links to related reports). Nothing here draws or talks to MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    """One figure: `mlviz/<section>/<name>.png`, the numbers `data` beside it as `<name>.json` (long tables
    as CSV), drawn by `draw(data)` → a matplotlib Figure (None: no PNG, only the numbers and `files`).

    `files`: extra files written beside it in the section folder ({file name: bytes or str}), e.g. an
    interactive `embedding.html` or `embedding_coords.npy`. `grid_key`: also logged as an image of the
    MLflow UI's image grid under this key (the same key in every run, so runs line up there)."""

    section: str
    name: str
    caption: str
    data: Any
    draw: Callable[[Any], Any] | None = None
    grid_key: str | None = None
    files: dict[str, bytes | str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"mlviz/{self.section}/{self.name}.png"


@dataclass
class Related:
    """A neighbouring report, linked from index.html (e.g. the analysis run ↔ the best model's run)."""

    title: str
    run_id: str
    experiment_id: str | None = None
    page: str = "mlviz/index.html"


@dataclass
class Report:
    """What one or more sections produced for one destination (a folder, a run, an analysis run).

    `kind` names the report: "visualize", "best_model", "heatmaps", "embedding", "compare". It decides the
    names of the top-level files: the report that owns a run writes `mlviz/index.html` and
    `mlviz/summary.json` (best_model: `best_model_summary.json`); one added to a run another report owns
    writes `mlviz/<kind>_index.html` and `mlviz/<kind>_summary.json`."""

    kind: str
    figures: list[Figure] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {"section", "figure", "reason"}
    summary: dict = field(default_factory=dict)  # what was analysed; written to the summary JSON
    metrics: dict[str, float] = field(default_factory=dict)  # headline numbers, logged as run metrics
    tags: dict[str, str] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)  # name → DataFrame, logged with mlflow.log_table
    related: list[Related] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the closing line

    def skip(self, section: str, figure: str, reason: str) -> None:
        self.skipped.append({"section": section, "figure": figure, "reason": reason})

    def extend(self, other: Report) -> Report:
        """Add another section's figures, skips, metrics, tables and notes (e.g. heatmaps into best_model)."""
        self.figures += other.figures
        self.skipped += other.skipped
        self.metrics.update(other.metrics)
        self.tags.update(other.tags)
        self.tables.update(other.tables)
        self.related += other.related
        self.notes += other.notes
        return self

    @property
    def results(self) -> dict[tuple[str, str], Any]:
        """{(section, name): the analysis result} of every figure."""
        return {(f.section, f.name): f.data for f in self.figures}

    def figure(self, section: str, name: str) -> Figure | None:
        return next((f for f in self.figures if f.section == section and f.name == name), None)

    @property
    def sections(self) -> list[str]:
        return list(dict.fromkeys(f.section for f in self.figures))
