"""Beam steering from a National Instruments DAQ's analog outputs (``driver = "nidaq"``).

Galvo mirrors or VCO-driven AODs take the x and y voltages of two AO channels; the beam is
blanked through a digital line (AOD RF switch / laser modulation, True = on) or through a third
AO channel that sets the AOD RF amplitude. Every frame the driver builds a hardware-timed
waveform that visits the table's spots with dwell times proportional to their shares
(:mod:`cybloid.drivers.nidaq_waveform`) and queues it behind the one playing. Regeneration is
off: if the host stops sending, the output runs dry and holds its last sample, which is always
blanked (the beam goes off within the queued frames, like CBSP/1's heartbeat); :meth:`blank`
stops the timed output at once and writes beam-off statically.

The DAQ is reached through a small backend (:class:`NidaqmxBackend`: the ``nidaqmx`` package
and NI-DAQmx runtime); tests pass a recording fake backend instead.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cybloid.devices import SteeringAck
from cybloid.errors import DeviceError
from cybloid.frame import SpotTable

from .nidaq_waveform import Waveform, WaveformConfig, build_waveform, next_phase

log = logging.getLogger(__name__)

QUEUE_FRAMES = 2  # output buffer: the frame playing and the next one


class NidaqmxBackend:
    """The real DAQ through ``nidaqmx``; refuses in one line without the package or the runtime."""

    def __init__(self) -> None:
        try:
            import nidaqmx
            from nidaqmx import constants, errors
        except ImportError:
            raise DeviceError("nidaq: the Python package 'nidaqmx' is not installed (pip install 'cybloid[daq]'; "
                              "it also needs NI's NI-DAQmx driver)") from None
        try:
            version = nidaqmx.system.System.local().driver_version
        except errors.DaqNotFoundError:
            raise DeviceError("nidaq: the NI-DAQmx driver (runtime) is not installed on this machine; install "
                              "NI-DAQmx from ni.com (Linux: the ni-daqmx package) or use another steering "
                              "driver") from None
        except errors.Error as exc:
            raise DeviceError(f"nidaq: NI-DAQmx is not usable: {str(exc).splitlines()[0]}") from None
        log.info("nidaq: NI-DAQmx %s.%s", version.major_version, version.minor_version)
        self.nidaqmx, self.c, self.errors = nidaqmx, constants, errors

    def _err(self, what: str, exc: Exception) -> DeviceError:
        return DeviceError(f"nidaq: {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    def open_timed(self, ao: list[str], lo: float, hi: float, do_line: str | None, rate_hz: float,
                   buffer_samples: int) -> Any:
        c = self.c
        try:
            ao_task = self.nidaqmx.Task()
            for ch in ao:
                ao_task.ao_channels.add_ao_voltage_chan(ch, min_val=lo, max_val=hi)
            ao_task.timing.cfg_samp_clk_timing(rate_hz, sample_mode=c.AcquisitionType.CONTINUOUS,
                                               samps_per_chan=buffer_samples)
            ao_task.out_stream.regen_mode = c.RegenerationMode.DONT_ALLOW_REGENERATION
            do_task = None
            if do_line:
                dev = ao[0].strip("/").split("/")[0]
                do_task = self.nidaqmx.Task()
                do_task.do_channels.add_do_chan(do_line, line_grouping=c.LineGrouping.CHAN_PER_LINE)
                do_task.timing.cfg_samp_clk_timing(rate_hz, source=f"/{dev}/ao/SampleClock",
                                                   sample_mode=c.AcquisitionType.CONTINUOUS,
                                                   samps_per_chan=buffer_samples)
                do_task.out_stream.regen_mode = c.RegenerationMode.DONT_ALLOW_REGENERATION
        except self.errors.Error as exc:
            raise self._err("configuring the output tasks failed", exc) from None
        return {"ao": ao_task, "do": do_task}

    def write(self, h: Any, volts: np.ndarray, beam_on: np.ndarray | None, timeout_s: float) -> None:
        try:
            if h["do"] is not None:
                h["do"].write(beam_on.tolist(), auto_start=False, timeout=timeout_s)
            h["ao"].write(volts if volts.shape[0] > 1 else volts[0], auto_start=False, timeout=timeout_s)
        except self.errors.Error as exc:
            raise self._err("writing the waveform failed (output underflow: the host was late?)", exc) from None

    def start(self, h: Any) -> None:
        try:
            if h["do"] is not None:
                h["do"].start()  # armed first: it runs on the AO sample clock
            h["ao"].start()
        except self.errors.Error as exc:
            raise self._err("starting the output failed", exc) from None

    def queued(self, h: Any) -> int:
        s = h["ao"].out_stream
        return int(s.curr_write_pos - s.total_samp_per_chan_generated)

    def close(self, h: Any) -> None:
        for key in ("ao", "do"):
            t = h.get(key)
            if t is not None:
                try:
                    t.stop()
                    t.close()
                except self.errors.Error as exc:
                    log.warning("nidaq: closing the %s task: %s", key, exc)

    def write_static(self, ao: list[str], volts: list[float], do_line: str | None, beam_on: bool) -> None:
        try:
            if do_line:
                with self.nidaqmx.Task() as t:
                    t.do_channels.add_do_chan(do_line)
                    t.write(bool(beam_on), auto_start=True)
            with self.nidaqmx.Task() as t:
                for ch in ao:
                    t.ao_channels.add_ao_voltage_chan(ch)
                t.write(volts if len(volts) > 1 else volts[0], auto_start=True)
        except self.errors.Error as exc:
            raise self._err("writing beam-off failed", exc) from None


class NidaqSteering:
    """The steering device on DAQ analog outputs.

    Parameters
    ----------
    cfg : WaveformConfig
        Timing, voltage ranges and limits, blanking mode.
    clock : lab clock
    ao_x, ao_y : str
        Physical AO channels of the two axes (e.g. ``Dev1/ao0``).
    blank_line : str
        Digital line of the beam enable (``blank = "digital"``), e.g. ``Dev1/port0/line0``.
    ao_amplitude : str
        AO channel of the AOD amplitude (``blank = "amplitude"``).
    backend : object, optional
        The DAQ access; :class:`NidaqmxBackend` if None.
    """

    def __init__(self, cfg: WaveformConfig, clock, ao_x: str = "Dev1/ao0", ao_y: str = "Dev1/ao1",
                 blank_line: str = "Dev1/port0/line0", ao_amplitude: str = "Dev1/ao2", backend=None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.backend = backend if backend is not None else NidaqmxBackend()
        self.ao = [ao_x, ao_y] + ([ao_amplitude] if cfg.blank == "amplitude" else [])
        self.do_line = blank_line if cfg.blank == "digital" else None
        self._task = None
        self._phase = 0.0
        self._last: SpotTable | None = None
        self.blanked = True
        self.stats = {"tables": 0, "clipped_spots": 0, "saturated_frames": 0, "restarts": 0}
        self.last_waveform: Waveform | None = None
        self.blank()

    # ------------------------------------------------------------------ output
    def _queue(self, table: SpotTable) -> int:
        """Build and queue one frame; returns the samples queued ahead of it."""
        w = build_waveform(table.x_su, table.y_su, table.share, self.cfg, self._phase)
        self._phase = next_phase(self._phase, self.cfg)
        self.last_waveform = w
        if w.clipped:
            self.stats["clipped_spots"] += w.clipped
            log.warning("nidaq: %d spots outside the voltage limits clipped", w.clipped)
        if w.saturated:
            self.stats["saturated_frames"] += 1
        b, n = self.backend, self.cfg.samples_per_frame
        timeout = 2 * self.cfg.frame_s + 1.0
        if self._task is None:  # (re)start: prime the buffer with this frame twice, then run
            self._task = b.open_timed(self.ao, *self.cfg.limit_volts, self.do_line, self.cfg.rate_hz, QUEUE_FRAMES * n)
            for _ in range(QUEUE_FRAMES):
                b.write(self._task, w.volts, w.beam_on, timeout)
            b.start(self._task)
            return 0
        ahead = b.queued(self._task)
        b.write(self._task, w.volts, w.beam_on, timeout)
        return ahead

    def send(self, table: SpotTable, t_sent: float) -> SteeringAck:
        """Queue the table's waveform; it plays after the samples already queued."""
        try:
            ahead = self._queue(table)
        except DeviceError:
            self._drop_task()
            self.stats["restarts"] += 1
            raise
        self._last = table
        self.blanked = len(table) == 0
        self.stats["tables"] += 1
        return SteeringAck(t_sent + ahead / self.cfg.rate_hz, len(table))

    def heartbeat(self) -> None:
        """Keep the output fed with the last table (the output blanks on its own if nothing is fed)."""
        if self._task is not None and self._last is not None:
            self._queue(self._last)

    def _drop_task(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            self.backend.close(task)

    def blank(self) -> None:
        """Stop the timed output now and write beam off (digital line low / zero amplitude)."""
        self._drop_task()
        cx = 0.5 * sum(self.cfg.x_volts)
        cy = 0.5 * sum(self.cfg.y_volts)
        volts = [cx, cy] + ([0.0] if self.cfg.blank == "amplitude" else [])
        self.backend.write_static(self.ao, volts, self.do_line, False)
        self.blanked = True
        self._last = None

    def close(self) -> None:
        self.blank()


# ---------------------------------------------------------------------- hardware-profile builder
def _pair(where: str, v: Any) -> tuple[float, float]:
    from cybloid.errors import ProfileError

    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) <= 10.5 for x in v)
            or v[0] == v[1]):
        raise ProfileError(f"{where} must be [volts at 0, volts at 65535] within +-10.5 V, got {v!r}")
    return float(v[0]), float(v[1])


