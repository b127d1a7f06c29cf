from __future__ import annotations

from gastown.server import entry

entry()
