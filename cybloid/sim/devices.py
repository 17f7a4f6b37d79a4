"""Simulated devices acting on a :class:`SimWorld`: steering, laser, stage."""

from __future__ import annotations

import numpy as np

from cybloid.devices import SteeringAck
from cybloid.frame import SpotTable
from cybloid.sim.world import SimWorld


class SimSteering:
    """Beam steering: maps steering units to the sample with the setup's *true* map."""

    def __init__(self, world: SimWorld, clock, true_calibration) -> None:
        self.world = world
        self.clock = clock
        self.truth = true_calibration
        self.tables_sent = 0
        self.blanked = True

    def send(self, table: SpotTable, t_sent: float) -> SteeringAck:
        lat = self.world.profile.latency.actuation_s
        tick = self.world.ticks(t_sent + lat)
        n = len(table)
        if n:
            su = np.empty((n, 2))
            su[:, 0] = table.x_su
            su[:, 1] = table.y_su
            spots = self.truth.steer_to_um(su)
        else:
            spots = np.zeros((0, 2))
        self.world.schedule_spots(tick, spots, table.share.astype(float))
        self.tables_sent += 1
        self.blanked = len(table) == 0
        return SteeringAck(tick * self.world.dt, len(table))

    def blank(self) -> None:
        self.world.clear_spots_now()
        self.blanked = True

    def heartbeat(self) -> None:
        pass

    def close(self) -> None:
        self.blank()


class SimLaser:
    """Trapping laser: on/off and power; the world's spot forces scale with power."""

    def __init__(self, world: SimWorld, max_power_mW: float) -> None:
        self.world = world
        self.max_power_mW = max_power_mW
        self._power = max_power_mW
        self.on_count = 0

    @property
    def is_on(self) -> bool:
        return self.world.laser_on

    def on(self) -> None:
        self.world.laser_on = True
        self.on_count += 1

    def off(self) -> None:
        self.world.laser_on = False

    def set_power(self, power_mW: float) -> None:
        p = float(np.clip(power_mW, 0.0, self.max_power_mW))
        self._power = p
        self.world.power_frac = p / self.max_power_mW if self.max_power_mW > 0 else 0.0

    def power_mW(self) -> float:
        return self._power

    def close(self) -> None:
        self.off()


class SimStage:
    """Sample stage; a move shifts the whole field of view at once."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world

    def position(self) -> tuple[float, float]:
        return float(self.world.stage_um[0]), float(self.world.stage_um[1])

    def move_to(self, x_um: float, y_um: float) -> None:
        self.world.stage_um = np.array([x_um, y_um], dtype=float)

    def move_by(self, dx_um: float, dy_um: float) -> None:
        self.move_to(self.world.stage_um[0] + dx_um, self.world.stage_um[1] + dy_um)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
