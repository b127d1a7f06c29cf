"""Demo migration: turn one legacy .js file into strict TypeScript (by renaming and typing it)."""
import os
import pathlib
import re

src = pathlib.Path(os.environ["GAS_BEAD_PATH"])
text = re.sub(r"function (\w+)\(value\)", r"export function \1(value: unknown): string",
              src.read_text())
text = text.replace("module.exports", "// was: module.exports")
src.with_suffix(".ts").write_text("// @ts-strict\n" + text.replace(".js:", ".ts:"))
src.unlink()
print(f"migrated {src} -> {src.with_suffix('.ts')}")
