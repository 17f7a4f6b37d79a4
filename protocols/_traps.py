"""Shared set-up of the trap protocols (not a protocol itself): a square grid of traps."""

from cybloid.protocol.layout import square_grid


def trap_centres(p, fov_um):
    """Centres (um) of a square grid of ``p.traps`` traps, ``p.spacing`` apart, centred in the field of view."""
    return square_grid(p.traps, p.spacing, fov_um)


def simulation(p, lab):
    """Simulated lab only: one particle in each trap."""
    return {"initial_positions_um": trap_centres(p, lab.fov_um)}
