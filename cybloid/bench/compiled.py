"""How much of a loop step is compiled work: the floor under any removal of Python glue.

Numba reports each call of a compiled function to an active profiler as if it were a Python
frame (named after the decorated function), so under :mod:`cProfile` a dispatcher's own time is
the compiled work of that call plus its argument unboxing and result boxing. Summed over the
project's dispatchers, that is what a step would still cost with every line of Python between
the kernels gone (a fused compiled loop would also save the boxing, about 1-3 us per call,
which is why the calls are counted too).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
from typing import Callable

PACKAGES = ("cybloid", "calibration", "drivers", "models", "protocols")
"""Top-level packages whose compiled functions count as the project's kernels."""


def project_dispatchers() -> dict[tuple[str, int, str], str]:
    """Profiler keys (file, first line, name) of every Numba dispatcher the project's imported
    modules hold, mapped to ``module.name``."""
    from numba.core.dispatcher import Dispatcher

    keys: dict[tuple[str, int, str], str] = {}
    for modname, mod in list(sys.modules.items()):
        if mod is None or modname.split(".", 1)[0] not in PACKAGES:
            continue
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, Dispatcher):
                code = obj.py_func.__code__
                keys[(code.co_filename, code.co_firstlineno, code.co_name)] = f"{obj.py_func.__module__}.{name}"
    return keys


def compiled_work(step: Callable[[], object], frames: int) -> dict:
    """Run ``step`` ``frames`` times under :mod:`cProfile`; per-frame time in the project's
    compiled functions (us, their own time as the profiler sees it) and its calls.

    Returns ``compiled_us_per_frame``, ``compiled_calls_per_frame``,
    ``profiled_step_us_per_frame`` (the whole step under the profiler, which inflates Python
    glue far more than compiled work) and ``kernels`` (us per frame of each of the five
    costliest, by ``module.name``).
    """
    if frames < 1:
        raise ValueError(f"compiled_work: frames must be >= 1, got {frames}")
    prof = cProfile.Profile()
    outer = step.__code__ if hasattr(step, "__code__") else None
    prof.enable()
    for _ in range(frames):
        step()
    prof.disable()
    keys = project_dispatchers()
    per: dict[str, float] = {}
    total_s = calls = 0.0
    step_s = 0.0
    for key, (_, ncalls, tottime, cumtime, _) in pstats.Stats(prof).stats.items():
        name = keys.get(key)
        if name is not None:
            per[name] = per.get(name, 0.0) + tottime
            total_s += tottime
            calls += ncalls
        if outer is not None and key == (outer.co_filename, outer.co_firstlineno, outer.co_name):
            step_s = cumtime
    top = sorted(per.items(), key=lambda kv: -kv[1])[:5]
    return {"compiled_us_per_frame": total_s / frames * 1e6, "compiled_calls_per_frame": calls / frames,
            "profiled_step_us_per_frame": step_s / frames * 1e6 if step_s else None,
            "kernels": {name: round(s / frames * 1e6, 2) for name, s in top}}
