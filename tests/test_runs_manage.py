"""Delete, restore and purge; labels, tags, marks and comments; check
--space: through the real CLI, with crash safety checked by injecting
failures between steps."""

from __future__ import annotations

import json
import os
import time

import pytest

from guild_core import store
from guild_core.run import Run


@pytest.fixture
def three(cli, guild_home, project):
    """Three completed runs of train.py, x=1..3 (x=3 newest)."""
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 3):
        assert cli("run", "train.py", f"x={x}", "-y").exit_code == 0
    return guild_home


def ids(home, where="runs"):
    root = home / where if where == "runs" else home / "trash" / "runs"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def every_run_once(home, expected: set[str]) -> None:
    live, trash = ids(home), ids(home, "trash")
    assert not set(live) & set(trash), "a run is listed twice"
    assert set(live) | set(trash) == expected, "a run was lost"
    for root in (home / "runs", home / "trash" / "runs"):
        for name in ids(home, "runs" if root.name == "runs" and root.parent == home else "trash"):
            assert Run(name, root / name).get("flags") is not None


def test_delete_shows_runs_and_asks(cli, three):
    before = ids(three)
    out = cli("runs", "delete", input="n\n")
    assert out.exit_code == 1
    assert "You are about to delete the following runs:" in out.stderr
    assert "Delete 3 run(s)? (Y/n)" in out.output
    assert ids(three) == before
    out = cli("runs", "delete", "1", input="y\n")
    assert out.exit_code == 0
    assert "Deleted 1 run(s)" in out.stderr
    assert len(ids(three)) == 2 and len(ids(three, "trash")) == 1


def test_delete_restore_purge_cycle(cli, three):
    all_ids = set(ids(three))
    assert cli("runs", "delete", "-y", "-F", "x >= 2").stderr.strip() == "Deleted 2 run(s)"
    listed = json.loads(cli("runs", "list", "-d", "--json").output)
    assert sorted(r["id"] for r in listed) == ids(three, "trash")
    assert [r["status"] for r in listed] == ["completed", "completed"]
    out = cli("runs", "restore", "-y", "-F", "x = 3")
    assert out.stderr.strip() == "Restored 1 run(s)"
    every_run_once(three, all_ids)
    out = cli("runs", "purge", input="n\n")
    assert out.exit_code == 1 and "Permanently delete 1 run(s)? (y/N)" in out.output
    assert len(ids(three, "trash")) == 1
    out = cli("runs", "purge", "-y")
    assert out.stderr.strip() == "Purged 1 run(s)"
    assert ids(three, "trash") == [] and len(ids(three)) == 2
    assert cli("runs", "purge", "-y").stderr.strip() == "Nothing to purge."


def test_permanent_delete_warns(cli, three):
    out = cli("runs", "delete", "-p", "1", input="\n")
    # The default answer to a permanent delete is no.
    assert out.exit_code == 1 and len(ids(three)) == 3
    assert "WARNING: You are about to permanently delete the following runs:" in out.stderr
    out = cli("runs", "rm", "-p", "-y", "1")
    assert out.exit_code == 0 and "Deleted 1 run(s)" in out.stderr
    assert len(ids(three)) == 2 and ids(three, "trash") == []
    assert not [p for p in (three / "runs").iterdir() if p.name.startswith(".")]


def test_restore_never_overwrites(cli, three):
    run_id = ids(three)[0]
    cli("runs", "delete", "-y", run_id)
    # The same id back in the runs (a copy imported meanwhile).
    import shutil

    shutil.copytree(three / "trash" / "runs" / run_id, three / "runs" / run_id)
    (three / "runs" / run_id / "marker").write_text("live copy")
    out = cli("runs", "restore", "-y", run_id)
    assert out.exit_code == 1
    assert out.stderr.strip() == f"guild: run {run_id} already exists; it is not restored"
    assert (three / "runs" / run_id / "marker").read_text() == "live copy"
    assert (three / "trash" / "runs" / run_id).is_dir()


