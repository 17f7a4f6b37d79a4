"""Parameter sweeps on the simulated lab, from one machine to a Dask cluster.

:func:`run_point` runs one protocol in virtual time and reduces it to observables;
:func:`make_spec` + :func:`run_sweep` run a grid of points times seeds on a Dask scheduler
and write a tidy Parquet table; :func:`cybloid.sweep.report.write_sweep_report` plots it.
"""

from cybloid.sweep.execute import SweepResult, make_spec, run_sweep
from cybloid.sweep.observables import OBSERVABLES, RunData, register_observable
from cybloid.sweep.point import run_point
from cybloid.sweep.spec import SweepError, SweepSpec
from cybloid.sweep.store import is_sweep_dir, load_results

__all__ = ["OBSERVABLES", "RunData", "SweepError", "SweepResult", "SweepSpec", "is_sweep_dir", "load_results",
           "make_spec", "register_observable", "run_point", "run_sweep"]
