"""Learned, equivariant interaction models (torch); see docs/models.md.

* :mod:`~cybloid.models.data`, :mod:`~cybloid.models.samples` - training data from sessions,
  the applied-force target and the noise-robust drift estimator;
* :class:`RadialPair` - invariant radial pair model, exported to a tabulated pair force;
* :class:`FrameAveraged` - many-body model, exactly E(d)- and permutation-equivariant;
* :class:`OrientedPair` - SE(2) pair model of oriented particles (position-orientation attributes);
* :func:`fit_soft` - soft-equivariance training that reports how far each symmetry holds;
* :func:`train`, :func:`save_model`, :func:`load_model` - training and model files;
* :class:`LearnedPair`, :class:`LearnedManyBody`, :func:`learned_term` - models as force terms.
"""

from cybloid.models.data import FrameData, Trajectory, from_records, from_sessions, from_tracks
from cybloid.models.errors import ModelError
from cybloid.models.frame_averaged import FrameAveraged
from cybloid.models.io import list_models, load_model, save_model
from cybloid.models.orientation import OrientedPair, fit_oriented
from cybloid.models.pair import RadialPair, fit_pair
from cybloid.models.samples import Samples, applied_samples, drift_samples
from cybloid.models.soft import fit_soft
from cybloid.models.terms import LearnedManyBody, LearnedPair, learned_term, model_path
from cybloid.models.training import train

__all__ = ["FrameAveraged", "FrameData", "LearnedManyBody", "LearnedPair", "ModelError", "OrientedPair", "RadialPair",
           "Samples", "Trajectory", "applied_samples", "drift_samples", "fit_oriented", "fit_pair", "fit_soft",
           "from_records", "from_sessions", "from_tracks", "learned_term", "list_models", "load_model", "model_path", "save_model", "train"]
