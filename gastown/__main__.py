from __future__ import annotations

from gastown.main import entry

entry()
