"""Demo chore: record what the swarm did in CHANGELOG.md."""
import pathlib

lines = ["# Changelog", "", "- calc: no more eval", "- legacy: migrated to strict TypeScript:"]
lines += [f"  - {p.as_posix()}" for p in sorted(pathlib.Path("legacy").glob("*.ts"))]
pathlib.Path("CHANGELOG.md").write_text("\n".join(lines) + "\n")
print("wrote CHANGELOG.md")
