"""Session recording and reading (format ``cybloid-session/2``, ``/1`` still read; see ``docs/sessions.md``).

``open_recorder(dir)`` gives the recorder the protocol runner drives (never blocks the loop);
``open_session(path)`` reads a session back (complete or cut off by a crash).
"""

from cybloid.recording.format import FORMAT
from cybloid.recording.recorder import Recorder, open_recorder
from cybloid.recording.session import FrameStack, Session, SessionRecord, open_session

__all__ = ["FORMAT", "Recorder", "open_recorder", "Session", "SessionRecord", "FrameStack", "open_session"]
