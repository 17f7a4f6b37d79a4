import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest


@pytest.fixture
def small_lab_overrides():
    """A small field of view keeps simulated frames cheap."""
    return {"camera.width_px": 128, "camera.height_px": 128}
