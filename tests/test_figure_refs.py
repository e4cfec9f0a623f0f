"""The figure tables name their analyses as "module:function" strings (imported only when a figure is
computed): every one of them must resolve, as the renderers do."""

import re
from pathlib import Path

import pytest

from mlviz.figures import resolve

FIGURES = Path(__file__).resolve().parents[1] / "mlviz" / "figures"
SHORTHANDS = {r'_stage1\((?:c|ctx), "(\w+)"': "stage1", r'_named\((?:c|ctx), "(\w+)"': "stage2",
              r'_progress\((?:c|ctx), "(\w+)"': "progress"}


def _refs() -> list[str]:
    refs = set()
    for name in ("model.py", "sweep.py"):
        src = (FIGURES / name).read_text()
        refs |= set(re.findall(r'analysis\("(\w+:\w+)"', src))
        for pattern, module in SHORTHANDS.items():
            refs |= {f"{module}:{f}" for f in re.findall(pattern, src)}
    return sorted(refs)


def test_the_tables_name_their_analyses():
    assert len(_refs()) >= 30  # the pattern still finds them


@pytest.mark.parametrize("ref", _refs())
def test_analysis_ref_resolves(ref):
    assert callable(resolve(f"mlviz.analysis.{ref}"))
