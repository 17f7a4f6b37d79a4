"""Operating the rig from the image: click to place a trap, drag to move it, right-click to remove it.

The tool edits the running force program through the force panel (so every change is validated,
applied between two frames, and can be undone). New traps go into one ``HarmonicTrap`` term
named :data:`TERM`; dragging or right-clicking acts on the nearest centre of *any* term with
centres (a protocol's traps included) within :attr:`TrapTool.pick_radius_um`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from cybloid.errors import CybloidError

log = logging.getLogger(__name__)

TERM = "clicked"


class TrapTool:
    """Mouse actions of the live view turned into force-program changes (positions in um)."""

    def __init__(self, force_panel: Any, pick_radius_um: float = 3.0) -> None:
        self.panel = force_panel
        self.pick_radius_um = float(pick_radius_um)
        self._drag: tuple[str, int] | None = None
        self.last_action_t: float | None = None
        """``time.perf_counter()`` of the last change (for the click-to-spot-table latency)."""

    def warm_up(self) -> None:
        """Compile the trap term's kernels now (at start), not on the first click: a first
        ``HarmonicTrap.warm_up()`` in a process costs seconds (Numba), later ones microseconds."""
        from cybloid.forces import HarmonicTrap

        HarmonicTrap(np.zeros((1, 2))).warm_up()

    def _centres(self) -> list[tuple[str, np.ndarray]]:
        from cybloid.gui.forcepanel import term_centres

        out = []
        for name, term in self.panel.program.terms.items():
            c = term_centres(term)
            if c is not None and len(c):
                out.append((name, c))
        return out

    def nearest(self, xy_um: np.ndarray) -> tuple[str, int] | None:
        """(term name, centre index) of the centre nearest to ``xy_um`` within the pick radius."""
        best, where = np.inf, None
        for name, c in self._centres():
            d = np.hypot(*(c - xy_um).T)
            i = int(np.argmin(d))
            if d[i] < best:
                best, where = float(d[i]), (name, i)
        return where if best <= self.pick_radius_um else None

    def click(self, xy_um: np.ndarray) -> None:
        """Place a new trap at ``xy_um`` (added to the term :data:`TERM`)."""
        self.last_action_t = time.perf_counter()
        x, y = float(xy_um[0]), float(xy_um[1])
        try:
            term = self.panel.program.terms.get(TERM)
            if term is None:
                self.panel.add_term("HarmonicTrap", TERM, f"{x}, {y}")
            else:
                from cybloid.gui.forcepanel import term_centres

                self.panel.set_centres(TERM, np.vstack([term_centres(term), [[x, y]]]))
            log.info("trap placed at (%.2f, %.2f) um", x, y)
        except CybloidError as exc:
            log.warning("trap tool: %s", exc)

    def remove(self, xy_um: np.ndarray) -> None:
        """Remove the centre nearest to ``xy_um`` (the whole term if it was its only centre)."""
        hit = self.nearest(xy_um)
        if hit is None:
            return
        self.last_action_t = time.perf_counter()
        name, i = hit
        from cybloid.gui.forcepanel import term_centres

        c = term_centres(self.panel.program.terms[name])
        try:
            if len(c) <= 1:
                self.panel.change_term(name, None)
            else:
                self.panel.set_centres(name, np.delete(c, i, axis=0))
            log.info("trap removed: %s centre %d", name, i)
        except CybloidError as exc:
            log.warning("trap tool: %s", exc)
        self.panel.refresh()

    def drag_start(self, xy_um: np.ndarray) -> None:
        self._drag = self.nearest(xy_um)

    def drag_move(self, xy_um: np.ndarray) -> None:
        pass  # the trap moves once, on release: one program change per drag

    def drag_end(self, xy_um: np.ndarray) -> None:
        """Move the dragged centre to ``xy_um``."""
        if self._drag is None:
            return
        name, i = self._drag
        self._drag = None
        term = self.panel.program.terms.get(name)
        if term is None:
            return
        from cybloid.gui.forcepanel import term_centres

        c = term_centres(term).copy()
        if i >= len(c):
            return
        c[i] = xy_um
        self.last_action_t = time.perf_counter()
        try:
            self.panel.set_centres(name, c)
            log.info("trap %s[%d] moved to (%.2f, %.2f) um", name, i, xy_um[0], xy_um[1])
        except CybloidError as exc:
            log.warning("trap tool: %s", exc)
        self.panel.refresh()
