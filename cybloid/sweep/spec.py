"""The sweep specification: protocol, grid, fixed parameters, seeds, lab; stored as ``sweep.json``.

A sweep is the Cartesian product of its grid axes (in the order given) times ``repeats``
seeds. Run ``i`` of a sweep is always the same (grid point, seed), so an interrupted sweep can
resume: the spec is stored in ``DIR/sweep.json`` and a restart with a different spec is refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from cybloid.errors import CybloidError

SPEC_FORMAT = "cybloid-sweep/1"


class SweepError(CybloidError):
    """A sweep is misspecified, or its directory holds a different sweep."""


@dataclass
class RunTask:
    """One run of a sweep: grid point ``point`` with seed ``seed`` (repeat ``repeat``)."""

    run: int
    point: int
    repeat: int
    seed: int
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return f"run{self.run:06d}"


@dataclass
class SweepSpec:
    """What a sweep runs. ``grid`` maps a protocol parameter to its list of values.

    Seeds: repeat ``r`` of every grid point uses seed ``seed + r`` (common random numbers
    across the grid, so curves over a parameter are smooth).
    """

    protocol: str
    protocol_source: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    seed: int = 0
    lab: dict[str, Any] = field(default_factory=dict)
    lab_overrides: dict[str, Any] = field(default_factory=dict)
    observables: list[str] = field(default_factory=list)
    skip_s: float = 0.0
    lab_info: dict[str, float] = field(default_factory=dict)
    protocol_path: str = ""
    format: str = SPEC_FORMAT

    # ------------------------------------------------------------------ runs
    @property
    def n_points(self) -> int:
        return int(np.prod([len(v) for v in self.grid.values()])) if self.grid else 1

    @property
    def n_runs(self) -> int:
        return self.n_points * self.repeats

    def tasks(self) -> Iterator[RunTask]:
        """All runs, grid point major, repeat minor."""
        names = list(self.grid)
        run = 0
        for point, combo in enumerate(itertools.product(*(self.grid[n] for n in names))):
            for r in range(self.repeats):
                params = {**self.fixed, **dict(zip(names, combo))}
                yield RunTask(run, point, r, self.seed + r, params)
                run += 1

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What must match for a resume (all but derived lab numbers and where the protocol file was)."""
        d = self.to_dict()
        d.pop("lab_info", None)
        d.pop("protocol_path", None)
        d["protocol_source"] = hashlib.sha256(self.protocol_source.encode()).hexdigest()
        return d

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> "SweepSpec":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SweepError(f"{path}: cannot read sweep spec: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            raise SweepError(f"{path}: not a cybloid sweep spec (format {data.get('format') if isinstance(data, dict) else None!r}, "
                             f"expected {SPEC_FORMAT!r})")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise SweepError(f"{path}: unknown keys {sorted(unknown)} in sweep spec")
        try:
            return cls(**data)
        except TypeError as exc:
            raise SweepError(f"{path}: invalid sweep spec: {exc}") from None

    def check_same(self, other: "SweepSpec", where: str) -> None:
        """Raise :class:`SweepError` naming what differs if ``other`` is a different sweep."""
        a, b = self.identity(), other.identity()
        diff = sorted(k for k in set(a) | set(b) if _canon(a.get(k)) != _canon(b.get(k)))
        if diff:
            details = "; ".join(f"{k}: stored {_short(b.get(k))}, now {_short(a.get(k))}" for k in diff)
            raise SweepError(f"{where} holds a different sweep ({details}); use a new --out directory "
                             "or the same arguments to resume")


def _canon(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _short(v: Any, n: int = 80) -> str:
    s = _canon(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def parse_grid_axis(text: str, declared: Mapping[str, Any] | None = None) -> tuple[str, list[Any]]:
    """Parse ``NAME=START:STOP:COUNT`` (linear), ``NAME=START:STOP:COUNT:log`` or ``NAME=V1,V2,...``.

    ``declared`` maps parameter names to :class:`cybloid.params.Param`; values are validated
    against it (type and range) and integers stay integers.
    """
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise SweepError(f"--grid expects NAME=START:STOP:COUNT or NAME=V1,V2,..., got {text!r}")
    where = f"--grid {text!r}"
    if declared is not None and name not in declared:
        raise SweepError(f"{where}: the protocol has no parameter '{name}' (known: {', '.join(sorted(declared)) or 'none'})")
    param = declared.get(name) if declared is not None else None
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("lin", "log")):
            raise SweepError(f"{where}: expected START:STOP:COUNT or START:STOP:COUNT:log")
        try:
            start, stop = float(parts[0]), float(parts[1])
            count = int(parts[2])
        except ValueError:
            raise SweepError(f"{where}: START and STOP must be numbers and COUNT an integer") from None
        if count < 1:
            raise SweepError(f"{where}: COUNT must be at least 1")
        if not (math.isfinite(start) and math.isfinite(stop)):
            raise SweepError(f"{where}: START and STOP must be finite")
        if len(parts) == 4 and parts[3] == "log":
            if start <= 0 or stop <= 0:
                raise SweepError(f"{where}: a log grid needs positive START and STOP")
            raw: Sequence[Any] = np.geomspace(start, stop, count).tolist()
        else:
            raw = np.linspace(start, stop, count).tolist()
    else:
        raw = [v.strip() for v in spec.split(",") if v.strip()]
        if not raw:
            raise SweepError(f"{where}: no values")
    values = []
    for v in raw:
        if param is not None:
            try:
                values.append(param.validate(v, where=f"{where}: "))
            except CybloidError as exc:
                raise SweepError(str(exc)) from None
        else:
            values.append(float(v) if isinstance(v, str) else v)
    if len(set(map(repr, values))) != len(values):
        raise SweepError(f"{where}: repeated values {values} (an integer parameter rounds a fine grid?)")
    return name, values
