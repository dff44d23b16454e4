"""Export and import: archive directories and zip files, skipping ids
already there, refusing entries that escape their run, crash safety."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile

import pytest

from guild_core import store


@pytest.fixture
def three(cli, guild_home, project):
    project.write("train.py", "x = 1\nprint('loss: %s' % (1.0 / x))\n")
    for x in (1, 2, 3):
        assert cli("run", "train.py", f"x={x}", "-y").exit_code == 0
    return guild_home


def ids(root):
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def listed(cli, *args):
    out = cli("runs", "list", "--json", *args)
    assert out.exit_code == 0, out.stderr
    return [r["id"] for r in json.loads(out.output)]


def test_export_copies_and_asks(cli, three, tmp_path):
    dest = tmp_path / "archive"
    out = cli("export", str(dest), input="n\n")
    assert out.exit_code == 1 and not dest.exists()
    assert f"You are about to copy the following runs to '{dest}':" in out.stderr
    out = cli("export", str(dest), "-y", "-F", "x >= 2")
    assert out.stderr.strip() == f"Exported 2 run(s) to {dest}"
    assert len(ids(dest)) == 2 and len(ids(three / "runs")) == 3
    assert listed(cli, "-A", str(dest)) == listed(cli, "-F", "x >= 2")
    assert listed(cli, "-A", str(dest), "-F", "x = 3") == listed(cli, "-F", "x = 3")


def test_export_skips_existing_never_overwrites(cli, three, tmp_path):
    dest = tmp_path / "archive"
    cli("export", str(dest), "-y", "1")
    first = ids(dest)[0]
    (dest / first / "mine").write_text("keep me")
    out = cli("export", str(dest), "-y")
    assert f"WARNING: {first} exists, skipping" in out.stderr
    assert f"Exported 2 run(s) to {dest}" in out.stderr
    assert (dest / first / "mine").read_text() == "keep me"


def test_export_move_and_import_move(cli, three, tmp_path):
    dest = tmp_path / "archive"
    all_ids = ids(three / "runs")
    cli("export", str(dest), "--move", "-y")
    assert ids(three / "runs") == [] and ids(dest) == all_ids
    out = cli("import", str(dest), "-m", "-y")
    assert out.stderr.strip() == f"Imported 3 run(s) from {dest}"
    assert ids(three / "runs") == all_ids and ids(dest) == []


def test_import_copies_and_skips_existing(cli, three, tmp_path):
    dest = tmp_path / "archive"
    cli("export", str(dest), "-y")
    cli("runs", "delete", "-p", "-y", "1:2")
    out = cli("import", str(dest), input="y\n")
    assert "You are about to import (copy) the following runs from" in out.stderr
    assert out.stderr.count("exists, skipping") == 1
    assert f"Imported 2 run(s) from {dest}" in out.stderr
    assert ids(three / "runs") == ids(dest)
    out = cli("import", str(dest), "-y", "-Fo", "nothing")
    assert out.stderr.strip() == "No runs to import."


def test_zip_round_trip(cli, three, tmp_path):
    zpath = tmp_path / "runs.zip"
    all_ids = ids(three / "runs")
    assert cli("export", str(zpath), "-y", "1").exit_code == 0
    out = cli("export", str(zpath), "-y")
    assert out.stderr.count("exists, skipping") == 1 and "Exported 2 run(s)" in out.stderr
    with zipfile.ZipFile(zpath) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == set(all_ids)
    assert sorted(listed(cli, "-A", str(zpath))) == all_ids
    cli("runs", "delete", "-p", "-y")
    out = cli("import", str(zpath), "-y", "-F", "x < 3")
    assert out.stderr.strip() == f"Imported 2 run(s) from {zpath}"
    out = cli("import", str(zpath), "-y")
    assert "Imported 1 run(s)" in out.stderr and ids(three / "runs") == all_ids
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["flags"] == {"x": 3} and info["scalars"]["loss"][0] == pytest.approx(1 / 3)
    assert not [p for p in (three / "runs").iterdir() if p.name.startswith(".")]
    out = cli("import", str(zpath), "--move", "-y")
    assert out.exit_code == 1 and "'--move' cannot be used with zip archives" in out.stderr


def test_batch_links_survive_export_and_import(cli, guild_home, project, tmp_path):
    project.write("echo.py", "x = 1\nprint(x)\n")
    assert cli("run", "echo.py", "x=[1,2]", "-y").exit_code == 0
    zpath = tmp_path / "batch.zip"
    assert cli("export", str(zpath), "-y").exit_code == 0
    cli("runs", "delete", "-p", "-y")
    assert cli("import", str(zpath), "-y").stderr.strip() == f"Imported 3 run(s) from {zpath}"
    batch = next(p for p in (guild_home / "runs").iterdir() if (p / ".guild" / "proto").is_dir())
    links = [p for p in batch.iterdir() if p.is_symlink()]
    assert len(links) == 2 and all(p.resolve().is_dir() for p in links)


def _zip_with(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, is_link in entries:
            info = zipfile.ZipInfo(name)
            if is_link:
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)


RID = "a" * 32


@pytest.mark.parametrize(
    "entries, why",
    [
        ([("/etc/evil", "x", False)], "entry '/etc/evil' has an absolute path"),
        ([(f"{RID}/../../evil", "x", False)], f"entry '{RID}/../../evil' would land outside its run directory"),
        ([("notarun/file", "x", False)], "entry 'notarun/file' is not inside a run directory"),
        ([(f"{RID}/link", "/etc", True)], f"entry '{RID}/link' links outside its run directory (to '/etc')"),
        ([(f"{RID}/link", "../../x", True)], f"entry '{RID}/link' links outside its run directory (to '../../x')"),
        (
            [(f"{RID}/link", "sub", True), (f"{RID}/link/f", "x", False)],
            f"entry '{RID}/link/f' is under a symbolic link",
        ),
    ],
)
def test_import_refuses_escaping_zip_entries(cli, guild_home, tmp_path, entries, why):
    zpath = tmp_path / "evil.zip"
    _zip_with(zpath, [(f"{RID}/.guild/opref", "script:x '' '' x.py\n", False)] + entries)
    out = cli("import", str(zpath), "-y")
    assert out.exit_code == 1
    assert out.stderr.strip() == f"guild: refusing to import from {zpath}: {why}"
    runs = guild_home / "runs"
    assert not runs.exists() or os.listdir(runs) == []
    assert not (tmp_path / "evil").exists()


def test_import_refuses_directory_run_linking_out(cli, three, tmp_path):
    dest = tmp_path / "archive"
    cli("export", str(dest), "-y", "1")
    run_id = ids(dest)[0]
    os.symlink("/etc/passwd", dest / run_id / "passwd")
    cli("runs", "delete", "-p", "-y", "1")
    out = cli("import", str(dest), "-y")
    assert out.exit_code == 1
    assert out.stderr.strip() == (
        f"guild: refusing to import run {run_id}: 'passwd' links outside "
        "the run directory (to '/etc/passwd')"
    )
    assert run_id not in ids(three / "runs")


class Boom(Exception):
    pass


def test_killed_import_leaves_no_half_run(cli, three, tmp_path, monkeypatch):
    dest = tmp_path / "archive"
    cli("export", str(dest), "-y")
    cli("runs", "delete", "-p", "-y")
    real_copy2 = shutil.copy2
    calls = {"n": 0}

    def flaky(*args, **kw):
        calls["n"] += 1
        if calls["n"] > 12:
            raise Boom()
        return real_copy2(*args, **kw)

    real_copytree = shutil.copytree

    def copytree(src, dst, symlinks=False, ignore=None, copy_function=None, *rest, **kw):
        return real_copytree(src, dst, symlinks, ignore, flaky, *rest, **kw)

    with monkeypatch.context() as m, pytest.raises(Boom):
        m.setattr(shutil, "copytree", copytree)
        cli("import", str(dest), "-y")
    imported = ids(three / "runs")
    assert len(imported) < 3
    # Whatever was imported is whole; the archive is untouched; no
    # hidden leftovers; importing again completes the set.
    for run_id in imported:
        assert sorted(os.listdir(three / "runs" / run_id)) == sorted(os.listdir(dest / run_id))
    assert len(ids(dest)) == 3
    assert not [p for p in (three / "runs").iterdir() if p.name.startswith(".")]
    assert cli("import", str(dest), "-y").exit_code == 0
    assert ids(three / "runs") == ids(dest)


def test_copy_cleans_up_its_temp_dir(three, tmp_path, monkeypatch):
    from guild_core.run import Run

    run_dir = next((three / "runs").iterdir())
    monkeypatch.setattr(os, "rename", lambda *a: (_ for _ in ()).throw(Boom()))
    with pytest.raises(Boom):
        store.copy(Run.for_dir(run_dir), tmp_path / "dest")
    assert os.listdir(tmp_path / "dest") == []


def test_copy_resources_exports_what_links_point_to(cli, guild_home, project, tmp_path):
    """Guild AI's --copy-resources: an exported run holds the files its
    dependency links point to, not the links."""
    project.write("train.py", "open('model.txt', 'w').write('weights')\n")
    project.write("guild.yml", "train:\n  main: train\nuse:\n  main: guild.pass\n  requires:\n    - operation: train\n")
    assert cli("run", "train", "-y").exit_code == 0
    assert cli("run", "use", "-y").exit_code == 0
    use_id = listed(cli)[0]
    linked = tmp_path / "linked"
    assert cli("export", str(linked), "-y").exit_code == 0
    assert os.path.islink(linked / use_id / "model.txt")
    copied = tmp_path / "copied"
    out = cli("export", str(copied), use_id, "--copy-resources", "-y")
    assert out.exit_code == 0, out.stderr
    path = copied / use_id / "model.txt"
    assert not os.path.islink(path) and path.read_text() == "weights"
    zipped = tmp_path / "copied.zip"
    assert cli("export", str(zipped), use_id, "-r", "-y").exit_code == 0
    with zipfile.ZipFile(zipped) as zf:
        info = zf.getinfo(f"{use_id}/model.txt")
        assert not stat.S_ISLNK(info.external_attr >> 16) and zf.read(info) == b"weights"
    out = cli("export", str(tmp_path / "x"), "-m", "-r", "-y")
    assert out.exit_code == 1 and "--copy-resources cannot be used with --move" in out.stderr
    assert len(listed(cli)) == 2
    # Imported back from the directory archive (where the link leads to
    # the upstream run's copy), resources copied.
    cli("runs", "delete", "-p", use_id, "-y")
    out = cli("import", str(linked), use_id, "--copy-resources", "-y")
    assert out.exit_code == 0, out.stderr
    imported = guild_home / "runs" / use_id / "model.txt"
    assert not os.path.islink(imported) and imported.read_text() == "weights"
