"""The fast tracker's one-call steady path (:mod:`cybloid.tracking.hotpath`) gives exactly the
results of the general path: same identities, positions, masses, widths, flags, frame by frame,
through Brownian motion, particles crossing the border, a stage jump and steady stage motion."""

import numpy as np

from cybloid.lab import open_lab
from cybloid.loop import default_tracker


def test_steady_path_is_bit_identical_to_the_general_path():
    lab = open_lab(seed=5, overrides={"camera.width_px": 128, "camera.height_px": 128, "particles.count": 30,
                                      "arena.margin_um": 0.0})
    fast, general = default_tracker(lab), default_tracker(lab)
    fast.steady_path, general.steady_path = True, False
    steady = events = 0
    for i in range(60):
        if i == 20:
            lab.stage.move_by(3.0, -2.0)  # a field jump: acquisition, SHIFT flags
        if 35 <= i < 45:
            lab.stage.move_by(0.6, 0.3)  # steady motion: drift prediction, particles leave and enter
        image = lab.camera.grab().image
        a, b = fast.update(image, i), general.update(image, i)
        for name in ("ids", "xy_px", "mass", "flags", "size", "ecc"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), (i, name)
        assert fast.last_acquisition == general.last_acquisition
        steady += fast.last_acquisition is None
        events += fast.last_acquisition is not None or bool(np.any(a.flags & 1))
    lab.close()
    assert steady >= 30 and events >= 2  # both paths were exercised
    assert len(a) >= 20
