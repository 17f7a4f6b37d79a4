"""The example notebooks in docs/examples run from top to bottom (so they cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def execute(name: str, tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


@pytest.mark.slow
def test_delayed_trap_sweep_notebook_matches_closed_form(tmp_path):
    text = execute("delayed_trap_sweep.ipynb", tmp_path)
    m = re.search(r"measured / closed form: \[([^\]]*)\]", text)
    assert m, text
    ratios = [float(v) for v in m.group(1).split()]
    assert len(ratios) == 3 and all(0.6 < r < 1.5 for r in ratios), ratios
    variances = [float(v) for v in re.findall(r"variance ([0-9.]+) um\^2", text)]
    assert variances[0] < variances[1] < variances[2]  # the delay makes the trap softer


@pytest.mark.slow
def test_retrack_notebook_runs(tmp_path):
    text = execute("retrack_session.ipynb", tmp_path)
    m = re.search(r"(\d+) features in (\d+) frames, (\d+) particles", text)
    assert m, text
    assert int(m.group(2)) == 50 and int(m.group(3)) >= 4
