"""What listing an S3 remote costs: requests and time over 1,000 runs.

Starts moto's S3 server on loopback (tests/moto_fixture.py), makes one
real run with `guild run`, pushes it, then puts 1,000 runs on the remote
as a push would leave them for listing: a record per run (the real
run's, under a new id with its own label, start time and flags) and the
index of them all, written through the plugin's own functions (the runs'
other files are not copied: listing never reads them). Then times, as
medians over --reps:

  list_runs              Remote.list_runs on a fresh remote object
  view (mirror warm)     remotes.view: list_runs and the local mirror
                         brought up to date (nothing changed)
  view (mirror cold)     the same with the mirror removed first
  guild runs -r          the command, as a fresh subprocess (Python and
                         boto3 start-up included)
  guild runs -r -F       with a filter, 'loss < 0.5'
  index lost             list_runs with the index deleted first: rebuilt
                         from the records (a LIST per 1,000 and a GET each)

and the S3 requests each made (counted by a botocore event hook in this
process, and from the server's request log for the subprocesses).

Usage: python bench/remotes.py [--runs 1000] [--reps 5]

Cleans up its server and temporary directories however it ends
(Ctrl-C and SIGTERM included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from moto_fixture import AWS_ENV, AWS_UNSET, moto_server  # noqa: E402

SCRIPT = "import argparse\np = argparse.ArgumentParser()\np.add_argument('--x', type=float, default=0.5)\n" \
         "a = p.parse_args()\nprint('loss: %s' % a.x)\n"
REMOTE = "bench"
BUCKET = "guild-bench"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="remote runs to list (default 1000)")
    p.add_argument("--reps", type=int, default=5, help="repetitions of each measure (default 5)")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="guild-bench-remotes-"))
    try:
        with moto_server() as server:
            run(server, tmp, args.runs, args.reps)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(server, tmp: Path, n_runs: int, reps: int) -> None:
    os.environ.update(AWS_ENV)
    for key in AWS_UNSET:
        os.environ.pop(key, None)
    home = tmp / "home"
    project = tmp / "project"
    home.mkdir()
    project.mkdir()
    os.environ["GUILD_HOME"] = str(home)
    (project / "train.py").write_text(SCRIPT)
    proc = guild("run", "-y", "train.py", "x=0.3", cwd=project)
    if proc.returncode != 0:
        sys.exit(f"guild run failed: {proc.stderr.strip()}")
    server.client().create_bucket(Bucket=BUCKET)
    (home / "config.yml").write_text(
        f"remotes:\n  {REMOTE}:\n    type: s3\n    bucket: {BUCKET}\n    root: bench\n"
        f"    endpoint-url: {server.url}\n"
    )

    from guild_core import remotes

    start = time.monotonic()
    build(remotes.get(REMOTE), home / "runs", n_runs)
    print(f"S3 remote listing over {n_runs:,} runs (moto server on loopback, medians of {reps})")
    index = server.client().head_object(Bucket=BUCKET, Key=remotes.get(REMOTE)._index_key("runs"))
    print(f"  (put {n_runs:,} records and their index, {index['ContentLength'] / 1024:,.0f} KB gzipped,"
          f" in {time.monotonic() - start:.1f} s)")

    def fresh_list():
        remote = remotes.get(REMOTE)
        counter = count_requests(remote)
        t = time.perf_counter()
        listing = remote.list_runs()
        elapsed = time.perf_counter() - t
        assert len(listing) == n_runs, len(listing)
        return elapsed, counter[0]

    def view(cold: bool):
        def measure():
            if cold:
                shutil.rmtree(remotes.mirror_root(REMOTE), ignore_errors=True)
            remote = remotes.get(REMOTE)
            counter = count_requests(remote)
            t = time.perf_counter()
            runs = remotes.view(remote)
            elapsed = time.perf_counter() - t
            assert len(runs) == n_runs, len(runs)
            return elapsed, counter[0]
        return measure

    def command(*args):
        def measure():
            before = server.requests()
            t = time.perf_counter()
            proc = guild("runs", "-r", REMOTE, "-a", *args, cwd=project)
            elapsed = time.perf_counter() - t
            if proc.returncode != 0:
                sys.exit(f"guild runs -r failed: {proc.stderr.strip()}")
            rows = len(proc.stdout.splitlines())
            assert rows == n_runs, rows
            time.sleep(0.3)  # the server logs a request after answering it
            return elapsed, server.requests() - before
        return measure

    def rebuild():
        remote = remotes.get(REMOTE)
        server.client().delete_object(Bucket=BUCKET, Key=remote._index_key("runs"))
        counter = count_requests(remote)
        t = time.perf_counter()
        listing = remote.list_runs()
        elapsed = time.perf_counter() - t
        assert len(listing) == n_runs
        return elapsed, counter[0]

    measures = [
        ("list_runs", fresh_list),
        ("view (mirror warm)", view(False)),
        ("view (mirror cold)", view(True)),
        (f"guild runs -r {REMOTE}", command()),
        (f"guild runs -r {REMOTE} -F 'loss < 0.5'", command("-F", "loss < 0.5")),
        ("list_runs, index lost", rebuild),
    ]
    view(False)()  # the mirror in place for the warm measures
    print(f"  {'':<38} {'time':>12}  {'requests':>8}")
    for label, measure in measures:
        results = [measure() for _ in range(reps)]
        ms = statistics.median(r[0] for r in results) * 1000
        requests = statistics.median(r[1] for r in results)
        print(f"  {label:<38} {ms:>9,.1f} ms  {requests:>8,.0f}")


def build(remote, runs_dir: Path, n_runs: int) -> None:
    """Push the one real run, then `n_runs` records made from its own,
    each under a new id, and one index of them all."""
    from guild_core import remotes

    (seed,) = list(runs_dir.iterdir())
    remote.push([seed], False, None)
    record, _etag = remote._get_record("runs", seed.name)
    remote.delete([seed.name], permanent=True)
    base_started = int(record["meta"][".guild/attrs/started"].strip())

    def clone(i: int):
        run_id = uuid.uuid4().hex
        x = round(0.001 * i, 3)
        meta = dict(record["meta"])
        meta[".guild/attrs/id"] = run_id + "\n"
        meta[".guild/attrs/label"] = f"x={x}\n"
        meta[".guild/attrs/flags"] = f"x: {x}\n"
        meta[".guild/attrs/started"] = f"{base_started + i * 1_000_000}\n"
        files = dict(record["files"])
        for rel in (".guild/attrs/id", ".guild/attrs/label", ".guild/attrs/flags", ".guild/attrs/started"):
            files[rel] = [len(meta[rel].encode()), *files[rel][1:]]
        new = {**record, "id": run_id, "files": files, "meta": meta}
        return run_id, {"etag": remote._put_record("runs", run_id, new), "meta": meta}

    entries = dict(remote._each(clone, range(n_runs)))
    remote._set_entries("runs", entries)
    assert len(remotes.get(remote.name).list_runs()) == n_runs


def count_requests(remote) -> list[int]:
    counter = [0]

    def seen(**_kwargs):
        counter[0] += 1

    remote._client().meta.events.register("before-send.s3", seen)
    return counter


def guild(*args, cwd: Path):
    return subprocess.run([sys.executable, "-m", "guild_core.cli.main", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


if __name__ == "__main__":
    main()
