"""GUI-thread responsiveness of the dashboard while the loop runs at 100 frames/s."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from cybloid.bench.common import case, document

DESCRIPTION = ("dashboard GUI-thread stall: gaps between ticks of a 10 ms GUI timer while the simulated lab "
               "(512x512, 100 frames/s) runs in the loop thread and the window draws at 30 Hz (also: with Python's "
               "default GIL switch interval, and the window alone without the loop thread); "
               "reference (not the same work, no speedup): a 10 ms sleep loop in a separate process (the machine's own "
               "scheduling noise)")

PROBE = """
import sys, time
d = float(sys.argv[1]); gaps = []
last = t0 = time.perf_counter()
while last - t0 < d:
    time.sleep(0.01); now = time.perf_counter(); gaps.append((now - last) * 1e3); last = now
print(" ".join(f"{g:.3f}" for g in gaps))
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per case (default 10)")
    p.add_argument("--quick", action="store_true", help="3 s, one case (smoke test)")
    p.add_argument("--cases", default="all",
                   help="comma-separated subset of: default, gil5, alone, n100 (default: all)")


def _show_all_panels(win) -> None:
    """Make the Particles tab and the Diagnostics plots visible so they update with the live view."""
    from PySide6 import QtWidgets

    for name in ("dock-Particles", "dock-Diagnostics"):
        d = win.findChild(QtWidgets.QDockWidget, name)
        if d is not None:
            d.show()
            d.raise_()
    win.live.set_overlay("ids", True)


def _click_to_trap(app, win, clicks: int) -> list[float]:
    """Mouse action -> first spot table sent that holds a spot for the clicked particle (ms, wall clock).

    The laser is on at low power; each click places a trap on a tracked particle that has no spot;
    the GUI thread then polls the loop's newest record (every 0.5 ms) until a record whose spot
    count grew was sent after the click.
    """
    import numpy as np

    lab = win.worker.lab
    win.hardware.power.setValue(20.0)
    win.hardware.confirm = lambda *a: True
    win.hardware.laser_on()
    out: list[float] = []
    for _ in range(clicks):
        if not lab.laser.is_on:  # the watchdog switched it off (an overloaded machine): nothing to measure
            break
        rec = win.worker.latest
        if rec is None or not len(rec.ids):
            break
        n_before = len(rec.spots) if rec.spots is not None else 0
        target = np.asarray(rec.positions_um)[len(out) % len(rec.ids)]
        t0 = time.perf_counter()
        win.trap_tool.click(target)
        t_end = t0 + 5.0
        while time.perf_counter() < t_end:
            r = win.worker.latest
            if r is not rec and r.spots is not None and len(r.spots) > n_before and r.laser_on:
                out.append((time.perf_counter() - t0) * 1e3)
                break
            app.processEvents()
            time.sleep(0.0005)
        win.force.change_term("clicked", None, undoable=False)  # start each click from no clicked trap
        t_wait = time.perf_counter() + 0.2
        while time.perf_counter() < t_wait:
            app.processEvents()
            time.sleep(0.002)
    win.laser_off()
    assert not lab.laser.is_on
    return out


