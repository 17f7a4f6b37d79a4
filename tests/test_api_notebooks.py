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
    # a cell's stream outputs are its stdout cut into messages anywhere: joined as they were printed
    return "\n".join("".join(o.get("text", "") for o in c.get("outputs", []))
                     for c in nb.cells if c.cell_type == "code")


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


@pytest.mark.slow
def test_interrupting_a_run_in_a_live_kernel_leaves_the_laser_off(tmp_path):
    """The kernel's interrupt button (SIGINT to a live ipykernel) during cybloid.run: the laser is off after."""
    import time

    pytest.importorskip("ipykernel")
    jc = pytest.importorskip("jupyter_client.manager")
    flag = tmp_path / "running"
    km, kc = jc.start_new_kernel(kernel_name="python3")
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append(f"ERROR {msg['content']['ename']}: {msg['content']['evalue']}")

    try:
        kc.execute_interactive(f"""
import pathlib
import cybloid
from cybloid.protocol import runner as _runner
opened = []
_prepare = _runner.prepare
def _spy(*a, **k):
    lab_etc = _prepare(*a, **k)
    opened.append(lab_etc[0])
    return lab_etc
_runner.prepare = _spy
flag = pathlib.Path({str(flag)!r})
def progress(elapsed, total, step):
    if elapsed > 0.2 and opened[0].laser.is_on:
        flag.touch()
""", timeout=600, output_hook=hook)
        msg_id = kc.execute('cybloid.run("harmonic-trap", duration=3600, progress=progress, '
                            'overrides={"camera.width_px": 128, "camera.height_px": 128})')
        t_end = time.monotonic() + 600
        while not flag.exists() and time.monotonic() < t_end:
            time.sleep(0.2)
        assert flag.exists(), "the run never got going"
        km.interrupt_kernel()  # what the interrupt button does
        while True:
            reply = kc.get_shell_msg(timeout=120)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in ("Aborted", "KeyboardInterrupt")
        kc.execute_interactive('print("laser", opened[0].laser.is_on, opened[0].world.laser_on, '
                               'opened[0].laser.on_count)', timeout=60, output_hook=hook)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    (line,) = [t for t in out if t.startswith("laser ")]
    assert line.split()[1:3] == ["False", "False"] and int(line.split()[3]) >= 1, out
