"""The S3 remote against a real S3 server (moto's, on loopback): push
real runs, list them in one request, pull them into an empty home file
for file (bytes, times, modes), delete/restore/purge, metadata writes, a
second push and pull that move nothing, pushes cut short (an exception,
a kill -9) that leave no listed run and are finished by the next push,
an index lost, corrupted or raced by another writer, and bad configs,
credentials and endpoints as one line each; then the same through the
CLI."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from guild_core import remotes
from guild_core.errors import GuildError
from guild_core.run import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from moto_fixture import AWS_ENV, AWS_UNSET, free_port, moto_server  # noqa: E402

pytest.importorskip("boto3")

import guild_remote_s3  # noqa: E402
from guild_remote_s3 import S3Remote  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

TRAIN = """\
import argparse
import os

p = argparse.ArgumentParser()
p.add_argument("--x", type=float, default=0.5)
p.add_argument("--big", type=int, default=0)
a = p.parse_args()
os.makedirs("out/sub", exist_ok=True)
with open("out/sub/result.txt", "w") as f:
    f.write("x=%s\\n" % a.x)
with open("blob.bin", "wb") as f:
    f.write(bytes(range(256)) * (1200 if a.big else 4))
with open("run.sh", "w") as f:
    f.write("#!/bin/sh\\necho hi\\n")
os.chmod("run.sh", 0o755)
print("loss: %s" % a.x)
"""

LABELS = {"0.2": "low", "0.4": "mid", "0.8": "high"}


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with moto_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """Three real runs made with `guild run` (loss 0.2, 0.4, 0.8; the last
    with a 300 KB file), in a home of their own: each test copies them."""
    root = tmp_path_factory.mktemp("s3-seed")
    home, project = root / "home", root / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    env = {**os.environ, "GUILD_HOME": str(home)}
    for x, label in LABELS.items():
        args = ["run", "-y", "train.py", f"x={x}", "-l", label]
        if x == "0.8":
            args.append("big=1")
        proc = subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args],
                              cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    return home / "runs"


@pytest.fixture
def aws(monkeypatch):
    for key, val in AWS_ENV.items():
        monkeypatch.setenv(key, val)
    for key in AWS_UNSET:
        monkeypatch.delenv(key, raising=False)


class S3Env:
    def __init__(self, server, home: Path, bucket: str, root: str):
        self.server = server
        self.home = home
        self.bucket = bucket
        self.root = root
        self.client = server.client()

    def keys(self, prefix: str = "") -> list[str]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(found)

    def runs(self) -> list[Path]:
        return sorted((self.home / "runs").iterdir(), key=lambda p: Run(p.name, p).get("label"))

    def by_label(self, label: str) -> Path:
        (run_dir,) = [p for p in self.runs() if Run(p.name, p).get("label") == label]
        return run_dir


def write_config(home: Path, name: str, **config) -> None:
    lines = [f"remotes:\n  {name}:\n"]
    for key, val in config.items():
        lines.append(f"    {key}: {val}\n" if val != "" else f"    {key}: ''\n")
    (home / "config.yml").write_text("".join(lines))


@pytest.fixture
def s3(server, seed, guild_home, aws):
    """Remote 'team': a fresh bucket on the moto server, root proj/a; the
    seed runs in the Guild home."""
    bucket = f"guild-test-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket)
    shutil.copytree(seed, guild_home / "runs")
    write_config(guild_home, "team", type="s3", bucket=bucket, root="proj/a",
                 **{"endpoint-url": server.url, "description": "team bucket"})
    return S3Env(server, guild_home, bucket, "proj/a")


class Counted:
    """Progress that records its updates."""

    def __init__(self):
        self.updates = []

    def update(self, runs=0, nbytes=0):
        self.updates.append((runs, nbytes))


def files_of(run_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file of a run (but the process records of the machine that
    ran it): bytes, mtime (ns) and mode."""
    found = {}
    for path in run_dir.rglob("*"):
        rel = path.relative_to(run_dir).as_posix()
        if path.is_file() and rel not in remotes.LOCAL_ONLY:
            st = path.stat()
            found[rel] = (path.read_bytes(), st.st_mtime_ns, stat.S_IMODE(st.st_mode))
    return found


