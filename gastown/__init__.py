"""gastown: run a swarm of coding agents over one repository the way make runs recipes."""
from __future__ import annotations

__version__ = "0.1.0"
