"""Sections: inputs (a sweep, a run, several runs) → figures-as-data (mlviz.report.Report) → mlviz.publish."""