class Requests:
    """HTTP requests a remote sends inside the block (every attempt)."""

    def __init__(self, remote):
        self.count = 0
        remote._client().meta.events.register("before-send.s3", self._seen)

    def _seen(self, **_kwargs):
        self.count += 1

    def __enter__(self):
        self.count = 0
        return self

    def __exit__(self, *exc):
        pass


# -- the Remote through the core -----------------------------------------------


def test_push_list_pull_round_trip(s3, tmp_path):
    remote = remotes.get("team")
    assert isinstance(remote, S3Remote)
    assert remote.describe() == "team bucket"
    runs = s3.runs()
    progress = Counted()
    moved = remote.push(runs, False, progress)
    total_files = sum(len(remotes.manifest(r)) for r in runs)
    total_bytes = sum(size for r in runs for size, _ in remotes.manifest(r).values())
    assert (moved.runs, moved.files, moved.bytes, moved.unchanged) == (3, total_files, total_bytes, 0)
    assert sorted(moved.run_ids) == sorted(r.name for r in runs)
    assert [u[0] for u in progress.updates] == [1, 1, 1] and sum(u[1] for u in progress.updates) == total_bytes
    # The layout: the runs' files, one record each, one index per area.
    keys = s3.keys()
    for run_dir in runs:
        for rel in remotes.manifest(run_dir):
            assert f"proj/a/runs/{run_dir.name}/{rel}" in keys
        assert f"proj/a/meta/runs/{run_dir.name}.json" in keys
    assert "proj/a/meta/runs-index.json.gz" in keys

    # Listing: one request, every run's metadata as the run has it.
    fresh = remotes.get("team")
    with Requests(fresh) as req:
        listing = fresh.list_runs()
    assert req.count == 1
    assert listing == {r.name: remotes.meta_files(r) for r in runs}
    assert remotes.get("team").list_runs(deleted=True) == {}
    viewed = {run.id: run for run in remotes.view(fresh)}
    assert sorted(viewed) == sorted(r.name for r in runs)
    for run_dir in runs:
        local = Run(run_dir.name, run_dir)
        assert viewed[run_dir.name].get("flags") == local.get("flags")
        assert viewed[run_dir.name].get("label") == local.get("label")
        assert viewed[run_dir.name].status == "completed"

    # Pulled into an empty home: every file with its bytes, time and mode.
    dest = tmp_path / "other-home" / "runs"
    pulled = remote.pull([r.name for r in runs], dest, False, Counted())
    assert (pulled.runs, pulled.files, pulled.bytes) == (3, total_files, total_bytes)
    assert sorted(p.name for p in dest.iterdir()) == sorted(r.name for r in runs)
    for run_dir in runs:
        assert files_of(dest / run_dir.name) == files_of(run_dir)
    assert os.access(dest / runs[0].name / "run.sh", os.X_OK)

    # A second push and a second pull move nothing.
    fresh = remotes.get("team")
    with Requests(fresh) as req:
        again = fresh.push(runs, False, Counted())
    assert (again.runs, again.files, again.bytes, again.unchanged) == (0, 0, 0, 3)
    assert req.count == 4  # a record each, and the index to check it lists them
    again = remote.pull([r.name for r in runs], dest, False, Counted())
    assert (again.runs, again.files, again.bytes, again.unchanged) == (0, 0, 0, 3)


def test_only_changes_travel_and_delete_removes_what_is_gone(s3, tmp_path):
    remote = remotes.get("team")
    runs = s3.runs()
    remote.push(runs, False, Counted())
    dest = tmp_path / "pulled"
    remote.pull([r.name for r in runs], dest, False, Counted())
    run_dir = s3.by_label("mid")
    (run_dir / "out" / "sub" / "result.txt").write_text("changed\n")
    (run_dir / "new.txt").write_text("new\n")
    (run_dir / "blob.bin").unlink()
    moved = remote.push(runs, False, Counted())
    assert (moved.runs, moved.files, moved.unchanged, moved.deleted_files) == (1, 2, 2, 0)
    assert f"proj/a/runs/{run_dir.name}/blob.bin" in s3.keys()
    moved = remote.push([run_dir], True, Counted())
    assert (moved.runs, moved.files, moved.deleted_files) == (1, 0, 1)
    assert f"proj/a/runs/{run_dir.name}/blob.bin" not in s3.keys()
    # Pulled over the earlier copy: the changed files, written under a
    # hidden name and renamed; without --delete the old file stays.
    pulled = remote.pull([run_dir.name], dest, False, Counted())
    assert (pulled.runs, pulled.files, pulled.deleted_files) == (1, 2, 0)
    assert (dest / run_dir.name / "blob.bin").exists()
    pulled = remote.pull([run_dir.name], dest, True, Counted())
    assert (pulled.runs, pulled.files, pulled.deleted_files) == (1, 0, 1)
    assert files_of(dest / run_dir.name) == files_of(run_dir)
    assert not [p for p in (dest / run_dir.name).rglob(".guild-part-*")]


