"""Test support (not a test module): run a bundled protocol on the simulated lab and keep its records."""

from cybloid.protocol.loader import load_protocol
from cybloid.protocol.runner import ProtocolRunner, prepare


def run_protocol(name, values, overrides, seed=0, **lab_options):
    """Run protocol ``name`` to its end in virtual time; return ``(proto, lab, values, records)``.

    ``lab_options`` go to :func:`cybloid.protocol.runner.prepare` (e.g. ``calibration``). The
    lab is closed afterwards; the run must end normally with the laser off.
    """
    proto = load_protocol(name)
    lab, loop, vals = prepare(proto, values, overrides=overrides, seed=seed, **lab_options)
    records = []
    loop.add_sink(records.append)
    loop.keep_images = False
    try:
        summary = ProtocolRunner(loop, proto, vals).run()
    finally:
        loop.close()
        lab.close()
    assert summary.status == "done" and not summary.laser_on_at_end
    return proto, lab, vals, records


def run_frames(lab, loop, n_frames):
    """Warm ``loop`` up, switch the laser on and step ``n_frames`` frames; return the records.

    The laser is switched off and the loop and lab are closed whatever happens.
    """
    records = []
    loop.add_sink(records.append)
    try:
        loop.warm_up()
        lab.laser.on()
        for _ in range(n_frames):
            loop.step()
    finally:
        lab.safe_off()
        loop.close()
        lab.close()
    return records