def _blank_mode(where: str, v: Any) -> str:
    from cybloid.errors import ProfileError

    if v not in ("digital", "amplitude"):
        raise ProfileError(f"{where} must be \"digital\" (a beam-enable line) or \"amplitude\" (AOD RF amplitude "
                           f"on an AO channel), got {v!r}")
    return v


def _schema() -> dict:
    from .builders import _num, _str

    return {"ao_x": (_str, "Dev1/ao0"), "ao_y": (_str, "Dev1/ao1"), "blank": (_blank_mode, "digital"),
            "blank_line": (_str, "Dev1/port0/line0"), "ao_amplitude": (_str, "Dev1/ao2"),
            "amplitude_volts": (_num(0, 10), 1.0), "rate_hz": (_num(1e3, 1e7), 100_000.0),
            "cycle_s": (_num(1e-5, 0.1), 0.001), "x_volts": (_pair, (-5.0, 5.0)), "y_volts": (_pair, (-5.0, 5.0)),
            "limit_volts": (_pair, (-10.0, 10.0)), "slew_v_per_s": (_num(1.0, 1e9), 2.0e5)}


def build_nidaq_steering(opts, ctx: dict) -> NidaqSteering:
    """``driver = "nidaq"`` in a hardware profile's [steering] table (docs/drivers.md)."""
    from cybloid.errors import ProfileError

    from .builders import _where, options

    o = options("steering", opts, ctx, _schema())
    try:
        cfg = WaveformConfig(rate_hz=o["rate_hz"], frame_s=ctx["profile"].frame_period_s, cycle_s=o["cycle_s"],
                             x_volts=o["x_volts"], y_volts=o["y_volts"], limit_volts=tuple(sorted(o["limit_volts"])),
                             slew_v_per_s=o["slew_v_per_s"], blank=o["blank"], amplitude_volts=o["amplitude_volts"])
    except Exception as exc:
        raise ProfileError(f"{_where(ctx, 'steering')} {exc}") from None
    return NidaqSteering(cfg, ctx["clock"], o["ao_x"], o["ao_y"], o["blank_line"], o["ao_amplitude"])
