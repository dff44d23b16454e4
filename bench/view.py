"""How fast `guild view` shows the first page of runs: 1,000 and
100,000 runs.

Uses bench/scale.py's homes (built once, cached under --cache-dir).
For each size it starts `guild view -n --port 0` on the home, waits
for its address, and times HTTP GET /api/runs?limit=50 (what the page
asks first):

  cold      the first request of a fresh server (the run index on
            disk, as the last command left it; the process has read
            nothing yet)
  warm      the median of the next --reps requests
  no-index  the first request after $GUILD_HOME/cache/ was deleted
            (the index rebuilt), with --no-index-cold

Each figure is the median over --servers fresh servers (cold) and the
wall time of the request only (the server's start-up is printed
apart).

Usage: python bench/view.py [--sizes 1000,100000] [--reps 5]
           [--servers 3] [--cache-dir DIR] [--no-index-cold]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale  # noqa: E402

PAGE = "/api/runs?limit=50"


def start_view(home: Path) -> tuple[subprocess.Popen, str, float]:
    env = scale.home_env(home)
    cmd = [*scale.guild_exe(), "view", "-n", "--port", "0"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    line = proc.stdout.readline()
    up = time.perf_counter() - t0
    m = re.search(r"(http://\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"guild view printed no address: {line!r} {proc.stderr.read()}")
    return proc, m.group(1), up


def get(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as resp:
        body = resp.read()
    return time.perf_counter() - t0, len(body)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def first_page(home: Path, reps: int) -> tuple[float, float, list[float]]:
    """(start-up s, cold s, warm times) of one fresh server."""
    proc, url, up = start_view(home)
    try:
        cold, _n = get(url + PAGE)
        warm = [get(url + PAGE)[0] for _ in range(reps)]
    finally:
        stop(proc)
    return up, cold, warm


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=scale.parse_sizes, default=[1000, 100000])
    p.add_argument("--reps", type=int, default=5, help="warm requests per server (default: 5)")
    p.add_argument("--servers", type=int, default=3, help="fresh servers per size (default: 3)")
    p.add_argument("--cache-dir", type=Path, default=scale.default_cache_dir())
    p.add_argument("--no-index-cold", action="store_true",
                   help="also time the first page with the run index deleted")
    args = p.parse_args()
    scale.exit_on_sigterm()
    print(f"GET {PAGE}: median of {args.servers} fresh servers (cold), {args.reps} requests each (warm)")
    for size in args.sizes:
        home = scale.build_home(size, args.cache_dir)
        # One untimed server first: the OS's file cache and the index
        # as a user's earlier command leaves them.
        first_page(home, 1)
        ups, colds, warms = [], [], []
        for _ in range(args.servers):
            up, cold, warm = first_page(home, args.reps)
            ups.append(up)
            colds.append(cold)
            warms.extend(warm)
        print(f"\n{size:,} runs")
        print(f"  start-up (address printed)  {fmt(statistics.median(ups)):>10s}")
        print(f"  first page, cold            {fmt(statistics.median(colds)):>10s}")
        print(f"  first page, warm            {fmt(statistics.median(warms)):>10s}")
        if args.no_index_cold:
            scale.drop_cache(home)
            _up, cold, _w = first_page(home, 0)
            print(f"  first page, index deleted   {fmt(cold):>10s}")


if __name__ == "__main__":
    main()
