"""Finding and loading protocols: bundled names or a user's ``.py`` file."""

from __future__ import annotations

import inspect
import traceback
import types
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from cybloid.errors import ParameterError, ProtocolError
from cybloid.params import Param, Values


@dataclass
class LabInfo:
    """What a protocol may know about the lab before and while it runs (read-only)."""

    fov_um: tuple[float, float]
    frame_period_s: float
    kT: float
    gamma: float
    diffusion: float
    particle_diameter_um: float
    dry: bool = False
    simulated: bool = True

    @classmethod
    def from_profile(cls, profile, dry: bool = False, simulated: bool = True) -> "LabInfo":
        return cls(profile.fov_um, profile.frame_period_s, profile.kT, profile.gamma, profile.diffusion,
                   profile.particles.diameter_um, dry, simulated)


@dataclass
class LoadedProtocol:
    """A protocol ready to run: its generator function, declared parameters and source."""

    name: str
    path: Path
    source: str
    func: Callable[..., Any]
    params: tuple[Param, ...]
    doc: str
    simulation: Callable[..., Mapping[str, Any]] | None = None
    module: types.ModuleType | None = field(default=None, repr=False)

    def values(self, given: Mapping[str, Any] | None = None) -> Values:
        """Validated parameter values (defaults overridden by ``given``)."""
        return Values(self.params, given or {}, where=f"protocol {self.name}: ")

    @property
    def recording_optional(self) -> bool:
        """True if the protocol sets ``RECORDING_OPTIONAL = True``: a failed recording then does not
        stop the experiment (the run still ends with an error)."""
        return bool(getattr(self.module, "RECORDING_OPTIONAL", False)) if self.module is not None else False

    @property
    def summary(self) -> str:
        return (self.doc.strip().splitlines() or [""])[0]


def bundled_protocols() -> dict[str, Path]:
    """Bundled protocol names (``harmonic-trap``) and their files."""
    root = resources.files("cybloid.protocols")
    out = {}
    for p in root.iterdir():
        name = Path(str(p)).name
        if name.endswith(".py") and not name.startswith("_"):
            out[name[:-3].replace("_", "-")] = Path(str(p))
    return dict(sorted(out.items()))


def resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    bundled = bundled_protocols()
    if text in bundled:
        return bundled[text]
    if text.replace("_", "-") in bundled and not text.endswith(".py"):
        return bundled[text.replace("_", "-")]
    path = Path(text)
    if path.suffix == ".py" or path.exists() or "/" in text:
        if not path.exists():
            raise ProtocolError(f"protocol file not found: {path}")
        if not path.is_file():
            raise ProtocolError(f"protocol path is not a file: {path}")
        return path
    raise ProtocolError(f"unknown protocol '{text}' (bundled: {', '.join(bundled)}; or give a path to a .py file)")


def _protocol_frame(exc: BaseException, path: Path) -> str:
    """``file:line`` of the innermost traceback frame inside the protocol file."""
    where = str(path)
    for fs in traceback.extract_tb(exc.__traceback__):
        if Path(fs.filename) == path or fs.filename == str(path):
            where = f"{path}:{fs.lineno}"
    return where


def load_protocol(name_or_path: str | Path) -> LoadedProtocol:
    """Load a protocol; syntax and import errors name the file and line."""
    path = resolve(name_or_path).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read protocol: {exc}") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise ProtocolError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    mod_name = f"cybloid_protocol_{path.stem}"
    module = types.ModuleType(mod_name)
    module.__file__ = str(path)
    try:
        exec(code, module.__dict__)
    except Exception as exc:  # the file's top level is the user's code: any error becomes one line naming it
        raise ProtocolError(f"{_protocol_frame(exc, path)}: error while loading protocol: {type(exc).__name__}: {exc}") from None
    func = module.__dict__.get("protocol")
    if func is None or not callable(func):
        raise ProtocolError(f"{path}: defines no function 'protocol(p, lab)'")
    if not inspect.isgeneratorfunction(func):
        raise ProtocolError(f"{path}: 'protocol' must be a generator function (use 'yield' to hand steps to the runner)")
    params = module.__dict__.get("PARAMS", ())
    if not isinstance(params, (list, tuple)) or not all(isinstance(p, Param) for p in params):
        raise ProtocolError(f"{path}: PARAMS must be a list of cybloid.params.Param")
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ProtocolError(f"{path}: PARAMS declares a name twice")
    for p in params:
        try:
            p.validate(p.default)
        except ParameterError as exc:
            raise ProtocolError(f"{path}: default of parameter '{p.name}' is invalid: {exc}") from None
    sim = module.__dict__.get("simulation")
    name = path.stem.replace("_", "-")
    return LoadedProtocol(name, path, source, func, tuple(params), module.__doc__ or "", sim if callable(sim) else None, module)


def protocol_error(exc: BaseException, proto: LoadedProtocol) -> ProtocolError:
    """Wrap an exception raised by protocol code with the protocol's file and line."""
    return ProtocolError(f"{_protocol_frame(exc, proto.path)}: protocol raised {type(exc).__name__}: {exc}")