def test_fetch_run_fills_the_mirror(s3):
    remote = remotes.get("team")
    remote.push([s3.by_label("high")], False, Counted())
    (mirrored,) = remotes.view(remote)
    assert not (mirrored.path / "blob.bin").exists()
    remotes.fetch(remote, mirrored)
    assert files_of(mirrored.path) == files_of(s3.by_label("high"))


def test_write_meta_changes_the_run_its_record_and_the_index(s3, tmp_path):
    remote = remotes.get("team")
    run_dir = s3.by_label("low")
    remote.push([run_dir], False, Counted())
    remote.write_meta(run_dir.name, {".guild/attrs/label": b"best\n", ".guild/attrs/tags": b"- red\n"})
    listed = remotes.get("team").list_runs()[run_dir.name]
    assert listed[".guild/attrs/label"] == b"best\n" and listed[".guild/attrs/tags"] == b"- red\n"
    remote.write_meta(run_dir.name, {".guild/attrs/tags": None})
    assert ".guild/attrs/tags" not in remotes.get("team").list_runs()[run_dir.name]
    assert f"proj/a/runs/{run_dir.name}/.guild/attrs/tags" not in s3.keys()
    # A pull brings the change; a label changed on the mirror goes back.
    dest = tmp_path / "pulled"
    remote.pull([run_dir.name], dest, False, Counted())
    assert (dest / run_dir.name / ".guild/attrs/label").read_bytes() == b"best\n"
    (mirrored,) = remotes.view(remote)
    (mirrored.path / ".guild/attrs/label").write_bytes(b"kept\n")
    remotes.push_meta_changes(remote, [mirrored], remotes.last_listing(remote))
    assert remotes.get("team").list_runs()[run_dir.name][".guild/attrs/label"] == b"kept\n"
    with pytest.raises(GuildError, match="outside a run"):
        remote.write_meta(run_dir.name, {"../escape": b"x"})


def test_delete_restore_purge(s3):
    remote = remotes.get("team")
    low_dir, high_dir = s3.by_label("low"), s3.by_label("high")
    low, high = low_dir.name, high_dir.name
    remote.push([low_dir, high_dir], False, Counted())
    remote.delete([low])
    assert sorted(remotes.get("team").list_runs()) == [high]
    assert sorted(remotes.get("team").list_runs(deleted=True)) == [low]
    assert not s3.keys(f"proj/a/runs/{low}/") and s3.keys(f"proj/a/trash/runs/{low}/")
    (deleted,) = remotes.view(remote, deleted=True)
    assert deleted.get("label") == "low" and deleted.status == "completed"
    # Restored whole: pulled, it is the run that was pushed.
    remote.restore([low])
    assert sorted(remotes.get("team").list_runs()) == sorted([low, high])
    assert remotes.get("team").list_runs(deleted=True) == {}
    remote.pull([low], s3.home / "restored", False, Counted())
    assert files_of(s3.home / "restored" / low) == files_of(low_dir)
    # Deleted, then pushed again: the deleted copy is not restored over it.
    remote.delete([low])
    remote.push([low_dir], False, Counted())
    with pytest.raises(GuildError, match="exists, not restored over"):
        remote.restore([low])
    remote.purge([low])
    assert remotes.get("team").list_runs(deleted=True) == {}
    assert not s3.keys("proj/a/trash/")
    assert sorted(remotes.get("team").list_runs()) == sorted([low, high])
    remote.delete([high], permanent=True)
    assert sorted(remotes.get("team").list_runs()) == [low]
    assert not [k for k in s3.keys() if high in k]


