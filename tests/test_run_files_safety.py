"""`guild cat` and `guild ls` read only inside the run directory, and
through symbolic links into sibling runs (batch trials, dependencies,
summaries): never a file or directory elsewhere, whatever PATH says or
wherever a link in the run points."""

from __future__ import annotations

import os

import pytest

from guild_core.run import Run

SECRET = "TOP-SECRET-CONTENT"

TRAIN = """
import os
x = 1
open("out.txt", "w").write("x=%s" % x)
os.makedirs("sub", exist_ok=True)
open("sub/inner.txt", "w").write("inner")
open("model.txt", "w").write("model %s" % x)
"""

GUILD_YML = """
train:
  main: train
  flags:
    x: 1
use:
  main: guild.pass
  requires:
    - run: train
"""


@pytest.fixture
def outside(tmp_path):
    """A directory outside the Guild home with a secret file in it."""
    root = tmp_path / "outside"
    root.mkdir()
    (root / "secret.txt").write_text(SECRET)
    return root


@pytest.fixture
def proj(project):
    project.write("train.py", TRAIN)
    project.write("guild.yml", GUILD_YML)
    return project


def runs_by_op(guild_home, op):
    runs = [Run.for_dir(p) for p in (guild_home / "runs").iterdir()]
    return sorted((r for r in runs if r.op_name == op), key=lambda r: r.get("started") or 0)


@pytest.fixture
def run(cli, guild_home, proj, outside):
    """One train run with links that leave it: to a file, to a
    directory, to the runs directory, and a loop."""
    assert cli("run", "train", "-y").exit_code == 0
    (run,) = runs_by_op(guild_home, "train")
    os.symlink(outside / "secret.txt", run.path / "evil")
    os.symlink(outside, run.path / "evil_dir")
    os.symlink("..", run.path / "up")
    os.symlink("loop", run.path / "loop")
    return run


def refused(result, path):
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"guild: {path} is outside the run directory"], result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.output
    assert "secret.txt" not in result.output


# -- cat ------------------------------------------------------------------


def test_cat_refuses_relative_path_out_of_the_run(cli, run, outside):
    rel = os.path.relpath(outside / "secret.txt", run.path)
    assert rel.startswith("..")
    refused(cli("cat", "-p", rel), rel)


def test_cat_refuses_absolute_path(cli, run, outside):
    path = str(outside / "secret.txt")
    refused(cli("cat", "-p", path), path)


def test_cat_refuses_links_that_leave_the_run(cli, run, guild_home):
    refused(cli("cat", "-p", "evil"), "evil")
    refused(cli("cat", "-p", "evil_dir/secret.txt"), "evil_dir/secret.txt")
    (guild_home / "runs" / "stray.txt").write_text(SECRET)
    refused(cli("cat", "-p", "up/stray.txt"), "up/stray.txt")
    # Out and back in again is inside.
    assert cli("cat", "-p", f"up/{run.id}/out.txt").output == "x=1"


def test_cat_inside_the_run_still_works(cli, run):
    assert cli("cat", "-p", "out.txt").output == "x=1"
    assert cli("cat", "-p", "sub/../sub/inner.txt").output == "inner"
    assert cli("cat", "-p", str(run.path / "out.txt")).output == "x=1"
    assert cli("cat", "-p", ".guild/attrs/flags").output == "x: 1\n"


def test_cat_errors_are_one_line(cli, run):
    for path, end in [("nope.txt", "does not exist"), ("sub", "is a directory"), ("loop", "is a broken link")]:
        out = cli("cat", "-p", path)
        assert out.exit_code == 1 and out.output == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("guild: ") and lines[0].endswith(end), out.stderr


# -- ls -------------------------------------------------------------------


def test_ls_refuses_paths_out_of_the_run(cli, run, outside):
    refused(cli("ls", "-p", ".."), "..")
    refused(cli("ls", "-p", str(outside)), str(outside))
    refused(cli("ls", "-p", "/"), "/")
    refused(cli("ls", "-p", "evil_dir"), "evil_dir")
    refused(cli("ls", "-p", "up"), "up")


def test_ls_follow_links_does_not_leave_the_run(cli, run, guild_home):
    out = cli("ls", "-L")
    assert out.exit_code == 0
    lines = out.output.splitlines()
    # The links are listed, not followed.
    assert "  evil_dir/" in lines and "  up/" in lines and "  evil" in lines
    assert not any(line.startswith(("  evil_dir/", "  up/")) and line not in ("  evil_dir/", "  up/") for line in lines)
    assert "secret.txt" not in out.output
    full = cli("ls", "-L", "-f").output
    assert "secret.txt" not in full and str(guild_home / "runs") + "/" + run.id + "/up/" in full
    assert "/up/" + run.id not in full


