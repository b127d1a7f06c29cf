"""What the agent runners share about their CLIs: finding one on PATH and checking its version."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from gastown.bead import RoleSpec


@dataclass(frozen=True)
class Cli:
    name: str
    minimum: tuple[int, ...]
    install: str  # the command that installs it
    upgrade: str  # the command that upgrades it

    def locate(self, env: Mapping[str, str]) -> tuple[str | None, str | None]:
        """(path, None) when a recent enough CLI is on env's PATH, else (path or None, why)."""
        path = shutil.which(self.name, path=env.get("PATH"))
        if path is None:
            return None, f"{self.name} not found on PATH; install it: {self.install}"
        found = version(path)
        if found is None:
            return path, (f"cannot read the version of {path} (`{self.name} --version`); "
                          f"reinstall it: {self.install}")
        if found < self.minimum:
            return path, (f"{self.name} {dotted(found)} is older than {dotted(self.minimum)}; "
                          f"upgrade: {self.upgrade}")
        return path, None


def role_env(role: RoleSpec) -> dict[str, str]:
    """The environment a role's CLI will see: the real one plus the role's `env`."""
    return {**os.environ, **dict(role.env)}


@cache
def version(path: str) -> tuple[int, ...] | None:
    """`<cli> --version` as numbers, asked once per path."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(part) for part in found.groups() if part) if found else None


def dotted(numbers: tuple[int, ...]) -> str:
    return ".".join(map(str, numbers))
