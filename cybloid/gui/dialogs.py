"""File dialogs that never lock the dashboard.

A modal dialog would block the main window, and with it the LASER OFF button. These dialogs are
non-modal: the window stays usable while one is open, and the choice arrives in a callback.
"""

from __future__ import annotations

from typing import Callable

from PySide6 import QtWidgets


def choose_path(parent: QtWidgets.QWidget, title: str, on_chosen: Callable[[str], object], directory: str = "",
                name_filter: str = "", folder: bool = False, save: bool = False) -> QtWidgets.QFileDialog:
    """Open a non-modal file (or folder) dialog; ``on_chosen(path)`` is called when the user accepts.

    Returns the dialog (kept alive by ``parent``), so tests and callers can drive or close it.
    """
    dlg = QtWidgets.QFileDialog(parent, title, directory, name_filter)
    dlg.setOption(QtWidgets.QFileDialog.Option.DontUseNativeDialog, True)
    dlg.setModal(False)
    if folder:
        dlg.setFileMode(QtWidgets.QFileDialog.FileMode.Directory)
        dlg.setOption(QtWidgets.QFileDialog.Option.ShowDirsOnly, True)
    elif save:
        dlg.setAcceptMode(QtWidgets.QFileDialog.AcceptMode.AcceptSave)
        dlg.setFileMode(QtWidgets.QFileDialog.FileMode.AnyFile)
    else:
        dlg.setFileMode(QtWidgets.QFileDialog.FileMode.ExistingFile)
    dlg.fileSelected.connect(lambda p: on_chosen(p) if p else None)
    dlg.finished.connect(dlg.deleteLater)
    dlg.show()
    return dlg