def test_ls_path_forms(cli, run):
    root = str(run.path)
    out = cli("ls", "-p", "out.txt")
    assert out.exit_code == 0 and out.output.splitlines() == [f"{root}:", "  out.txt"]
    out = cli("ls", "-p", "sub")
    # PATH itself is listed too, as Guild AI lists it.
    assert out.exit_code == 0 and out.output.splitlines() == [f"{root}:", "  sub/", "  sub/inner.txt"]
    assert cli("ls", "-p", "sub", "-f").output.splitlines() == [f"{root}/sub/", f"{root}/sub/inner.txt"]
    out = cli("ls", "-p", "nope")
    assert out.exit_code == 1 and out.stderr.splitlines() == [f"guild: {root}/nope does not exist"]
    out = cli("ls", "-p", "loop")
    assert out.exit_code == 1 and out.stderr.splitlines() == [f"guild: {root}/loop is a broken link"]
    out = cli("ls", "-p", ".guild/attrs")
    assert "  .guild/attrs/flags" in out.output.splitlines()


def test_ls_follow_links_survives_link_cycles(sh, run):
    # Two links back to the run itself: following both at every level
    # would list 2**40 paths before the kernel gives up.
    os.symlink(".", run.path / "again")
    os.symlink("../sub", run.path / "sub" / "back")
    os.symlink("..", run.path / "sub" / "parent")
    out = sh("ls", "-L", timeout=30)
    assert out.exit_code == 0, out.stderr
    lines = out.output.splitlines()
    assert "  again/" in lines and "  sub/back/" in lines and "  sub/parent/" in lines
    assert not any(line.startswith(("  again/", "  sub/back/", "  sub/parent/")) and line.count("/") > 2 for line in lines)


# -- links into sibling runs stay readable -----------------------------------


def test_batch_trials_readable_through_their_links(cli, guild_home, proj):
    assert cli("run", "train.py", "x=[1,2]", "-y").exit_code == 0
    batch = next(Run.for_dir(p) for p in (guild_home / "runs").iterdir() if Run.for_dir(p).guild_path("proto").exists())
    trials = [p.name for p in batch.path.iterdir() if p.is_symlink()]
    assert len(trials) == 2
    listing = cli("ls", batch.id, "-L").output.splitlines()
    for trial in trials:
        assert os.readlink(batch.path / trial) == f"../{trial}"
        assert f"  {trial}/out.txt" in listing and f"  {trial}/sub/inner.txt" in listing
        out = cli("cat", batch.id, "-p", f"{trial}/out.txt")
        assert out.exit_code == 0 and out.output.startswith("x=")
        assert f"  {trial}/out.txt" in cli("ls", batch.id, "-p", trial).output.splitlines()


def test_dependency_links_readable(cli, guild_home, proj):
    assert cli("run", "train", "x=7", "-y").exit_code == 0
    assert cli("run", "use", "-y").exit_code == 0
    (use,) = runs_by_op(guild_home, "use")
    (train,) = runs_by_op(guild_home, "train")
    assert os.readlink(use.path / "model.txt") == f"../{train.id}/model.txt"
    out = cli("cat", use.id, "-p", "model.txt")
    assert out.exit_code == 0 and out.output == "model 7"
    assert "  model.txt" in cli("ls", use.id).output.splitlines()


def test_sibling_run_only_through_a_link(cli, guild_home, proj, outside):
    assert cli("run", "train", "x=3", "-y").exit_code == 0
    assert cli("run", "use", "-y").exit_code == 0
    (use,) = runs_by_op(guild_home, "use")
    (train,) = runs_by_op(guild_home, "train")
    # Naming the sibling by a path (not a link in the run) is outside.
    refused(cli("cat", use.id, "-p", f"../{train.id}/out.txt"), f"../{train.id}/out.txt")
    # A link into a sibling is followed, but not on out of it.
    os.symlink(f"../{train.id}", use.path / "up_train")
    os.symlink(outside, train.path / "evil_dir")
    assert cli("cat", use.id, "-p", "up_train/out.txt").output == "x=3"
    refused(cli("cat", use.id, "-p", "up_train/evil_dir/secret.txt"), "up_train/evil_dir/secret.txt")
    listing = cli("ls", use.id, "-L").output
    assert "  up_train/out.txt" in listing.splitlines()
    assert "  up_train/evil_dir/" in listing.splitlines() and "secret.txt" not in listing
    # A directory that is not named as a run id is not a sibling run.
    other = guild_home / "runs" / "not-a-run"
    other.mkdir()
    (other / "f.txt").write_text(SECRET)
    os.symlink("../not-a-run", use.path / "odd")
    refused(cli("cat", use.id, "-p", "odd/f.txt"), "odd/f.txt")
