import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture
def torch_one_thread():
    """Run a test with torch on one thread (small models: threads only add overhead), then restore."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture
def small_lab_overrides():
    """A small field of view keeps simulated frames cheap."""
    return {"camera.width_px": 128, "camera.height_px": 128}


# CI sets CYBLOID_REQUIRE_GUI=1 (.ci/run): there a GUI test that would be skipped (no display, no Qt,
# no Xvfb) fails instead, so a green run means the dashboard tests really ran.
REQUIRE_GUI = os.environ.get("CYBLOID_REQUIRE_GUI") == "1"


def _is_gui_test(nodeid: str, marked: bool) -> bool:
    return marked or os.path.basename(nodeid.split("::")[0]).startswith("test_gui")


def _skip_to_failure(rep) -> None:
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    reason = reason.removeprefix("Skipped: ")
    rep.outcome = "failed"
    rep.longrepr = f"CYBLOID_REQUIRE_GUI=1, but this GUI test was skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    if REQUIRE_GUI and rep.skipped and not hasattr(rep, "wasxfail") \
            and _is_gui_test(item.nodeid, item.get_closest_marker("gui") is not None):
        _skip_to_failure(rep)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    rep = (yield).get_result()
    if REQUIRE_GUI and rep.skipped and _is_gui_test(collector.nodeid, False):
        _skip_to_failure(rep)  # e.g. a module-level importorskip("PySide6")


SMALL_LAB = {"camera.width_px": 128, "camera.height_px": 128, "particles.count": 4}
"""A small simulated lab for dashboard tests: 128x128 camera, 4 particles."""


@pytest.fixture
def live(qtbot, tmp_path):
    """The dashboard on a small simulated lab, shown and running; closing it must stop the loop, laser off."""
    from cybloid.gui.app import main_window

    win = main_window(overrides=SMALL_LAB, record_dir=str(tmp_path / "sessions"))
    qtbot.addWidget(win)
    win.show()
    win.start()
    yield win
    win.close()
    assert win.closed
    assert not win.worker.running
    assert not win.worker.lab.laser.is_on
