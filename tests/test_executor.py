"""doit as gastown embeds it: no plugins from other installed packages, and no import of
importlib.metadata to look them up (nor of what doit's process runner and debugger need)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A package installed beside gastown that offers doit a reporter through an entry point.
ENTRY_POINTS = "[doit.REPORTER]\nloud = loud_plugin:Loud\n"
METADATA = "Metadata-Version: 2.1\nName: loud-plugin\nVersion: 1.0\n"
REPORTERS = """
import doit.plugin
plugins = doit.plugin.PluginDict()
plugins.add_plugins({}, "REPORTER")
print(sorted(plugins))
"""


def _python(code: str, site: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def _site(tmp_path: Path) -> Path:
    dist = tmp_path / "loud_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(METADATA)
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    (tmp_path / "loud_plugin.py").write_text("class Loud: pass\n")
    return tmp_path


def test_doit_takes_no_plugins_from_other_packages(tmp_path: Path) -> None:
    site = _site(tmp_path)
    assert _python(REPORTERS, site) == "['loud']"  # doit alone finds the plugin
    assert _python("import gastown.executor\n" + REPORTERS, site) == "[]"


def test_loading_doit_leaves_what_it_is_not_used_for_unimported_then_real(
        tmp_path: Path) -> None:
    """importlib.metadata (plugins), multiprocessing and pickle (doit's process runner), pdb
    (its debugger), configparser (its config files) and hashlib (md5 of file dependencies)
    stand in while doit loads; whoever imports them afterwards gets the real ones."""
    stood_in = "'importlib.metadata', 'multiprocessing', 'pickle', 'pdb', 'configparser', 'hashlib'"
    code = ("import sys, gastown.executor\n"
            f"print([m for m in ({stood_in}) if m in sys.modules])\n"
            "import importlib.metadata, multiprocessing, pickle, pdb, configparser, hashlib\n"
            "print(importlib.metadata.version('doit') != '', multiprocessing.cpu_count() > 0,"
            " pickle.loads(pickle.dumps(3)), pdb.Pdb.__module__,"
            " configparser.ConfigParser().sections(), hashlib.md5(b'').hexdigest()[:6])\n")
    assert _python(code, tmp_path).splitlines() == ["[]", "True True 3 pdb [] d41d8c"]
