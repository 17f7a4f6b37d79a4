"""Force program panel: the terms of the running program, their parameters edited live.

Every edit is validated in the GUI thread against the term's declared parameters first; an
invalid value is refused with a message and never reaches the loop. Valid changes are applied
by the loop thread between two frames (:meth:`LabWorker.submit`).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
from typing import Any

import numpy as np
from PySide6 import QtWidgets

from cybloid.errors import CybloidError, ParameterError
from cybloid.forces.base import ForceProgram, ForceTerm
from cybloid.params import Values

log = logging.getLogger(__name__)

CENTRE_ARGS = ("centres_um", "centers_um", "centre_um", "center_um")
UNDO_DEPTH = 50


def available_terms() -> dict[str, type[ForceTerm]]:
    """Force-term classes of :mod:`cybloid.forces` that the panel can construct, by class name."""
    import cybloid.forces as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        try:
            importlib.import_module(f"cybloid.forces.{mod.name}")
        except Exception as exc:  # a module being written or broken: skip it, say so
            log.debug("cannot import cybloid.forces.%s: %s", mod.name, exc)
    out: dict[str, type[ForceTerm]] = {}
    todo = list(ForceTerm.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if inspect.isabstract(cls) or cls.add_forces is ForceTerm.add_forces or cls.__name__.startswith("_"):
            continue
        if constructor_needs(cls) is not None:
            out[cls.__name__] = cls
    return dict(sorted(out.items()))


def constructor_needs(cls: type) -> list[str] | None:
    """Required constructor arguments other than parameters; None if the panel cannot supply them."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    needs = []
    for name, p in list(sig.parameters.items())[1:]:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if name in CENTRE_ARGS:
            needs.append(name)  # required or not: the panel supplies centres
        elif p.default is p.empty:
            return None
    return needs


def parse_centres(text: str, where: str = "centres") -> np.ndarray:
    """``"x, y; x, y"`` (um) -> (M, 2) array; ParameterError naming the bad entry."""
    pts = []
    for k, chunk in enumerate(filter(None, (c.strip() for c in text.split(";")))):
        parts = [p for p in chunk.replace(",", " ").split() if p]
        try:
            xy = [float(p) for p in parts]
        except ValueError:
            raise ParameterError(f"{where}: entry {k + 1} ({chunk!r}) is not 'x, y' in um") from None
        if len(xy) != 2 or not np.all(np.isfinite(xy)):
            raise ParameterError(f"{where}: entry {k + 1} ({chunk!r}) must be two finite numbers 'x, y' (um)")
        pts.append(xy)
    if not pts:
        raise ParameterError(f"{where}: give at least one centre as 'x, y' (um)")
    return np.asarray(pts, dtype=float)


def validate_edits(term: ForceTerm, texts: dict[str, str]) -> dict[str, Any]:
    """Validated new values for ``term`` from edited texts; raises ParameterError, changes nothing."""
    where = f"{type(term).__name__}: "
    trial = Values(term.PARAMS, term.values.as_dict(), where=where)
    changed = {}
    for name, text in texts.items():
        trial.set(name, text, where)
        if trial[name] != term.values[name]:
            changed[name] = trial[name]
    return changed


