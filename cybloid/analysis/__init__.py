"""Analysis of tracks: MSD, correlations, rotation, g(r), bond order.

Tracks are trackpy-style DataFrames with columns ``frame``, ``particle``, ``x``, ``y`` (um)
and ``t`` (s); :func:`records_to_frame` builds one from the loop's FrameRecords.
"""

from cybloid.analysis.bondorder import bond_order, mean_bond_order
from cybloid.analysis.correlation import autocorrelation, position_autocorrelation, velocity_autocorrelation
from cybloid.analysis.msd import ensemble_msd, msd
from cybloid.analysis.records import records_to_frame
from cybloid.analysis.rotation import mean_angular_velocity, unwrapped_angles
from cybloid.analysis.structure import g_of_r

__all__ = ["autocorrelation", "bond_order", "ensemble_msd", "g_of_r", "mean_angular_velocity", "mean_bond_order",
           "msd", "position_autocorrelation", "records_to_frame", "unwrapped_angles", "velocity_autocorrelation"]