def test_delete_running_run_needs_force(cli, guild_home, project):
    project.write("slow.py", "import time\ntime.sleep(60)\n")
    assert cli("run", "slow.py", "--background", "-y").exit_code == 0
    run_dir = next((guild_home / "runs").iterdir())
    deadline = time.time() + 10
    while Run.for_dir(run_dir).status != "running" and time.time() < deadline:
        time.sleep(0.05)
    out = cli("runs", "delete", "-y")
    assert out.exit_code == 1
    assert out.stderr.startswith(f"guild: cannot delete running run(s) {run_dir.name[:8]}")
    assert run_dir.is_dir()
    pid = Run.for_dir(run_dir).pid
    out = cli("runs", "delete", "-y", "--force")
    assert out.exit_code == 0, out.stderr
    assert f"Stopping {run_dir.name}" in out.stderr and "Deleted 1 run(s)" in out.stderr
    deleted = Run(run_dir.name, guild_home / "trash" / "runs" / run_dir.name)
    assert deleted.status == "terminated"
    with pytest.raises(OSError):
        os.kill(pid, 0)


class Boom(Exception):
    pass


def _fail_after(monkeypatch, n: int, name: str = "rename"):
    real = getattr(os, name)
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] > n:
            raise Boom(f"killed after {n} {name}s")
        return real(*args, **kw)

    monkeypatch.setattr(os, name, flaky)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_killed_delete_loses_nothing(cli, three, monkeypatch, after):
    all_ids = set(ids(three))
    with monkeypatch.context() as m, pytest.raises(Boom):
        _fail_after(m, after)
        cli("runs", "delete", "-y")
    every_run_once(three, all_ids)
    assert len(ids(three, "trash")) == after
    # The command can simply be run again.
    assert cli("runs", "delete", "-y").exit_code == 0
    every_run_once(three, all_ids)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_killed_restore_loses_nothing(cli, three, monkeypatch, after):
    all_ids = set(ids(three))
    cli("runs", "delete", "-y")
    with monkeypatch.context() as m, pytest.raises(Boom):
        _fail_after(m, after)
        cli("runs", "restore", "-y")
    every_run_once(three, all_ids)
    assert len(ids(three)) == after


def test_killed_purge_leaves_no_half_run(cli, sh, three):
    cli("runs", "delete", "-y")
    trash = three / "trash" / "runs"
    # Killed (kill -9) while removing the files of the first run: it is
    # already out of every listing, and the next command cleans up.
    out = sh("runs", "purge", "-y", env={"GUILD_FAULTS": "store.remove.hidden=kill"})
    assert out.exit_code == -9
    assert len(ids(three, "trash")) == 2
    assert any(n.startswith(".deleting-") for n in os.listdir(trash))
    listed = cli("runs", "list", "-d", "--json")
    assert len(json.loads(listed.output)) == 2
    assert "Cleaned up 1 leftover of an interrupted guild command" in listed.stderr
    assert not [n for n in os.listdir(trash) if n.startswith(".")]
    assert cli("runs", "purge", "-y").exit_code == 0
    assert os.listdir(trash) == []


# -- labels, tags, marks, comments ---------------------------------------


def attrs(cli, spec="1"):
    return json.loads(cli("runs", "info", spec, "--json").output)


def test_label_operations(cli, three):
    assert attrs(cli)["label"] == "x=3"
    out = cli("runs", "label", "-s", "best x=${x}", "-y")
    assert out.stderr.strip() == "Labeled 1 run(s)"
    assert attrs(cli)["label"] == "best x=3"
    cli("runs", "label", "-p", "new", "-y")
    cli("runs", "label", "-a", "(${label})", "-y")
    assert attrs(cli)["label"] == "new best x=3 (new best x=3)"
    cli("runs", "label", "-s", "a b c b", "-y")
    cli("runs", "label", "-rm", "b", "-rm", "c", "-y")
    assert attrs(cli)["label"] == "a"
    out = cli("runs", "label", "-c", "-y", ":")
    assert out.stderr.strip() == "Cleared label for 3 run(s)"
    assert [attrs(cli, str(i))["label"] for i in (1, 2, 3)] == ["", "", ""]
    out = cli("runs", "label", "-s", "x", "-a", "y")
    assert out.exit_code == 2 and "--set and --append cannot be used together" in out.stderr
    out = cli("runs", "label", "2", input="y\n")
    assert out.exit_code == 2


