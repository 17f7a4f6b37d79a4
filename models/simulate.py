"""Record a session of a protocol on the simulated lab (tracks only), e.g. to train on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cybloid.models.errors import ModelError


def record_session(protocol: str | os.PathLike, out_dir: str | os.PathLike, params: Mapping[str, Any] | None = None,
                   *, seed: int = 0, overrides: Mapping[str, Any] | None = None, images: bool = False,
                   extra_terms: Mapping[str, Any] | None = None) -> Path:
    """Run ``protocol`` on the simulated lab in virtual time, recording into ``out_dir``.

    Returns the session directory. ``images=False`` stores tracks and forces only.
    """
    from cybloid.protocol.loader import load_protocol
    from cybloid.protocol.runner import ProtocolRunner, prepare
    from cybloid.recording import open_recorder
    from cybloid.recording.format import lab_metadata

    proto = load_protocol(str(protocol))
    lab, loop, values = prepare(proto, dict(params or {}), overrides=overrides, seed=seed)
    rec = None
    try:
        for name, term in (extra_terms or {}).items():
            loop.program.set_term(name, term)
        rec = open_recorder(out_dir, frames=images)
        meta = {"seed": seed, "hardware": lab.hardware.name, "lab_profile": lab.profile.to_dict(), "realtime": False,
                **lab_metadata(lab)}
        runner = ProtocolRunner(loop, proto, values, recorder=rec, metadata=meta)
        runner.run()
    finally:
        if rec is not None:
            rec.close()
        lab.safe_off()
        loop.close()
        lab.close()
    if rec is None or rec.path is None:
        raise ModelError(f"{protocol}: the run recorded no session (does it yield record(True)?)")
    return Path(rec.path)
