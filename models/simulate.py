"""Record a session of a protocol on the simulated lab (tracks only), e.g. to train on."""

from __future__ import annotations

import contextlib
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
    with contextlib.ExitStack() as cleanup:  # run in reverse: recorder, laser off, loop, lab
        cleanup.callback(lab.close)
        cleanup.callback(loop.close)
        cleanup.callback(lab.safe_off)
        for name, term in (extra_terms or {}).items():
            loop.program.set_term(name, term)
        rec = open_recorder(out_dir, frames=images)
        cleanup.callback(rec.close)
        meta = {"seed": seed, "hardware": lab.hardware.name, "lab_profile": lab.profile.to_dict(), "realtime": False,
                **lab_metadata(lab)}
        ProtocolRunner(loop, proto, values, recorder=rec, metadata=meta).run()
    if rec.path is None:
        raise ModelError(f"{protocol}: the run recorded no session (does it yield record(True)?)")
    return Path(rec.path)
