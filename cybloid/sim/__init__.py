"""The simulated lab: Brownian colloids, a time-shared laser, a camera, modelled latencies."""

from cybloid.sim.world import SimWorld
from cybloid.sim.lab import open_simulated_lab

__all__ = ["SimWorld", "open_simulated_lab"]
