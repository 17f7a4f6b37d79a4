"""Declared parameters: name, unit, default and allowed range, with validation.

Force terms and protocols declare their parameters with :class:`Param`, so the CLI
(``--param k=...``), the dashboard and the dry run can set them and reject bad values with
a clear message before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from cybloid.errors import ParameterError


@dataclass(frozen=True)
class Param:
    """A declared parameter.

    Parameters
    ----------
    name : str
        Identifier used on the command line (``--param name=value``).
    default : float, int, bool or str
        Default value; its type is the parameter's type unless ``kind`` is given.
    unit : str
        Unit written for users, e.g. ``"pN/um"``, ``"s"``; ``""`` for dimensionless.
    min, max : float, optional
        Inclusive bounds for numeric parameters.
    choices : tuple, optional
        Allowed values for string parameters.
    doc : str
        One line shown by ``cybloid protocols`` and in the dashboard.
    """

    name: str
    default: Any
    unit: str = ""
    min: float | None = None
    max: float | None = None
    doc: str = ""
    choices: tuple | None = None
    kind: type | None = None

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    def validate(self, value: Any, where: str = "") -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        label = f"{where}parameter '{self.name}'"
        typ = self.type
        if isinstance(value, str) and typ is not str:
            value = _parse_scalar(value, typ, label)
        if typ is bool:
            if not isinstance(value, (bool, int)) or (isinstance(value, int) and value not in (0, 1)):
                raise ParameterError(f"{label} must be true or false, got {value!r}")
            return bool(value)
        if typ in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{label} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ParameterError(f"{label} must be finite, got {value!r}")
            if typ is int and float(value) != int(value):
                raise ParameterError(f"{label} must be an integer, got {value!r}")
            value = typ(value)
            unit = f" {self.unit}" if self.unit else ""
            if self.min is not None and value < self.min:
                raise ParameterError(f"{label} = {value}{unit} is below its minimum {self.min}{unit}")
            if self.max is not None and value > self.max:
                raise ParameterError(f"{label} = {value}{unit} is above its maximum {self.max}{unit}")
            return value
        if typ is str:
            value = str(value)
            if self.choices is not None and value not in self.choices:
                raise ParameterError(f"{label} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return value
        return value

    def describe(self) -> str:
        """One line: ``name = default unit  [min, max]  doc``."""
        rng = ""
        if self.min is not None or self.max is not None:
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            rng = f"  [{lo}, {hi}]"
        if self.choices:
            rng = "  {" + ", ".join(map(str, self.choices)) + "}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} = {self.default!r}{unit}{rng}  {self.doc}".rstrip()


def _parse_scalar(text: str, typ: type, label: str) -> Any:
    t = text.strip()
    if typ is bool:
        low = t.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ParameterError(f"{label} must be true or false, got {text!r}")
    try:
        return float(t) if typ is float else int(t)
    except ValueError:
        if typ is int:
            try:
                f = float(t)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ParameterError(f"{label} must be {'a number' if typ is float else 'an integer'}, got {text!r}") from None


class Values(Mapping[str, Any]):
    """Validated parameter values, readable as attributes (``p.stiffness``) or items."""

    def __init__(self, params: Iterable[Param], values: Mapping[str, Any] | None = None, where: str = ""):
        self._params = {p.name: p for p in params}
        self._values: dict[str, Any] = {p.name: p.validate(p.default, where) for p in self._params.values()}
        for name, value in (values or {}).items():
            self.set(name, value, where)

    def set(self, name: str, value: Any, where: str = "") -> None:
        if name not in self._params:
            known = ", ".join(sorted(self._params)) or "none"
            raise ParameterError(f"{where}unknown parameter '{name}' (known: {known})")
        self._values[name] = self._params[name].validate(value, where)

    @property
    def declared(self) -> dict[str, Param]:
        return dict(self._params)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Values({self._values!r})"


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse ``["k=1.5", "tau=0.1"]`` into ``{"k": "1.5", "tau": "0.1"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ParameterError(f"--param expects NAME=VALUE, got {item!r}")
        out[name] = value.strip()
    return out
