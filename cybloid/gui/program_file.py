"""Force programs as files: the dashboard's program saved to TOML and loaded back.

Format ``cybloid-force-program/1``::

    format = "cybloid-force-program/1"

    [terms.trap]
    term = "HarmonicTrap"
    centres_um = [[51.2, 51.2]]      # field-of-view um
    stiffness = 0.05                 # pN/um
    capture_radius = 5.0             # um

Every parameter is validated against the term's declared range when loaded (the same checks as
the force panel); a bad file gives a :class:`~cybloid.errors.ParameterError` naming the file,
the term and the key. Loading never executes code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cybloid.errors import ParameterError
from cybloid.forces.base import ForceProgram, ForceTerm
from cybloid.params import Values
from cybloid.tomlfile import read_toml, toml_value

FORMAT = "cybloid-force-program/1"
CENTRE_ARGS = ("centres_um", "centers_um", "centre_um", "center_um")


def program_to_toml(program: ForceProgram) -> str:
    """The program as TOML text (units in comments, centres in field-of-view um)."""
    lines = [f'format = "{FORMAT}"', ""]
    for name, term in program.terms.items():
        lines.append(f'[terms."{name}"]')
        lines.append(f'term = "{type(term).__name__}"')
        for attr in CENTRE_ARGS:
            c = getattr(term, attr, None)
            if c is not None:
                lines.append(f"{attr} = {toml_value(np.asarray(c, dtype=float))}  # um")
                break
        declared = term.values.declared if hasattr(term.values, "declared") else {}
        for k, v in term.values.as_dict().items():
            p = declared.get(k) if isinstance(declared, dict) else None
            unit = getattr(p, "unit", "") if p is not None else ""
            lines.append(f"{k} = {toml_value(v)}" + (f"  # {unit}" if unit else ""))
        lines.append("")
    return "\n".join(lines)


def save_program(program: ForceProgram, path: str | Path) -> Path:
    """Write the program to ``path`` (TOML); returns the path."""
    p = Path(path)
    text = program_to_toml(program)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(p)
    return p


def load_program(path: str | Path, classes: dict[str, type[ForceTerm]]) -> dict[str, ForceTerm]:
    """Terms from a force-program file, validated; ``classes`` maps class names to term classes."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise ParameterError(f"{where}: no such force-program file")
    data = read_toml(p, ParameterError, "force program")
    if data.get("format") != FORMAT:
        raise ParameterError(f"{where}: format must be \"{FORMAT}\", got {data.get('format')!r}")
    terms = data.get("terms", {})
    if not isinstance(terms, dict):
        raise ParameterError(f"{where}: [terms] must be a table of tables")
    out: dict[str, ForceTerm] = {}
    for name, spec in terms.items():
        here = f"{where}: [terms.{name}]"
        if not isinstance(spec, dict):
            raise ParameterError(f"{here} must be a table")
        spec = dict(spec)
        cls_name = spec.pop("term", None)
        cls = classes.get(cls_name) if isinstance(cls_name, str) else None
        if cls is None:
            raise ParameterError(f"{here}: unknown term {cls_name!r} (available: {', '.join(classes)})")
        kwargs: dict[str, Any] = {}
        for attr in CENTRE_ARGS:
            if attr in spec:
                c = spec.pop(attr)
                try:
                    arr = np.asarray(c, dtype=float)
                except (TypeError, ValueError):
                    raise ParameterError(f"{here}: {attr} must be numbers [[x, y], ...] (um)") from None
                if not np.all(np.isfinite(arr)) or arr.size == 0 or arr.size % 2:
                    raise ParameterError(f"{here}: {attr} must be finite [x, y] pairs (um)")
                kwargs[attr] = arr.reshape(-1, 2) if attr in ("centres_um", "centers_um") else arr.reshape(2)
        try:
            term = cls(**kwargs)
        except ParameterError as exc:
            raise ParameterError(f"{here}: {exc}") from None
        except TypeError as exc:
            raise ParameterError(f"{here}: {cls_name} needs other arguments: {exc}") from None
        trial = Values(term.PARAMS, term.values.as_dict(), where=f"{here} ")
        for k, v in spec.items():
            trial.set(k, v, f"{here} ")  # unknown names and out-of-range values raise here
        term.set(**trial.as_dict())
        out[str(name)] = term
    return out