def test_a_push_cut_short_lists_no_run_and_the_next_finishes_it(s3, monkeypatch):
    run_dir = s3.by_label("high")
    real = S3Remote._put_file

    def interrupted(self, path, key, want_data):
        if want_data:  # the run's files are up, its metadata not yet
            raise KeyboardInterrupt
        return real(self, path, key, want_data)

    monkeypatch.setattr(S3Remote, "_put_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        remotes.get("team").push([run_dir], False, Counted())
    assert s3.keys(f"proj/a/runs/{run_dir.name}/blob.bin")
    assert remotes.get("team").list_runs() == {}
    assert "1 incomplete push" in remotes.get("team").status()
    monkeypatch.setattr(S3Remote, "_put_file", real)
    moved = remotes.get("team").push([run_dir], False, Counted())
    assert moved.runs == 1
    assert moved.bytes < (run_dir / "blob.bin").stat().st_size  # the big file was not sent again
    assert sorted(remotes.get("team").list_runs()) == [run_dir.name]
    assert "incomplete" not in remotes.get("team").status()


def test_runs_pushed_before_a_failure_are_listed(s3, monkeypatch):
    low, mid = s3.by_label("low"), s3.by_label("mid")
    real = S3Remote._push_run

    def second_fails(self, run_dir, *args):
        if run_dir == mid:
            raise RuntimeError("disk on fire")
        return real(self, run_dir, *args)

    monkeypatch.setattr(S3Remote, "_push_run", second_fails)
    with pytest.raises(RuntimeError):
        remotes.get("team").push([low, mid], False, Counted())
    assert sorted(remotes.get("team").list_runs()) == [low.name]


def test_a_record_without_its_index_entry_is_listed_by_the_next_push(s3, monkeypatch):
    runs = s3.runs()[:2]
    remotes.get("team").push(runs[:1], False, Counted())

    def killed(*_args):
        raise RuntimeError("killed between the records and the index")

    real = S3Remote._set_entries
    monkeypatch.setattr(S3Remote, "_set_entries", killed)
    with pytest.raises(RuntimeError):
        remotes.get("team").push(runs[1:], False, Counted())
    monkeypatch.setattr(S3Remote, "_set_entries", real)
    assert sorted(remotes.get("team").list_runs()) == [runs[0].name]
    moved = remotes.get("team").push(runs, False, Counted())
    assert moved.unchanged == 2
    assert sorted(remotes.get("team").list_runs()) == sorted(r.name for r in runs)


def test_status_repairs_an_index_out_of_line(s3):
    runs = s3.runs()[:2]
    remote = remotes.get("team")
    remote.push(runs, False, Counted())
    remote._set_entries("runs", {runs[0].name: None})  # as a lost update would leave it
    assert len(remotes.get("team").list_runs()) == 1
    line = remotes.get("team").status()
    assert "2 runs" in line and "repaired (1 run)" in line
    assert len(remotes.get("team").list_runs()) == 2
    assert "repaired" not in remotes.get("team").status()


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_lost_index_is_rebuilt_from_the_records(s3, damage):
    runs = s3.runs()[:2]
    remotes.get("team").push(runs, False, Counted())
    key = "proj/a/meta/runs-index.json.gz"
    if damage == "missing":
        s3.client.delete_object(Bucket=s3.bucket, Key=key)
    else:
        s3.client.put_object(Bucket=s3.bucket, Key=key, Body=b"not gzip at all")
    fresh = remotes.get("team")
    with Requests(fresh) as req:
        listing = fresh.list_runs()
    assert listing == {r.name: remotes.meta_files(r) for r in runs}
    assert req.count == 5  # the index, a LIST of records, a GET each, the index written
    index = json.loads(gzip.decompress(s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()))
    assert sorted(index["runs"]) == sorted(r.name for r in runs)
    fresh = remotes.get("team")
    with Requests(fresh) as req:
        fresh.list_runs()
    assert req.count == 1


def test_writers_that_race_lose_no_run(s3):
    one, two, three = s3.runs()
    a, b = remotes.get("team"), remotes.get("team")
    a.push([one], False, Counted())
    b.list_runs()  # b has seen the index with one run
    a.push([two], False, Counted())
    b.push([three], False, Counted())  # written on a condition b's copy no longer meets
    assert sorted(remotes.get("team").list_runs()) == sorted([one.name, two.name, three.name])
    b.delete([one.name])
    a.write_meta(two.name, {".guild/attrs/label": b"raced\n"})
    listing = remotes.get("team").list_runs()
    assert sorted(listing) == sorted([two.name, three.name])
    assert listing[two.name][".guild/attrs/label"] == b"raced\n"


def test_an_empty_root_starts_at_runs(s3, guild_home):
    write_config(guild_home, "bare", type="s3", bucket=s3.bucket, **{"endpoint-url": s3.server.url})
    remote = remotes.get("bare")
    assert remote.describe() == f"S3 bucket {s3.bucket} at {s3.server.url}"
    remote.push([s3.by_label("low")], False, Counted())
    assert {k.split("/")[0] for k in s3.keys()} == {"runs", "meta"}
    assert "is available: 1 run" in remote.status()


def test_ad_hoc_spec():
    remote = remotes.get("s3:my-bucket/some/root")
    assert (remote.bucket, remote.root) == ("my-bucket", "some/root")
    assert remote.describe() == "S3 bucket my-bucket/some/root"
    assert remote._run_prefix("trash", "a" * 32) == f"some/root/trash/runs/{'a' * 32}/"


# -- errors: one line each -------------------------------------------------------


def one_line(excinfo, text: str) -> None:
    msg = str(excinfo.value)
    assert "\n" not in msg and text in msg, msg


def test_missing_bucket_key(guild_home):
    write_config(guild_home, "nob", type="s3", root="x")
    with pytest.raises(GuildError) as e:
        remotes.get("nob")
    one_line(e, "remote 'nob' needs 'bucket' in its config")


def test_no_credentials(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for call in (lambda r: r.status(), lambda r: r.list_runs(), lambda r: r.push(s3.runs(), False, Counted())):
        with pytest.raises(GuildError) as e:
            call(remotes.get("team"))
        one_line(e, "remote 'team': no AWS credentials")


def test_no_such_bucket(s3, guild_home):
    write_config(guild_home, "gone", type="s3", bucket="no-such-bucket-here", **{"endpoint-url": s3.server.url})
    for call in (lambda r: r.status(), lambda r: r.list_runs(), lambda r: r.pull(["a" * 32], guild_home, False, None)):
        with pytest.raises(GuildError) as e:
            call(remotes.get("gone"))
        one_line(e, "remote 'gone': no such bucket 'no-such-bucket-here'")


def test_unreachable_endpoint_fails_fast(guild_home, aws):
    url = f"http://127.0.0.1:{free_port()}"
    write_config(guild_home, "far", type="s3", bucket="b-far", **{"endpoint-url": url})
    start = time.monotonic()
    with pytest.raises(GuildError) as e:
        remotes.get("far").status()
    assert time.monotonic() - start < 10
    one_line(e, f"remote 'far': cannot reach {url}")
    write_config(guild_home, "bad", type="s3", bucket="b-bad", **{"endpoint-url": "not a url"})
    with pytest.raises(GuildError) as e:
        remotes.get("bad").list_runs()
    one_line(e, "remote 'bad': invalid endpoint-url 'not a url'")


def test_a_missing_run_is_named(s3):
    remote = remotes.get("team")
    for call in (lambda: remote.pull(["f" * 32], s3.home / "x", False, None),
                 lambda: remote.restore(["f" * 32]), lambda: remote.delete(["f" * 32])):
        with pytest.raises(GuildError) as e:
            call()
        one_line(e, "remote 'team': no ")


def test_without_boto3(guild_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    write_config(guild_home, "nob3", type="s3", bucket="bucket-x")
    remote = remotes.get("nob3")
    assert remote.describe() == "S3 bucket bucket-x"  # says where without boto3
    with pytest.raises(GuildError) as e:
        remote.list_runs()
    one_line(e, "remote 'nob3' needs boto3: pip install 'guild[s3]'")


def test_import_is_cheap_and_guild_help_does_not_load_boto3(guild_home):
    code = "import sys, guild_remote_s3; print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    write_config(guild_home, "team", type="s3", bucket="bucket-y")
    for args in (["--help"], ["remotes"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "guild_core.cli.main", *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "botocore" not in proc.stderr and "boto3" not in proc.stderr, args
    assert guild_remote_s3.guild_register_remote_types


# -- through the CLI ---------------------------------------------------------------


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


def labels(cli, *args) -> list[str]:
    out = cli("runs", "--json", *args)
    assert out.exit_code == 0, out.stderr
    return sorted(r["label"] for r in json.loads(out.output))


def test_cli_push_filter_pull_delete_restore_purge(s3, cli, tmp_path):
    assert cli("remotes").output.split() == ["team", "s3", "team", "bucket"]
    assert "is available: 0 runs" in cli("remote", "status", "team").output
    pushed = cli("push", "team", "-y")
    assert pushed.exit_code == 0, pushed.stderr
    assert last_line(pushed).startswith("Pushed 3 runs:")
    assert labels(cli, "-r", "team") == ["high", "low", "mid"]
    assert labels(cli, "-r", "team", "-F", "loss < 0.5") == ["low", "mid"]
    assert last_line(cli("push", "team", "-y")) == "Pushed 0 runs: 0 files, 0 bytes (3 runs unchanged)"

    other = tmp_path / "other-home"
    other.mkdir()
    shutil.copy(s3.home / "config.yml", other / "config.yml")
    pulled = cli("-H", str(other), "pull", "team", "-y")
    assert pulled.exit_code == 0, pulled.stderr
    assert last_line(pulled).startswith("Pulled 3 runs:")
    for run_dir in s3.runs():
        assert files_of(other / "runs" / run_dir.name) == files_of(run_dir)
    assert cli("-H", str(other), "runs").output == cli("runs").output
    assert last_line(cli("-H", str(other), "pull", "team", "-y")) == \
        "Pulled 0 runs: 0 files, 0 bytes (3 runs unchanged)"

    assert cli("label", "-r", "team", "--set", "best", "-F", "loss < 0.3", "-y").exit_code == 0
    assert cli("tag", "-r", "team", "--add", "red", "1", "-y").exit_code == 0
    assert labels(cli, "-r", "team") == ["best", "high", "mid"]
    assert labels(cli) == ["high", "low", "mid"]  # the local runs are untouched
    info = cli("runs", "info", "-r", "team", "1").output
    assert "high" in info and "red" in info
    assert "loss: 0.8" in cli("cat", "-r", "team", "--output", "1").output

    assert cli("runs", "delete", "-r", "team", "-F", "loss > 0.7", "-y").exit_code == 0
    assert labels(cli, "-r", "team") == ["best", "mid"]
    assert labels(cli, "-r", "team", "--deleted") == ["high"]
    assert cli("runs", "restore", "-r", "team", "-y").exit_code == 0
    assert labels(cli, "-r", "team") == ["best", "high", "mid"]
    assert labels(cli, "-r", "team", "--deleted") == []
    assert cli("runs", "delete", "-r", "team", "1", "-y").exit_code == 0
    assert cli("runs", "purge", "-r", "team", "-y").exit_code == 0
    assert labels(cli, "-r", "team", "--deleted") == []
    assert labels(cli, "-r", "team") == ["best", "mid"]
    assert "is available: 2 runs" in cli("remote", "status", "team").output
    # The label set remotely came back with a pull.
    cli("-H", str(other), "pull", "team", "-y")
    out = cli("-H", str(other), "runs", "--json")
    assert sorted(r["label"] for r in json.loads(out.output)) == ["best", "high", "mid"]


def test_cli_errors_are_one_line(s3, cli, monkeypatch, guild_home):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    out = cli("runs", "-r", "team")
    assert out.exit_code == 1
    assert out.stderr.strip().splitlines() == [
        "guild: remote 'team': no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
    ]
    write_config(guild_home, "nob", type="s3")
    out = cli("push", "nob", "-y")
    assert out.stderr.strip().splitlines() == ["guild: remote 'nob' needs 'bucket' in its config"]


def guild(*args, env=None):
    return subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_cli_a_push_killed_mid_copy_lists_nothing_and_the_next_completes_it(s3, cli):
    killed = guild("push", "team", "1", "-y", env={"GUILD_FAULTS": "remote.copy.file=kill@5"})
    assert killed.returncode == -9, killed.stderr
    assert labels(cli, "-r", "team") == []
    assert "1 incomplete push" in cli("remote", "status", "team").output
    again = cli("push", "team", "-y")
    assert last_line(again).startswith("Pushed 3 runs:")
    assert labels(cli, "-r", "team") == ["high", "low", "mid"]
    assert "incomplete" not in cli("remote", "status", "team").output


def test_bench_prints_figures(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "remotes.py"), "--runs", "30", "--reps", "1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "list_runs" in proc.stdout and "requests" in proc.stdout, proc.stdout
