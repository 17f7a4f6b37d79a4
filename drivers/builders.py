"""Hardware-profile builders of the serial drivers and camera backends, with option validation.

Each builder checks its table of the hardware profile (unknown keys, types, ranges, ports)
and raises :class:`~cybloid.errors.ProfileError` naming the file, role and key. With
``port = "emulator"`` the builder first starts the device's emulator on a pseudo terminal
(acting on the simulated world) and connects the driver to it; the emulator goes into
``ctx["resources"]`` so that ``Lab.close()`` stops it after the drivers are closed.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

from cybloid.errors import ProfileError

from .serial_link import STANDARD_BAUDRATES

EMULATOR = "emulator"
FIRMWARE = "firmware"  # steering: the reference firmware's host build (drivers/firmware/) on a pty


def _where(ctx: Mapping[str, Any], role: str) -> str:
    hw = ctx.get("hardware")
    return f"{getattr(hw, 'source', '<profile>')}: [{role}]"


def _num(lo: float, hi: float, integer: bool = False) -> Callable[[str, Any], Any]:
    def check(where: str, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            raise ProfileError(f"{where} must be {'an integer' if integer else 'a number'}, got {v!r}")
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ProfileError(f"{where} must be between {lo:g} and {hi:g}, got {v!r}")
        return int(v) if integer else float(v)
    return check


def _baud(where: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v not in STANDARD_BAUDRATES:
        raise ProfileError(f"{where} must be one of {', '.join(map(str, STANDARD_BAUDRATES))} (bit/s), got {v!r}")
    return v


def _port(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ProfileError(f"{where} must be a device path (e.g. /dev/ttyUSB0, COM3), a pyserial URL or "
                           f"'{EMULATOR}', got {v!r}")
    v = v.strip()
    if v in (EMULATOR, FIRMWARE) or "://" in v or v.upper().startswith("COM"):
        return v
    if not os.path.exists(v):
        raise ProfileError(f"{where}: serial port {v!r} does not exist (is the device plugged in? "
                           f"use port = \"{EMULATOR}\" for its emulator)")
    return v


def _bool(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ProfileError(f"{where} must be true or false, got {v!r}")
    return v


def _str(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ProfileError(f"{where} must be a non-empty string, got {v!r}")
    return v


def _source(where: str, v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0) or v == "":
        raise ProfileError(f"{where} must be a camera index (0, 1, ...) or a file path/URL, got {v!r}")
    return v


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(where: str, v: Any) -> str:
        if v not in allowed:
            raise ProfileError(f"{where} must be one of {', '.join(allowed)}, got {v!r}")
        return v
    return check


def _span(where: str, v: Any) -> tuple[float, float]:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
    if not ok or not v[0] < v[1]:
        raise ProfileError(f"{where} must be [low, high] in um with low < high, got {v!r}")
    return float(v[0]), float(v[1])


def options(role: str, opts: Mapping[str, Any], ctx: Mapping[str, Any], schema: dict[str, tuple], ) -> dict[str, Any]:
    """Validated options: ``schema`` maps key -> (check, default); default ``...`` means required."""
    where = _where(ctx, role)
    out: dict[str, Any] = {}
    for k in opts:
        if k != "driver" and k not in schema:
            raise ProfileError(f"{where} unknown key '{k}' for driver '{opts.get('driver')}' "
                               f"(known: {', '.join(sorted(schema))})")
    for k, (check, default) in schema.items():
        if k in opts:
            out[k] = check(f"{where} {k}", opts[k])
        elif default is ...:
            raise ProfileError(f"{where} driver '{opts.get('driver')}' needs '{k}'")
        else:
            out[k] = default
    return out


# ---------------------------------------------------------------------- serial devices
STEERING = {"port": (_port, ...), "baudrate": (_baud, 921600), "timeout_s": (_num(0.001, 60), 0.2),
            "retries": (_num(0, 10, True), 1), "heartbeat_timeout_ms": (_num(10, 60000, True), None)}
LASER = {"port": (_port, ...), "baudrate": (_baud, 115200), "timeout_s": (_num(0.001, 60), 0.5),
         "max_power_mW": (_num(0.001, 1e6), None), "poll_s": (_num(0.0, 60), 0.25), "rearm_s": (_num(0, 600), 1.0),
         "on_timeout_s": (_num(0.1, 3600), 120.0), "line": (_num(1, 9, True), None),
         "family": (_choice("dpl", "mld"), "dpl")}
STAGE = {"port": (_port, ...), "baudrate": (_baud, 9600), "timeout_s": (_num(0.001, 60), 0.5),
         "move_timeout_s": (_num(0.01, 600), 10.0), "travel_um": (_num(0.0, 1e6), 25000.0),
         "speed_percent": (_num(1, 1000, True), None), "acceleration_percent": (_num(1, 1000, True), None),
         "resolution_um": (_num(0.001, 10), 0.1), "travel_x_um": (_span, None), "travel_y_um": (_span, None)}
OPENCV = {"source": (_source, 0), "exposure_s": (_num(0, 10), None), "readout_s": (_num(0, 10), 0.0),
          "width_px": (_num(1, 65536, True), None), "height_px": (_num(1, 65536, True), None),
          "fps": (_num(0.001, 1e5), None)}
TIFF = {"path": (_str, ...), "fps": (_num(0.001, 1e5), None), "exposure_s": (_num(0, 10), None),
        "readout_s": (_num(0, 10), None), "loop": (_bool, False)}


def build_steering(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .steering import SerialSteering

    o = options("steering", opts, ctx, STEERING)
    port = o["port"]
    if port == EMULATOR:
        from .emulate_steering import SteeringEmulator

        hb = (o["heartbeat_timeout_ms"] or 1000) / 1000.0
        emu = SteeringEmulator(ctx["world"], ctx["clock"], ctx["truth"], heartbeat_timeout_s=hb).start()
        ctx["resources"].append(emu)
        port = emu.port
    elif port == FIRMWARE:
        from .emulate_firmware import FirmwareEmulator

        hb = (o["heartbeat_timeout_ms"] or 1000) / 1000.0
        emu = FirmwareEmulator(ctx["world"], ctx["clock"], ctx["truth"], heartbeat_timeout_s=hb).start()
        ctx["resources"].append(emu)
        port = emu.port
    return SerialSteering(port, ctx["clock"], o["baudrate"], o["timeout_s"], o["retries"], o["heartbeat_timeout_ms"])


def build_laser(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .laser import CoboltLaser

    o = options("laser", opts, ctx, LASER)
    prof = ctx["profile"]
    rated = o["max_power_mW"] or prof.laser.max_power_mW
    port = o["port"]
    if port == EMULATOR:
        from .emulate_laser import LaserEmulator

        emu = LaserEmulator(ctx["world"], max_power_mW=prof.laser.max_power_mW).start()
        ctx["resources"].append(emu)
        port = emu.port
    limit = getattr(getattr(ctx.get("hardware"), "limits", None), "max_power_mW", math.inf)
    return CoboltLaser(port, o["baudrate"], o["timeout_s"], rated, limit, o["poll_s"], o["rearm_s"],
                       on_timeout_s=o["on_timeout_s"], line=o["line"], family=o["family"])


def build_stage(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .stage import ProScanStage

    o = options("stage", opts, ctx, STAGE)
    port = o["port"]
    if port == EMULATOR:
        from .emulate_stage import StageEmulator

        emu = StageEmulator(ctx["world"], travel_um=o["travel_um"]).start()
        ctx["resources"].append(emu)
        port = emu.port
    return ProScanStage(port, o["baudrate"], o["timeout_s"], o["move_timeout_s"], o["travel_um"], o["speed_percent"],
                        resolution_um=o["resolution_um"], travel_x_um=o["travel_x_um"], travel_y_um=o["travel_y_um"],
                        acceleration_percent=o["acceleration_percent"])


def build_opencv_camera(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .cameras import OpenCVCamera

    o = options("camera", opts, ctx, OPENCV)
    c = ctx["profile"].camera
    return OpenCVCamera(o["source"], ctx["clock"], o["exposure_s"] if o["exposure_s"] is not None else c.exposure_s,
                        o["readout_s"], o["width_px"], o["height_px"], o["fps"] or c.fps)


def build_tiff_camera(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .cameras import TiffStackCamera

    o = options("camera", opts, ctx, TIFF)
    prof = ctx["profile"]
    return TiffStackCamera(o["path"], ctx["clock"], o["fps"] or prof.camera.fps,
                           o["exposure_s"] if o["exposure_s"] is not None else prof.camera.exposure_s,
                           o["readout_s"] if o["readout_s"] is not None else prof.latency.readout_s, o["loop"])


# ---------------------------------------------------------------------- asynchronous scientific cameras
def _roi(where: str, v: Any) -> tuple[int, int, int, int]:
    if not (isinstance(v, (list, tuple)) and len(v) == 4 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                   and x >= 0 for x in v)) or v[2] < 1 or v[3] < 1:
        raise ProfileError(f"{where} must be [x, y, width, height] in pixels, got {v!r}")
    return tuple(v)


def _props(where: str, v: Any) -> dict:
    if not isinstance(v, Mapping) or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool)
                                             for x in v.values()):
        raise ProfileError(f"{where} must be a table of property = value (strings or numbers), got {v!r}")
    return dict(v)


BASLER = {"serial": (_str, None), "emulation": (_bool, False), "exposure_s": (_num(1e-6, 10), None),
          "gain_dB": (_num(-20, 60), None), "fps": (_num(0.01, 1e5), None), "width_px": (_num(1, 65536, True), None),
          "height_px": (_num(1, 65536, True), None), "offset_x_px": (_num(0, 65536, True), 0),
          "offset_y_px": (_num(0, 65536, True), 0), "pixel_format": (_str, "Mono8"), "readout_s": (_num(0, 10), 0.0),
          "ring_size": (_num(2, 1024, True), 8)}
MICROMANAGER = {"config": (_str, "demo"), "adapters": (_str, "mm-test-adapters"), "camera": (_str, None),
                "exposure_s": (_num(1e-6, 10), None), "gain": (_num(-1e6, 1e6), None), "fps": (_num(0.01, 1e5), None),
                "roi": (_roi, None), "properties": (_props, {}), "readout_s": (_num(0, 10), 0.0),
                "ring_size": (_num(2, 1024, True), 8), "buffer_MB": (_num(8, 65536, True), 256),
                "timestamp_tag": (_str, "ElapsedTime-ms"), "timestamp_unit_s": (_num(1e-12, 1e3), 1e-3),
                "timestamp_kind": (_str, "adapter"), "frame_counter_tag": (_str, "ImageNumber")}


def build_basler_camera(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .camera_basler import BaslerCamera

    o = options("camera", opts, ctx, BASLER)
    c = ctx["profile"].camera
    return BaslerCamera(ctx["clock"], o["serial"], o["emulation"],
                        o["exposure_s"] if o["exposure_s"] is not None else c.exposure_s, o["gain_dB"],
                        o["fps"] or c.fps, o["width_px"], o["height_px"], o["offset_x_px"], o["offset_y_px"],
                        o["pixel_format"], o["readout_s"], o["ring_size"])


def build_micromanager_camera(opts: Mapping[str, Any], ctx: dict) -> Any:
    from .camera_mm import MicroManagerCamera

    o = options("camera", opts, ctx, MICROMANAGER)
    c = ctx["profile"].camera
    return MicroManagerCamera(ctx["clock"], o["config"], o["adapters"], o["camera"],
                              o["exposure_s"] if o["exposure_s"] is not None else c.exposure_s, o["gain"],
                              o["fps"] or c.fps, o["roi"], o["properties"], o["readout_s"], o["ring_size"],
                              o["buffer_MB"], o["timestamp_tag"], o["timestamp_unit_s"], o["timestamp_kind"],
                              o["frame_counter_tag"])