def _measure(app, seconds: float, switch_interval_s: float | None, alone: bool = False,
             overrides: dict | None = None, all_panels: bool = False, clicks: int = 0) -> dict:
    from PySide6 import QtCore

    from cybloid.gui import window as W
    from cybloid.gui.app import main_window

    old = W.GIL_SWITCH_INTERVAL_S
    if switch_interval_s is not None:
        W.GIL_SWITCH_INTERVAL_S = switch_interval_s
    try:
        win = main_window(overrides=overrides)
        win.show()
        if all_panels:
            _show_all_panels(win)
        win.start()
        t_end = time.monotonic() + 60
        while win.worker.frames < 50 and time.monotonic() < t_end:  # warm: loop running, window laid out
            app.processEvents()
            time.sleep(0.005)
        feeder = None
        if alone:  # the window alone: stop the loop thread, feed it the last 100 records at 100 Hz
            import dataclasses

            recs = [win.worker.latest]
            win.worker.stop()
            recs += [dataclasses.replace(recs[0], index=recs[0].index + i) for i in range(1, 100)]
            k = [0]

            def feed() -> None:
                k[0] += 1
                r = recs[k[0] % len(recs)]
                win.worker.latest = r
                win.worker.feed.append(dataclasses.replace(r, image=None))
                win.worker.frames += 1

            feeder = QtCore.QTimer()
            feeder.timeout.connect(feed)
            feeder.start(10)
        ref = subprocess.Popen([sys.executable, "-c", PROBE, str(seconds)], stdout=subprocess.PIPE, text=True)
        win.stall.reset()
        f0 = win.worker.frames
        shown0 = win.live.frames_shown
        loop = QtCore.QEventLoop()
        QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        loop.exec()
        gui_cpu = (time.thread_time() - cpu0) / (time.perf_counter() - wall0)  # this thread is the GUI thread
        gaps = list(win.stall.gaps_ms)
        frames = win.worker.frames - f0
        shown = win.live.frames_shown - shown0
        ref_gaps = [float(x) for x in (ref.communicate(timeout=seconds + 30)[0].split())]
        if feeder is not None:
            feeder.stop()
        click_ms = _click_to_trap(app, win, clicks) if clicks else []
        win.close()
    finally:
        W.GIL_SWITCH_INTERVAL_S = old
    return {"gaps": gaps, "ref": ref_gaps, "loop_fps": frames / seconds, "display_fps": shown / seconds,
            "gui_cpu_fraction": gui_cpu,
            "laser_off_after_close": not win.worker.lab.laser.is_on, "click_ms": click_ms}


def run(args: argparse.Namespace) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen" if not os.environ.get("DISPLAY") else "xcb")
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])
    seconds = 3.0 if args.quick else float(args.seconds)
    n100 = {"particles.count": 100}
    table = {"default": ("dashboard, GIL switch 1 ms (default)", None, False, None, False, 0),
             "gil5": ("dashboard, GIL switch 5 ms (Python default)", 0.005, False, None, False, 0),
             "alone": ("window alone (loop thread stopped, frames fed at 100 Hz)", None, True, None, False, 0),
             "n100": ("N=100: live view + ids + particle table + diagnostics plots", None, False, n100, True, 30)}
    chosen = [c.strip() for c in str(getattr(args, "cases", "all") or "all").split(",") if c.strip()]
    if chosen == ["all"]:
        chosen = ["default"] if args.quick else list(table)
    unknown = [c for c in chosen if c not in table]
    if unknown:
        from cybloid.errors import CybloidError

        raise CybloidError(f"--cases: unknown case {unknown[0]!r} (choose from {', '.join(table)})")
    variants = [table[c] for c in chosen]
    cases = []
    for name, sw, alone, overrides, all_panels, clicks in variants:
        load0 = os.getloadavg()[0]
        m = _measure(app, seconds, sw, alone, overrides, all_panels, clicks)
        if m["click_ms"]:
            cases.append(case("click-to-trap: trap tool click -> spot table sent (N=100)",
                              {"n": 100, "clicks": clicks}, m["click_ms"],
                              quality={"clicks_answered": len(m["click_ms"]), "clicks": clicks,
                                       "loadavg_1min": round(os.getloadavg()[0], 2)}))
        cases.append(case(name, {"seconds": seconds, "timer_ms": 10, "display_hz": 30, "fps": 100, "width": 512,
                                 "n": int((overrides or {}).get("particles.count", 20))},
                          m["gaps"], baseline={"name": "10 ms sleep loop, separate process", "samples_ms": m["ref"],
                                               "max_ms": max(m["ref"], default=float("nan"))},
                          like_for_like=False,
                          max_ms=max(m["gaps"], default=float("nan")),
                          quality={"max_gap_ms": round(max(m["gaps"], default=float("nan")), 1),
                                   "baseline_max_ms": round(max(m["ref"], default=float("nan")), 1),
                                   "loop_fps": round(m["loop_fps"], 1), "display_fps": round(m["display_fps"], 1),
                                   "gui_thread_cpu_percent": round(100 * m["gui_cpu_fraction"], 1),
                                   "loadavg_1min": round(load0, 2),
                                   "laser_off_after_close": m["laser_off_after_close"]}))
    return document("gui", cases, notes="gaps include the 10 ms timer period",
                    computed={"target_max_gap_ms": 50.0})
