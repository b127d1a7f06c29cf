"""Ledger costs at 100 and 10,000 records: python bench/ledger.py"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gastown.ledger import Ledger, transition

CHUNK = 1000
SAMPLES = 20


def make_repo(path: Path) -> Path:
    env = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README.md").write_text("bench\n")
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), *env, "commit", "-qm", "initial"], check=True)
    return path


def fill(ledger: Ledger, start: int, stop: int) -> None:
    """Records bench-<start>..bench-<stop - 1>, CHUNK to a commit."""
    for low in range(start, stop, CHUNK):
        ids = range(low, min(low + CHUNK, stop))
        records = [transition(None, bead_id=f"bench-{i}", state="pending") for i in ids]
        ledger.put_many(records, f"bench: {len(records)} records")


def mean_put(ledger: Ledger) -> float:
    """Mean seconds of one single-record transition."""
    started = time.perf_counter()
    for n in range(SAMPLES):
        record = transition(ledger.get(f"bench-{n}"), bead_id=f"bench-{n}", state="running")
        ledger.put(record, f"bench-{n}: running")
    return (time.perf_counter() - started) / SAMPLES


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gastown-bench-") as tmp:
        repo = make_repo(Path(tmp, "repo"))
        ledger = Ledger(repo)
        fill(ledger, 0, 100)
        small = mean_put(ledger)
        print(f"transition at    100 records: {small * 1000:7.1f} ms")
        fill(ledger, 100, 10_000)
        large = mean_put(ledger)
        print(f"transition at 10,000 records: {large * 1000:7.1f} ms")
        started = time.perf_counter()
        count = len(Ledger(repo).load())
        print(f"load() of {count} records:   {(time.perf_counter() - started) * 1000:7.1f} ms")
        print(f"transition cost 10000/100: {large / small:.2f}x")


if __name__ == "__main__":
    main()
