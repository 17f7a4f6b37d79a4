"""Particle tracking: acquisition (trackpy), hot-path refinement and linking, quality flags."""

from cybloid.tracking.base import (FLAG_CONTACT, FLAG_DOUBTFUL, FLAG_EDGE, FLAG_LOST, FLAG_NEW, FLAG_SHIFT, UNUSABLE,
                                   Tracker, Tracks)
from cybloid.tracking.fast import FastTracker
from cybloid.tracking.simple import SimpleTracker

__all__ = ["Tracks", "Tracker", "FastTracker", "SimpleTracker", "FLAG_NEW", "FLAG_LOST", "FLAG_DOUBTFUL",
           "FLAG_EDGE", "FLAG_CONTACT", "FLAG_SHIFT", "UNUSABLE"]
