"""`mlviz --help` stays fast because the CLI module imports click alone: the heavy libraries (MLflow,
torch, matplotlib, pandas, scikit-learn, umap) load inside the commands. Checked by what a fresh
interpreter has imported, not by timing (timings live in bench/)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "torch", "torchvision", "matplotlib", "pandas", "numpy", "sklearn", "scipy", "umap", "optuna",
         "pytorch_grad_cam")


def test_help_imports_no_heavy_library():
    code = ("import sys; from click.testing import CliRunner; from mlviz.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); print(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    loaded, _, help_text = out.partition("\n")
    assert loaded == "[]", f"imported at start-up: {loaded}"
    for command in ("visualize", "best-model", "heatmaps", "demo", "select", "import", "synthetic-sweep", "compare",
                    "embed", "explore"):
        assert command in help_text, command


def test_every_command_has_help():
    from click.testing import CliRunner

    from mlviz.cli import main

    for command in ("visualize", "best-model", "heatmaps", "demo", "select", "synthetic-sweep", "import", "compare",
                    "embed", "explore"):
        r = CliRunner().invoke(main, [command, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (command, r.output)
