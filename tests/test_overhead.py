"""bench/overhead.py runs end to end on tiny numbers (its figures are for README, not asserted)."""
from __future__ import annotations

import re

import pytest


def test_the_overhead_bench_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.overhead import main

    main(["--instant", "3", "--beads", "2", "--seconds", "0.2", "--settle", "0", "--repeat", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"overhead: [\d.]+ beads/s with an instant agent; of a 2 x 0.2 s run, "
                        r"[\d.]+% is not agent time \([\d.]+% in a new repo; medians of 2\)",
                        lines[-1]), lines
    assert sum("warm repo" in line for line in lines) == 2
    assert sum("new repo" in line for line in lines) == 3  # and the last line


def test_the_overhead_bench_runs_through_a_build_server(
        capsys: pytest.CaptureFixture[str]) -> None:
    from bench.overhead import main

    main(["--instant", "3", "--beads", "2", "--seconds", "0.2", "--settle", "0", "--repeat", "1",
          "--server"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("overhead through a build server: "), lines
