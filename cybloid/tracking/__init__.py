"""Particle tracking: acquisition (trackpy), hot-path refinement and linking, quality flags."""

from cybloid.tracking.base import FLAG_DOUBTFUL, FLAG_LOST, FLAG_NEW, Tracks, Tracker
from cybloid.tracking.simple import SimpleTracker

__all__ = ["Tracks", "Tracker", "SimpleTracker", "FLAG_NEW", "FLAG_LOST", "FLAG_DOUBTFUL"]
