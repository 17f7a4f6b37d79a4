"""An interactive bench for notebooks: ``with cybloid.lab(...) as bench:`` (see ``docs/python-api.md``).

The bench opens a lab (simulated by default, or real hardware with its calibration) and a
feedback loop, and lets a notebook set force terms, move traps, switch the laser and run the
loop frame by frame. The loop runs only inside :meth:`Bench.run_for` / :meth:`Bench.step` /
:meth:`Bench.grab`; the watchdog is armed only then. The laser goes off and the beam is
blanked when the ``with`` block ends (normally or by an exception), on ``KeyboardInterrupt``
(the kernel's interrupt button) inside a bench call, on :meth:`Bench.close`, and at
interpreter exit (a kernel restart).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import weakref
from typing import Any, Mapping

import numpy as np

from cybloid.errors import CybloidError, ParameterError

log = logging.getLogger(__name__)
_OPEN: "weakref.WeakSet[Bench]" = weakref.WeakSet()


class Bench:
    """A lab and its feedback loop, driven from Python. Open it with :func:`lab`.

    Attributes
    ----------
    lab : cybloid.lab.Lab
        The devices (camera, steering, laser, stage), clock, calibration and profile.
    loop : FeedbackLoop
        Tracker -> force program -> actuator; ``loop.program`` holds the force terms.
    last : FrameRecord or None
        The record of the last frame processed.
    """

    def __init__(self, lab_obj: Any, loop: Any) -> None:
        self.lab = lab_obj
        self.loop = loop
        self.last = None
        self.closed = False
        _OPEN.add(self)

    # ------------------------------------------------------------------ laser, forces, stage
    @property
    def laser_is_on(self) -> bool:
        """The laser state as the laser device reports it."""
        return bool(self.lab.laser.is_on)

    def laser(self, on: bool, power_mW: float | None = None) -> None:
        """Switch the laser on or off (power clipped to the hardware limit)."""
        self._open()
        if power_mW is not None:
            p = min(float(power_mW), self.lab.limits.max_power_mW, self.lab.laser.max_power_mW)
            self.lab.laser.set_power(p)
            mx = self.lab.laser.max_power_mW
            self.loop.actuator.power_frac = p / mx if mx else 0.0
        if on:
            self.lab.laser.on()
        else:
            self.lab.safe_off()

    def off(self) -> list[str]:
        """Laser off and beam blanked now; returns error messages (none when all went well)."""
        return self.lab.safe_off()

    def set_term(self, name: str, term: Any) -> None:
        """Add or replace a force term (``cybloid.forces``), e.g. ``HarmonicTrap(centres_um, stiffness=0.05)``."""
        self._open()
        self.loop.program.set_term(name, term)

    def remove_term(self, name: str) -> None:
        self._open()
        self.loop.program.remove_term(name)

    def set_param(self, term: str, **values: Any) -> None:
        """Change parameters of a force term, e.g. ``set_param("trap", stiffness=0.1)``."""
        self._open()
        self.loop.program.set_param(term, **values)

    def move_traps(self, centres_um: Any, name: str = "trap", **values: Any) -> None:
        """Put harmonic traps (a :class:`~cybloid.forces.HarmonicTrap` term named ``name``) at ``centres_um``
        (N, 2 field-of-view um); keeps the term's stiffness unless given in ``values``."""
        from cybloid.forces import HarmonicTrap

        self._open()
        old = self.loop.program.terms.get(name)
        kw = {}
        if isinstance(old, HarmonicTrap):
            for k in ("stiffness", "capture_radius"):
                if hasattr(old, k):
                    kw[k] = getattr(old, k)
        kw.update(values)
        self.loop.program.set_term(name, HarmonicTrap(np.asarray(centres_um, float).reshape(-1, 2), **kw))

    def move_stage(self, x_um: float, y_um: float, relative: bool = False) -> None:
        self._open()
        (self.lab.stage.move_by if relative else self.lab.stage.move_to)(float(x_um), float(y_um))

    # ------------------------------------------------------------------ running the loop
    def step(self, n: int = 1):
        """Process ``n`` camera frames through the loop; returns the last record."""
        self._open()
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ParameterError(f"step: n must be a whole number >= 0, got {n!r}")
        wd = self.loop.watchdog
        try:
            self.loop.warm_up()
            wd.arm()
            for _ in range(int(n)):
                self.last = self.loop.step()
        except BaseException:  # KeyboardInterrupt (kernel interrupt) included: the beam goes off first
            self.lab.safe_off()
            raise
        finally:
            wd.disarm()
        return self.last

    def run_for(self, seconds: float, keep: bool = False) -> list[Any]:
        """Run the loop for ``seconds`` of lab time; with ``keep``, return every frame's record (no images)."""
        if not np.isfinite(seconds) or seconds < 0:
            raise ParameterError(f"run_for: seconds must be >= 0, got {seconds!r}")
        n = int(round(seconds / self.lab.frame_period_s))
        out: list[Any] = []
        sink = (lambda r: out.append(dataclasses.replace(r, image=None))) if keep else None
        if sink is not None:
            self.loop.add_sink(sink)
        try:
            self.step(n)
        finally:
            if sink is not None:
                self.loop.remove_sink(sink)
        return out

    def grab(self, n: int | None = None) -> np.ndarray:
        """The camera image of the next frame (2-D), or of the next ``n`` frames (n, Y, X); the loop runs."""
        if n is None:
            rec = self.step(1)
            return rec.image
        images = []
        for _ in range(int(n)):
            images.append(self.step(1).image)
        cam = self.lab.profile.camera
        return np.stack(images) if images else np.zeros((0, cam.height_px, cam.width_px), np.uint16)

    @property
    def positions_um(self) -> np.ndarray:
        """Tracked positions (N, 2 um) in the last frame."""
        return np.zeros((0, 2)) if self.last is None else np.asarray(self.last.positions_um)

    @property
    def tracks(self):
        """The last frame's particles as a table: particle, x, y (um), fx, fy (pN)."""
        from cybloid.api import tracks_from_records

        return tracks_from_records([self.last] if self.last is not None else [])

    # ------------------------------------------------------------------ closing
    def _open(self) -> None:
        if self.closed:
            raise CybloidError("this bench is closed; open a new one with cybloid.lab()")

    def close(self) -> None:
        """Laser off, beam blanked, devices closed. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.close()
        finally:
            self.lab.close()
            _OPEN.discard(self)

    def __enter__(self) -> "Bench":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a bench dropped without close: still switch off
        try:
            if not self.closed:
                self.lab.safe_off()
        except Exception as exc:  # a destructor must not raise; the failure is still told
            log.error("switching off a bench that was not closed failed: %s", exc)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"laser {'ON' if self.laser_is_on else 'off'}"
        return f"<cybloid bench on {self.lab.hardware.name} ({state}), terms {list(self.loop.program.terms)}>"


def lab(hardware: Any = None, calibration: Any = None, *, lab: Any = None, seed: int = 0, realtime: bool = False,
        overrides: Mapping[str, Any] | None = None, initial_positions_um: Any = None, tracker: Any = None,
        allow_uncalibrated: bool = False) -> Bench:
    """Open an interactive bench: ``with cybloid.lab() as bench: ...`` (simulated lab by default).

    Parameters
    ----------
    hardware : str or path, optional
        Hardware profile (``"simulated"``, ``"emulated"``, or a TOML file).
    calibration : Calibration or path, optional
        Required on real hardware (unless ``allow_uncalibrated``).
    lab : str, path or LabProfile, optional
        Lab profile of the simulated lab (``"default"``).
    seed : int
        Seed of the simulated lab.
    realtime : bool
        Wall time instead of virtual time.
    overrides : mapping, optional
        Lab-profile values, e.g. ``{"particles.count": 1, "camera.width_px": 128}``.
    initial_positions_um : (N, 2) array, optional
        Where the simulated particles start.
    """
    from cybloid.calibration.check import require_calibration
    from cybloid.hardware import load_hardware_profile
    from cybloid.lab import open_lab
    from cybloid.loop import FeedbackLoop
    from cybloid.profile import LabProfile, load_lab_profile

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a whole number >= 0, got {seed!r}")
    hw = hardware if hasattr(hardware, "roles") else load_hardware_profile(hardware)
    cal = require_calibration(hw, calibration, override=allow_uncalibrated)
    prof = lab if isinstance(lab, LabProfile) else load_lab_profile(lab)
    if overrides:
        prof = prof.with_overrides(dict(overrides), where="cybloid.lab(overrides=...)")
    init = None if initial_positions_um is None else np.asarray(initial_positions_um, float).reshape(-1, 2)
    lab_obj = open_lab(hw, prof, seed=int(seed), realtime=realtime, initial_positions_um=init, calibration=cal)
    try:
        loop = FeedbackLoop(lab_obj, tracker=tracker)
    except BaseException:
        lab_obj.close()
        raise
    return Bench(lab_obj, loop)


def _close_all_at_exit() -> None:
    """Interpreter exit (kernel restart or shutdown): every bench still open switches off."""
    for b in list(_OPEN):
        try:
            b.lab.safe_off()
            b.close()
        except Exception as exc:  # pragma: no cover - exit path: one bench's failure must not keep the others on
            log.error("switching off a bench at exit failed: %s", exc)


atexit.register(_close_all_at_exit)
