"""Demo codemod: replace the eval line of one finding. Item data arrives as GAS_BEAD_JSON."""
import json
import os
import pathlib
import re

item = json.loads(os.environ["GAS_BEAD_JSON"])
replacement = item["replace"]
if item.get("first_try") and "GAS_FEEDBACK_FILE" not in os.environ:
    replacement = item["first_try"]  # a plausible first attempt the checks will catch
else:
    print("told last time:", pathlib.Path(os.environ.get("GAS_FEEDBACK_FILE", os.devnull))
          .read_text().splitlines()[:1])
path = pathlib.Path(item["file"])
text = re.sub(r"eval\(.*\)  # finding.*", replacement, path.read_text())
path.write_text(text)
print(f"rewrote {path}: return {replacement}")