class ForcePanel(QtWidgets.QWidget):
    """Terms of the program and a form for the selected term's parameters."""

    def __init__(self, worker: Any, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.read_only = worker is None
        self.edits: dict[str, QtWidgets.QLineEdit] = {}
        self._term_key: tuple | None = None
        self._selected: str | None = None
        self._classes: dict[str, type[ForceTerm]] = {}

        self.terms = QtWidgets.QListWidget()
        self.terms.currentTextChanged.connect(self._select)
        self.form_box = QtWidgets.QGroupBox("parameters")
        self.form = QtWidgets.QFormLayout(self.form_box)
        self.apply_btn = QtWidgets.QPushButton("Apply")
        self.apply_btn.clicked.connect(self.apply)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)

        add_box = QtWidgets.QGroupBox("add a term")
        self.class_box = QtWidgets.QComboBox()
        self.name_edit = QtWidgets.QLineEdit("")
        self.name_edit.setPlaceholderText("new term name (empty: a fresh one)")
        self.replace_box = QtWidgets.QCheckBox("replace a term of the same name")
        self.replace_box.setToolTip("off: a name already in the program (e.g. a running protocol's) is refused")
        self.centres_edit = QtWidgets.QLineEdit()
        self.centres_edit.setPlaceholderText("x, y; x, y  (um, field of view)")
        add_btn = QtWidgets.QPushButton("Add term")
        add_btn.clicked.connect(self._add_clicked)
        self.remove_btn = QtWidgets.QPushButton("Remove selected term")
        self.remove_btn.clicked.connect(self._remove_clicked)
        self.undo_stack: list = []
        self.undo_btn = QtWidgets.QPushButton("Undo (Ctrl+Z)")
        self.undo_btn.setEnabled(False)
        self.undo_btn.clicked.connect(self.undo)
        save_btn = QtWidgets.QPushButton("Save program...")
        save_btn.clicked.connect(self._save_clicked)
        load_btn = QtWidgets.QPushButton("Load program...")
        load_btn.clicked.connect(self._load_clicked)
        self.term_centres = QtWidgets.QLineEdit()
        self.term_centres.setPlaceholderText("x, y; x, y (um)")
        self.term_centres.returnPressed.connect(self._centres_clicked)
        af = QtWidgets.QFormLayout(add_box)
        af.addRow("term", self.class_box)
        af.addRow("name", self.name_edit)
        af.addRow("centres", self.centres_edit)
        af.addRow("", self.replace_box)
        af.addRow(add_btn)

        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(QtWidgets.QLabel("terms of the force program"))
        lay.addWidget(self.terms, 1)
        lay.addWidget(self.form_box)
        lay.addWidget(self.apply_btn)
        lay.addWidget(self.message)
        lay.addWidget(self.remove_btn)
        files = QtWidgets.QHBoxLayout()
        files.addWidget(self.undo_btn)
        files.addWidget(save_btn)
        files.addWidget(load_btn)
        lay.addLayout(files)
        lay.addWidget(add_box)
        if self.read_only:
            for w in (self.apply_btn, add_box, self.remove_btn, self.undo_btn, load_btn):
                w.setEnabled(False)
        else:
            self._classes = available_terms()
            self.class_box.addItems(list(self._classes))
        self.refresh()

    # ------------------------------------------------------------------ state
    @property
    def program(self) -> ForceProgram:
        return self.worker.loop.program if self.worker is not None else ForceProgram()

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #d33; font-weight: bold" if error else "color: #2a2")

    def refresh(self) -> None:
        """Follow the program (a protocol may add or change terms): cheap when nothing changed."""
        prog = self.program
        key = tuple((name, id(t)) for name, t in prog.terms.items())
        if key != self._term_key:
            self._term_key = key
            current = self._selected
            self.terms.blockSignals(True)
            self.terms.clear()
            for name, t in prog.terms.items():
                self.terms.addItem(name)
            self.terms.blockSignals(False)
            names = list(prog.terms)
            if current in names:
                self.terms.setCurrentRow(names.index(current))
                self._build_form(current)
            elif names:
                self.terms.setCurrentRow(0)
                self._select(names[0])
            else:
                self._select("")
        term = prog.terms.get(self._selected or "")
        if term is not None:
            for name, edit in self.edits.items():
                if not edit.hasFocus() and not edit.isModified():
                    text = _fmt(term.values[name])
                    if edit.text() != text:
                        edit.setText(text)

    def _select(self, name: str) -> None:
        self._selected = name or None
        self._build_form(name)

    def select_term(self, name: str) -> None:
        names = list(self.program.terms)
        if name not in names:
            raise ParameterError(f"no force term named '{name}' (have: {', '.join(names) or 'none'})")
        self.terms.setCurrentRow(names.index(name))
        self._select(name)

    def _build_form(self, name: str) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.edits = {}
        term = self.program.terms.get(name or "")
        if term is None:
            self.form_box.setTitle("parameters (no term selected)")
            return
        self.form_box.setTitle(f"parameters of '{name}' ({type(term).__name__})")
        c = term_centres(term)
        if c is not None:
            self.term_centres = QtWidgets.QLineEdit("; ".join(f"{x:.4g}, {y:.4g}" for x, y in c))
            self.term_centres.setToolTip("centres in field-of-view um; Enter moves them (undoable)")
            self.term_centres.setReadOnly(self.read_only)
            self.term_centres.returnPressed.connect(self._centres_clicked)
            self.form.addRow("centres (um)", self.term_centres)
        for p in term.PARAMS:
            edit = QtWidgets.QLineEdit(_fmt(term.values[p.name]))
            edit.setReadOnly(self.read_only)
            edit.setToolTip(p.describe())
            edit.returnPressed.connect(self.apply)
            self.edits[p.name] = edit
            self.form.addRow(f"{p.name} ({p.unit})" if p.unit else p.name, edit)

    # ------------------------------------------------------------------ actions
    def apply(self) -> bool:
        """Validate the form and apply it; an invalid value is refused with a message."""
        name = self._selected
        term = self.program.terms.get(name or "")
        if term is None:
            self._say("no term selected", error=True)
            return False
        texts = {k: e.text() for k, e in self.edits.items()}
        try:
            changed = validate_edits(term, texts)
        except CybloidError as exc:
            self._say(f"refused: {exc}", error=True)
            log.warning("force program: refused %s", exc)
            return False
        if not changed:
            self._say("nothing changed")
            return True
        errors: list[str] = []

        before = {k: term.values[k] for k in changed}

        def go() -> None:
            try:
                term.set(**changed)
            except CybloidError as exc:  # validated above; defensive
                errors.append(str(exc))

        self.worker.submit(go, wait_s=0.5)
        for e in self.edits.values():
            e.setModified(False)
        if errors:
            self._say(f"refused: {errors[0]}", error=True)
            return False
        self._push_undo(f"parameters of '{name}'", lambda: self.worker.submit(lambda: term.set(**before), wait_s=0.5))
        text = ", ".join(f"{k} = {_fmt(v)}" for k, v in changed.items())
        self._say(f"applied to '{name}': {text}")
        log.info("force program: %s.%s", name, text)
        return True

    def fresh_name(self, stem: str = "term") -> str:
        """A term name not used in the program yet (``term1``, ``term2``...)."""
        used = set(self.program.terms)
        i = 1
        while f"{stem}{i}" in used:
            i += 1
        return f"{stem}{i}"

    def add_term(self, cls_name: str, name: str, centres_text: str = "", replace: bool = False) -> ForceTerm:
        """Build a term of class ``cls_name`` (defaults, centres from text) and add it as ``name``.

        An existing term of that name (a running protocol's, say) is replaced only with ``replace``.
        """
        if not name.strip():
            raise ParameterError("force term name must not be empty")
        if name.strip() in self.program.terms and not replace:
            raise ParameterError(f"a term named '{name.strip()}' is already in the program: choose another name, "
                                 "or tick 'replace' to replace it")
        cls = self._classes.get(cls_name)
        if cls is None:
            raise ParameterError(f"unknown force term '{cls_name}' (available: {', '.join(self._classes)})")
        kwargs: dict[str, Any] = {}
        for arg in constructor_needs(cls) or []:
            if centres_text.strip():
                c = parse_centres(centres_text, f"{cls_name} {arg}")
            else:
                fov = self.worker.lab.profile.fov_um
                c = np.array([[fov[0] / 2, fov[1] / 2]])
            if arg in ("centre_um", "center_um"):  # one centre
                if len(c) != 1:
                    raise ParameterError(f"{cls_name}: {arg} takes one centre 'x, y' (um), got {len(c)}")
                c = c[0]
            kwargs[arg] = c
        try:
            term = cls(**kwargs)
        except CybloidError:
            raise
        except Exception as exc:
            raise ParameterError(f"cannot build {cls_name}: {exc}") from None
        self.change_term(name.strip(), term)
        log.info("force program: added '%s' (%s)", name.strip(), cls_name)
        self._selected = name.strip()
        self.refresh()
        return term

    # ------------------------------------------------------------------ changes that can be undone
    def _push_undo(self, what: str, restore) -> None:
        self.undo_stack.append((what, restore))
        del self.undo_stack[:-UNDO_DEPTH]
        self.undo_btn.setEnabled(True)

    def change_term(self, name: str, term: ForceTerm | None, undoable: bool = True) -> None:
        """Set (or with ``None`` remove) term ``name`` between two frames; the previous state can be undone."""
        old = self.program.terms.get(name)
        if term is not None:
            term.warm_up()  # compile here, not in the loop thread
            self.worker.submit(lambda: self.program.set_term(name, term), wait_s=0.5)
        else:
            self.worker.submit(lambda: self.program.terms.pop(name, None), wait_s=0.5)
        if undoable:
            self._push_undo(f"term '{name}'", lambda: self.change_term(name, old, undoable=False))

    def undo(self) -> bool:
        """Undo the last change made from the dashboard (terms added, removed, moved, edited)."""
        if not self.undo_stack:
            self._say("nothing to undo")
            return False
        what, restore = self.undo_stack.pop()
        restore()
        self.undo_btn.setEnabled(bool(self.undo_stack))
        log.info("force program: undid the change of %s", what)
        self._say(f"undone: change of {what}")
        self.refresh()
        return True

    def set_centres(self, name: str, centres_um: np.ndarray) -> ForceTerm:
        """Replace term ``name`` by a copy with new centres (um), same parameter values."""
        term = self.program.terms.get(name)
        if term is None:
            raise ParameterError(f"no force term named '{name}'")
        new = with_centres(term, centres_um)
        self.change_term(name, new)
        return new

    def save_program(self, path: str) -> None:
        from cybloid.gui.program_file import save_program

        try:
            p = save_program(self.program, path)
        except (OSError, CybloidError) as exc:
            self._say(f"cannot save: {exc}", error=True)
            return
        self._say(f"saved {len(self.program.terms)} terms to {p}")
        log.info("force program saved to %s", p)

    def load_program(self, path: str) -> bool:
        """Add the file's terms (same names are replaced: undoable); a bad file changes nothing."""
        from cybloid.gui.program_file import load_program

        try:
            terms = load_program(path, self._classes or available_terms())
        except CybloidError as exc:
            self._say(f"refused: {exc}", error=True)
            log.warning("force program: %s", exc)
            return False
        for name, term in terms.items():
            self.change_term(name, term)
        self._say(f"loaded {len(terms)} terms from {path}")
        log.info("force program: loaded %s (%s)", path, ", ".join(terms))
        self.refresh()
        return True

    def _save_clicked(self) -> None:
        from cybloid.gui.dialogs import choose_path

        self.file_dialog = choose_path(self, "Save force program", self.save_program,
                                       name_filter="Force programs (*.toml)", save=True)

    def _load_clicked(self) -> None:
        from cybloid.gui.dialogs import choose_path

        self.file_dialog = choose_path(self, "Load force program", self.load_program,
                                       name_filter="Force programs (*.toml)")

    def _centres_clicked(self) -> None:
        name = self._selected
        if not name:
            return
        try:
            self.set_centres(name, parse_centres(self.term_centres.text(), f"centres of '{name}'"))
            self._say(f"moved the centres of '{name}'")
        except CybloidError as exc:
            self._say(f"refused: {exc}", error=True)

    def _add_clicked(self) -> None:
        try:
            name = self.name_edit.text().strip() or self.fresh_name()
            self.add_term(self.class_box.currentText(), name, self.centres_edit.text(),
                          replace=self.replace_box.isChecked())
            self._say(f"added '{name}'")
        except CybloidError as exc:
            self._say(f"refused: {exc}", error=True)
            log.warning("force program: %s", exc)

    def _remove_clicked(self) -> None:
        name = self._selected
        if not name:
            return
        self.change_term(name, None)
        log.info("force program: removed '%s'", name)
        self.refresh()


def term_centres(term: ForceTerm) -> np.ndarray | None:
    """The term's centres (M, 2) um, or None if it has none."""
    for attr in CENTRE_ARGS:
        c = getattr(term, attr, None)
        if c is not None:
            return np.asarray(c, dtype=float).reshape(-1, 2)
    return None


def with_centres(term: ForceTerm, centres_um: np.ndarray) -> ForceTerm:
    """A new term of the same class and parameter values with other centres (um)."""
    needs = constructor_needs(type(term)) or []
    arg = next((a for a in needs if a in CENTRE_ARGS), None)
    if arg is None:
        raise ParameterError(f"{type(term).__name__} has no centres to move")
    c = np.asarray(centres_um, dtype=float).reshape(-1, 2)
    if arg in ("centre_um", "center_um"):
        if len(c) != 1:
            raise ParameterError(f"{type(term).__name__} takes one centre, got {len(c)}")
        c = c[0]
    new = type(term)(**{arg: c})
    new.set(**term.values.as_dict())
    return new


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
