"""log, show and doctor on real repos after real builds; --json on every command."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gastown.commands.log import bead_lines, bead_view
from gastown.lock import build_lock
from tests.conftest import TWO_BEADS, git, make_repo

# a1 and a2 merge; `bad` is committed, rejected twice by its witness check, and fails,
# so its worktree and branch stay behind.
MIXED = TWO_BEADS + """\
  b:
    roles: {witness: {checks: ["false"]}}
    items:
      - {id: bad, run: "echo x > bad.txt"}
"""


@pytest.fixture
def built(tmp_path: Path, gas) -> Path:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": MIXED})
    result = gas(repo, "build")
    assert result.code == 1, result  # `bad` fails
    return repo


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split()


# -- gas log --------------------------------------------------------------------------------------

def test_log_without_a_bead_is_the_ledger_commit_log(built: Path, gas) -> None:
    shas = git(built, "log", "--format=%H", "gt-ledger").split()
    text = gas(built, "log")
    assert text.code == 0, text
    lines = text.out.splitlines()
    assert [line.split()[2] for line in lines] == [sha[:10] for sha in shas]
    assert lines[-1].endswith("gastown: start the ledger")
    data = json.loads(gas(built, "log", "--json").out)
    assert data["ledger"] == "gt-ledger"
    assert [c["commit"] for c in data["commits"]] == shas
    # a transition has its own commit, or a line in a group commit (`N transitions: ...`)
    assert any("a2: merging (attempt 1 approved)" in c["message"].splitlines()
               for c in data["commits"])
    for line, commit in zip(lines, data["commits"], strict=True):
        assert line.endswith(commit["message"].splitlines()[0])
    assert len(shas) >= 2
    assert [c["commit"] for c in json.loads(gas(built, "log", "--json", "-n", "1").out)
            ["commits"]] == shas[:1]
    assert len(gas(built, "log", "-n", "1").out.splitlines()) == 1


def test_log_of_a_merged_bead(built: Path, gas) -> None:
    data = json.loads(gas(built, "log", "a2", "--json").out)
    assert [h["state"] for h in data["history"]] == ["running", "review", "merging", "merged"]
    assert data["state"] == "merged" and data["into"] == "staging"
    [attempt] = data["attempts"]
    assert attempt["n"] == 1 and attempt["outcome"] == "approved"
    assert attempt["duration_s"] >= 0 and attempt["polecat"].startswith("Polecat-")
    assert {"refinery_s", "ci_s"} <= set(data["timings"])
    # one line per transition, in commits of their own or shared (the ledger's writer puts
    # what was queued at once into one commit)
    lines = [line for c in reversed(data["commits"]) for line in c["message"].splitlines()]
    assert [line.split()[1] for line in lines] == ["running", "review", "merging", "merged"]
    assert all(line.startswith("a2: ") for line in lines)
    text = gas(built, "log", "a2").out
    assert text.startswith("a2 (backlog a): a2\nstate: merged into staging at ")
    states = [line.split()[2] for line in text.split("history (UTC)\n")[1].split("\n\n")[0]
              .splitlines()]
    assert states == ["running", "review", "merging", "merged"]
    assert "approved" in text and "timings: " in text


def test_log_of_a_failed_bead_gives_its_reasons(built: Path, gas) -> None:
    data = json.loads(gas(built, "log", "bad", "--json").out)
    assert [h["state"] for h in data["history"]] == [
        "running", "review", "rejected", "running", "review", "rejected", "failed"]
    assert [a["outcome"] for a in data["attempts"]] == ["rejected", "rejected"]
    assert data["reason"].startswith("gave up after 2 attempt(s): check `false` failed")
    text = gas(built, "log", "bad").out
    assert "state: failed\nreason: gave up after 2 attempt(s)" in text
    assert text.count("reason: check `false` failed (exit 1)") == 2


def test_log_and_show_of_a_bead_never_built_write_nothing(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    log = gas(repo, "log", "a1")
    assert log.code == 0, log
    assert "state: pending" in log.out and "never built" in log.out
    assert "gt-ledger does not exist" in gas(repo, "log").out
    show = json.loads(gas(repo, "show", "a1", "--json").out)
    assert (show["state"], show["up_to_date"], show["why"]) == ("pending", False, "never built")
    assert gas(repo, "doctor").code == 0
    assert branches(repo) == ["main"]
    assert not (repo / ".gastown").exists()
    assert git(repo, "status", "--porcelain", "--ignored") == ""


def test_log_text_shows_usage_and_cost() -> None:
    usage = {"polecat": {"model": "m1", "input_tokens": 1200, "output_tokens": 300,
                         "usd": 0.03, "calls": 1}}
    record = {"id": "x", "title": "X", "backlog": "b", "state": "failed", "reason": "no",
              "history": [{"at": "2026-01-02T03:04:05.678Z", "state": "failed", "note": None}],
              "attempts": [{"n": 1, "polecat": "Polecat-01", "outcome": "failed",
                            "reason": "no", "started": "2026-01-02T03:04:05.000Z",
                            "ended": "2026-01-02T03:04:06.500Z", "polecat_s": 1.25,
                            "usage": usage}],
              "cost": usage}
    lines = bead_lines(bead_view("x", record, [], None))
    assert "  2026-01-02 03:04:05  failed" in lines
    assert "  #1  Polecat-01  failed  1.500s (polecat 1.250s)" in lines
    assert "     usage: polecat (m1) 1,200 in, 300 out, $0.0300" in lines
    assert lines[-1] == "cost: polecat (m1) 1,200 in, 300 out, $0.0300 (total $0.0300)"


@pytest.mark.parametrize(("command", "typo", "hint"), [
    ("log", "a3", "did you mean 'a2' or 'a1'?"),
    ("show", "bda", "did you mean 'bad'?"),
    ("show", "zzz", "`gas status` lists every bead"),
])
def test_unknown_bead_is_bad_input_with_a_hint(built: Path, gas, command: str, typo: str,
                                               hint: str) -> None:
    result = gas(built, command, typo)
    assert result.code == 2, result
    assert f"no bead '{typo}' in Gasfile.yaml or the ledger" in result.err
    assert f"hint: {hint}" in result.err and result.out == ""


def test_a_bead_removed_from_the_gasfile_still_has_its_history(built: Path, gas) -> None:
    (built / "Gasfile.yaml").write_text(TWO_BEADS)
    assert json.loads(gas(built, "log", "bad", "--json").out)["state"] == "failed"
    show = json.loads(gas(built, "show", "bad", "--json").out)
    assert show["in_gasfile"] is False and show["branch"] == "gas/bad"
    assert "not in the Gasfile" in gas(built, "show", "bad").out


# -- gas show -------------------------------------------------------------------------------------

def test_show_a_merged_bead(built: Path, gas) -> None:
    data = json.loads(gas(built, "show", "a2", "--json").out)
    assert (data["id"], data["backlog"], data["needs"], data["run"]) == (
        "a2", "a", ["a1"], "echo 2 > two")
    assert data["item"] == {"id": "a2", "run": "echo 2 > two", "needs": ["a1"]}
    assert data["roles"]["polecat"] == {"runner": "command", "model": None, "checks": []}
    assert data["fingerprint"].startswith("sha256:")
    assert data["fingerprint"] == data["recorded_fingerprint"]
    assert data["up_to_date"] is True and data["why"] is None
    assert data["state"] == "merged" and data["into"] == "staging"
    assert data["merge_commit"] in git(built, "rev-list", "staging").split()
    # merged: the refinery removed its worktree and deleted its branch
    assert (data["worktree"], data["branch"], data["diff"]) == (None, None, None)
    assert data["log"] == str(built / ".gastown" / "logs" / "a2.log")
    text = gas(built, "show", "a2").out
    assert "(up to date)" in text and "branch       none (deleted after the merge)" in text


def test_show_a_failed_bead_with_its_branch_and_diff(built: Path, gas) -> None:
    data = json.loads(gas(built, "show", "bad", "--json").out)
    assert data["state"] == "failed" and data["attempts"] == 2
    assert data["up_to_date"] is False and data["why"].startswith("failed before: gave up")
    assert data["branch"] == "gas/bad"
    assert data["worktree"] == str(built / ".gastown" / "worktrees" / "bad")
    diff = data["diff"]
    assert (diff["files"], diff["insertions"], diff["deletions"]) == (1, 1, 0)
    assert diff["against"] == "staging"
    assert diff["base"] == git(built, "merge-base", "staging", "gas/bad")
    assert "bad.txt | 1 +" in diff["stat"]
    assert data["roles"]["witness"]["checks"] == ["false"]
    assert data["prompts"] is not None and "feedback-2.txt" in data["prompt_files"]
    text = gas(built, "show", "bad").out
    assert "branch       gas/bad" in text and "bad.txt | 1 +" in text
    assert "diff         1 file(s), +1 -0 since " in text


def test_show_after_an_edit_says_the_definition_changed(built: Path, gas) -> None:
    gasfile = built / "Gasfile.yaml"
    gasfile.write_text(gasfile.read_text().replace("echo 1 > one", "echo one > one"))
    data = json.loads(gas(built, "show", "a1", "--json").out)
    assert (data["up_to_date"], data["why"]) == (False, "definition changed")
    assert data["fingerprint"] != data["recorded_fingerprint"]


# -- gas doctor -----------------------------------------------------------------------------------

def statuses(out: str) -> dict[str, str]:
    return {c["name"]: c["status"] for c in json.loads(out)["checks"]}


def test_doctor_on_a_healthy_repo(built: Path, gas) -> None:
    result = gas(built, "doctor")
    assert result.code == 0, result
    assert result.out.splitlines()[-1] == "all good"
    found = statuses(gas(built, "doctor", "--json").out)
    assert {k: v for k, v in found.items() if not k.startswith("runner ")} == {
        "git": "ok", "repository": "ok", "Gasfile": "ok", "base": "ok", "integration": "ok",
        "ledger": "ok", "build lock": "ok"}
    assert found["runner command"] == "ok"
    assert {found[f"runner {n}"] for n in ("claude", "codex", "aider")} == {"info"}
    assert "ledger          gt-ledger: schema 1, 3 record(s)" in result.out


def test_doctor_fails_when_the_integration_branch_is_checked_out(built: Path, tmp_path: Path,
                                                                 gas) -> None:
    git(built, "worktree", "add", "-q", str(tmp_path / "side"), "staging")
    result = gas(built, "doctor")
    assert result.code == 1, result
    assert f"fail  integration     staging is checked out in {tmp_path / 'side'}" in result.out
    assert "1 failed, 0 warning(s)" in result.out


def test_doctor_reports_a_broken_gasfile(built: Path, gas) -> None:
    (built / "Gasfile.yaml").write_text(TWO_BEADS.replace("needs: [a1]", "needs: [a33]"))
    result = gas(built, "doctor")
    assert result.code == 1, result
    assert ("fail  Gasfile         Gasfile.yaml:6: bead 'a2' needs 'a33', which is no bead, "
            "backlog or tag") in result.out
    assert "hint: needs name a backlog" in result.out
    assert "ok    runner command" in result.out  # loaded, if not compiled: its roles are known
    assert statuses(gas(built, "doctor", "--json").out)["ledger"] == "ok"


def test_doctor_outside_a_repository_fails_a_check(tmp_path: Path, gas) -> None:
    result = gas(tmp_path, "doctor", "--json")
    assert result.code == 1, result
    assert statuses(result.out) == {"git": "ok", "repository": "fail"}


def test_doctor_checks_the_runners_the_gasfile_uses(tmp_path: Path, gas) -> None:
    nowhere = tmp_path / "empty-bin"
    nowhere.mkdir()
    gasfile = TWO_BEADS.replace("backlogs:", f"roles:\n  witness: {{runner: claude, model: m, "
                                f"env: {{PATH: {nowhere}}}}}\nbacklogs:")
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": gasfile})
    result = gas(repo, "doctor")
    assert result.code == 1, result
    assert "fail  runner claude   claude not found on PATH; install it: npm install" in result.out


def test_doctor_warns_when_base_moved_on(built: Path, gas) -> None:
    (built / "later.txt").write_text("later\n")
    git(built, "add", "later.txt")
    git(built, "commit", "-q", "-m", "later")
    result = gas(built, "doctor")
    assert result.code == 0, result
    assert "warn  integration" in result.out and "lacks 1 commit(s) of main" in result.out


def test_inspection_works_while_a_build_holds_the_lock(built: Path, gas) -> None:
    with build_lock(built / ".gastown" / "build.lock"):
        doctor = gas(built, "doctor")
        assert doctor.code == 0, doctor
        assert f"info  build lock      a build is running (pid {os.getpid()} on " in doctor.out
        for args in (["status"], ["log"], ["log", "a1"], ["show", "bad"]):
            assert gas(built, *args).code == 0, args
    assert "ok    build lock      no build running" in gas(built, "doctor").out


# -- --json everywhere ----------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["validate"], ["graph"], ["status"], ["log"], ["log", "a1"], ["show", "a2"], ["doctor"],
], ids=lambda a: "-".join(a))
def test_every_command_prints_json(tmp_path: Path, gas, args: list[str]) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    assert gas(repo, "build").code == 0
    result = gas(repo, *args, "--json")
    assert result.code == 0, result
    assert isinstance(json.loads(result.out), dict)


def test_init_prints_json(repo: Path, gas) -> None:
    result = gas(repo, "init", "--json")
    assert result.code == 0, result
    assert json.loads(result.out) == {
        "written": ["Gasfile.yaml", "templates/prompts/polecat.md.j2",
                    "templates/prompts/witness.md.j2"], "ledger": "gt-ledger"}


def test_graph_json_is_format_json(tmp_path: Path, gas) -> None:
    repo = make_repo(tmp_path / "repo", {"Gasfile.yaml": TWO_BEADS})
    assert gas(repo, "graph", "--json").out == gas(repo, "graph", "--format", "json").out
    assert json.loads(gas(repo, "validate", "--json").out) == {
        "gasfile": "Gasfile.yaml", "valid": True, "beads": 2, "backlogs": {"a": 2},
        "dependencies": 1}


def test_demo_prints_json(tmp_path: Path, gas) -> None:
    result = gas(tmp_path, "demo", "--dir", str(tmp_path / "demo"), "--json")
    assert result.code == 0, result
    data = json.loads(result.out)
    assert data["dir"] == str(tmp_path / "demo") and data["exit_code"] == 0
    assert len(data["states"]) == 9 and set(data["states"].values()) == {"merged"}
    assert "[Refinery] MERGE" in result.err
