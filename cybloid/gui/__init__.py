"""The dashboard (``cybloid gui``): operate the lab live, or replay a recorded session.

Qt (PySide6) and pyqtgraph are imported only by the modules that draw; :mod:`cybloid.gui.worker`
(the loop thread) has no Qt dependency. Start it with :func:`cybloid.gui.app.main_window` or
from the command line.
"""