def test_label_asks_first(cli, three):
    out = cli("runs", "label", "-s", "z", ":", input="n\n")
    assert out.exit_code == 1
    assert "You are about to label the following runs with 'z':" in out.stderr
    assert attrs(cli)["label"] == "x=3"


def test_tags(cli, three):
    cli("runs", "tag", "-a", "red", "-a", "blue", "-y", "1", "2")
    assert attrs(cli)["tags"] == ["blue", "red"] and attrs(cli, "2")["tags"] == ["blue", "red"]
    out = cli("runs", "tag", "-d", "red", "-y")
    assert out.stderr.strip() == "Modified tags for 1 run(s)"
    assert attrs(cli)["tags"] == ["blue"]
    cli("runs", "tag", "-c", "-a", "green", "-s", "-y", "2")
    assert attrs(cli, "2")["tags"] == ["green"] and attrs(cli, "2")["label"] == "green x=2"
    assert cli("runs", "tag", "-y").exit_code == 2


def test_marks(cli, three):
    out = cli("runs", "mark", "-y", "2")
    assert out.stderr.strip() == "Marked 1 run(s)"
    assert attrs(cli, "2")["marked"] == "yes" and attrs(cli)["marked"] == "no"
    listing = cli("runs").output.splitlines()
    assert "[marked]" in listing[1] and "[marked]" not in listing[0]
    cli("runs", "mark", "-y", "1")
    out = cli("runs", "mark", "--clear", "-y")
    assert out.stderr.strip() == "Unmarked 2 run(s)"
    assert json.loads(cli("runs", "list", "-Fm", "--json").output) == []


def test_comments(cli, three):
    out = cli("runs", "comment", "-m", "first look", "-y")
    assert out.stderr.strip() == "Added comment to 1 run(s)"
    cli("runs", "comment", "-a", "second", "-u", "ann@lab", "-y")
    listing = cli("runs", "comment", "-l").output
    assert "first look" in listing and "[2] ann@lab" in listing
    run = Run.for_dir(next(p for p in (three / "runs").iterdir() if Run.for_dir(p).get("comments")))
    first = run.get("comments")[0]
    assert first["body"] == "first look" and isinstance(first["time"], int)
    cli("runs", "comment", "-d", "1", "-y")
    assert [c["body"] for c in Run.for_dir(run.path).get("comments")] == ["second"]
    out = cli("runs", "comment", "-c", "-y")
    assert out.stderr.strip() == "Deleted all comments for 1 run(s)"
    assert Run.for_dir(run.path).get("comments") is None
    assert "<no comments>" in cli("runs", "comment", "-l", "2").output


def test_top_level_label_tag_mark_comment_are_the_runs_commands(cli, three):
    """Guild AI has `guild label` (and tag, mark, comment) beside
    `guild runs label`: the same commands."""
    out = cli("label", "-s", "top", "-y")
    assert out.exit_code == 0 and out.stderr.strip() == "Labeled 1 run(s)"
    assert attrs(cli)["label"] == "top"
    assert cli("tag", "-a", "red", "-y", "2").exit_code == 0
    assert attrs(cli, "2")["tags"] == ["red"]
    assert cli("mark", "-y", "3").exit_code == 0
    assert attrs(cli, "3")["marked"] == "yes"
    assert cli("comment", "-m", "hi", "-y").exit_code == 0
    assert "hi" in cli("comment", "-l").output
    for name in ("label", "tag", "mark", "comment"):
        assert cli(name, "--help").output == cli("runs", name, "--help").output.replace(f"guild runs {name}", f"guild {name}")
    assert all(name in cli("--help").output for name in ("label", "tag", "mark", "comment"))


def test_check_space(cli, three):
    cli("runs", "delete", "-y", "1")
    out = cli("check", "--space")
    assert out.exit_code == 0
    lines = out.output.split("disk_space:\n", 1)[1].splitlines()
    names = [line.split(":")[0].strip() for line in lines]
    assert names == ["guild_home", "runs", "deleted_runs", "cache", "leftovers"]
    sizes = {line.split(":")[0].strip(): line.split()[1] for line in lines}
    assert sizes["deleted_runs"] != "0" and sizes["runs"] != "0"
    assert str(three / "trash" / "runs") in out.output
