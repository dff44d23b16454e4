"""guild against Guild AI 0.9 on the same homes of many runs.

Builds (or reuses) the homes of bench/scale.py and points both tools at
the same home, one after the other in each repetition (the order
swapped every repetition, so machine noise hits both), each command a
fresh subprocess. Prints for each command Guild AI's median, ours, and
the ratio ours / Guild AI (below 1: we are faster):

  runs         guild runs
  runs-all     guild runs -a
  filter       guild runs -a --filter 'loss < 0.5'
  compare      guild compare --csv -

Each tool gets one untimed warm-up run of each command first, whose
output is also checked: both should list the same number of runs (a
difference is printed). A run that takes longer than --timeout is
killed and shown as "timeout"; that tool's remaining repetitions of
the command are skipped.

Guild AI keeps its own index under $GUILD_HOME/cache/runs/, ours lives
elsewhere under cache/; neither writes into the run directories, so
the two read the same runs without disturbing each other.

Usage:
  python bench/compare_guildai.py --install            # once: Guild AI in its own virtualenv
  python bench/compare_guildai.py [--sizes 1000] [--reps 3] [--commands runs,filter]
                                  [--timeout 120] [--guildai PATH] [--cache-dir DIR]

--install creates a virtualenv (default: guild-bench/guildai-0.9.0 in
the user cache dir, or --venv DIR) and installs guildai==0.9.0 with the
numpy and scikit-learn it works with; --guildai PATH uses an existing
Guild AI `guild` executable instead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import scale

GUILDAI_REQUIREMENTS = ["guildai==0.9.0", "numpy<1.25", "scikit-learn<1.3"]
COMMAND_KEYS = ["runs", "runs-all", "filter", "compare"]
_RUN_LINE_P = re.compile(r"^\[\d+:[0-9a-f]+\]")


def default_venv() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "guild-bench" / "guildai-0.9.0"


def install(venv: Path, python: str) -> Path:
    """A virtualenv at `venv` with Guild AI 0.9 in it; its `guild`."""
    print(f"creating a virtualenv for Guild AI 0.9 ({python}) ...", flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run(pip + ["install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run(pip + ["install", "-q"] + GUILDAI_REQUIREMENTS, check=True)
    return venv / "bin" / "guild"


def guildai_version(exe: str) -> str:
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{exe} --version failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def rows(key: str, output: str | None) -> int | None:
    """How many runs a command's output shows."""
    if output is None:
        return None
    lines = output.splitlines()
    if key == "compare":
        return max(0, len([line for line in lines if line.strip()]) - 1)
    return sum(1 for line in lines if _RUN_LINE_P.match(line))


def describe(results: list[scale.Result], timeout: float, failure: str | None) -> tuple[str, float | None]:
    if failure:
        return "failed", None
    if any(r.timed_out for r in results) or not results:
        return f"timeout (>{timeout:g} s)", None
    ms = scale.median_ms(results)
    return scale.fmt_ms(ms), ms


def compare_command(key: str, tools: dict[str, list[str]], home: Path, cwd: Path, reps: int, timeout: float):
    """Warm-up and `reps` interleaved timed runs of command `key` for
    each tool; {tool: (results, failure)} and the row counts seen."""
    args = scale.COMMANDS[key][1]
    env = scale.home_env(home)
    results: dict[str, list[scale.Result]] = {name: [] for name in tools}
    failures: dict[str, str | None] = {name: None for name in tools}
    counts: dict[str, int | None] = {}
    for name, guild in tools.items():
        warm = scale.run_once(guild + args, env, cwd, timeout, capture=True)
        if warm.timed_out:
            results[name].append(warm)
        elif warm.returncode != 0:
            lines = warm.stderr.strip().splitlines() or [f"exit {warm.returncode}"]
            failures[name] = lines[-1]
        counts[name] = None if warm.timed_out else rows(key, warm.stdout)
    order = list(tools)
    for rep in range(reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            if failures[name] or any(r.timed_out for r in results[name]):
                continue
            result = scale.run_once(tools[name] + args, env, cwd, timeout)
            if not result.timed_out and result.returncode != 0:
                lines = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
                failures[name] = lines[-1]
                continue
            results[name].append(result)
    return {name: (results[name], failures[name]) for name in tools}, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--install", action="store_true",
                   help="create the Guild AI virtualenv (at --venv) if it is not there, then compare")
    p.add_argument("--venv", type=Path, default=default_venv(),
                   help="Guild AI's virtualenv (default: guild-bench/guildai-0.9.0 in the user cache dir)")
    p.add_argument("--python", default=sys.executable,
                   help="the Python --install creates the virtualenv with (3.8 to 3.11)")
    p.add_argument("--guildai", help="an existing Guild AI 0.9 guild executable (instead of --venv)")
    p.add_argument("--sizes", type=scale.parse_sizes, default=[1000],
                   help="home sizes, comma-separated (default: 1000)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each command per tool (default: 3)")
    p.add_argument("--commands", type=lambda t: scale.parse_commands(t, COMMAND_KEYS), default=COMMAND_KEYS,
                   help=f"commands to time, comma-separated: {','.join(COMMAND_KEYS)} (default: all)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds one run of a command may take before it is killed (default: 120)")
    p.add_argument("--cache-dir", type=Path, default=scale.default_cache_dir(),
                   help="where built homes are kept and reused (shared with bench/scale.py)")
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be 1 or more")
    scale.exit_on_sigterm()
    if args.guildai:
        guildai = args.guildai
    else:
        guildai = str(args.venv / "bin" / "guild")
        if not os.path.exists(guildai):
            if not args.install:
                p.error(f"no Guild AI at {guildai}: run with --install, or give --guildai PATH")
            guildai = str(install(args.venv, args.python))
    version = guildai_version(guildai)
    if " 0.9" not in f" {version.split()[-1]}":
        print(f"warning: expected Guild AI 0.9, found {version}")
    tools = {"Guild AI": [guildai], "ours": scale.guild_exe()}
    print(f"Guild AI: {version}; {args.reps} timed runs per command and tool, interleaved; medians")
    with tempfile.TemporaryDirectory() as cwd:
        for size in args.sizes:
            compare_size(size, tools, Path(cwd), args)


def compare_size(size: int, tools: dict[str, list[str]], cwd: Path, args) -> None:
    """Both tools on a home of `size` runs: one table."""
    home = scale.build_home(size, args.cache_dir)
    print(f"\n{size:,} runs")
    print(f"  {'command':44s} {'Guild AI':>16s} {'ours':>16s}  {'ours/Guild AI':>13s}")
    for key in args.commands:
        timed, counts = compare_command(key, tools, home, cwd, args.reps, args.timeout)
        cells = {}
        ms = {}
        for name, (results, failure) in timed.items():
            cells[name], ms[name] = describe(results, args.timeout, failure)
        ratio = (
            f"{ms['ours'] / ms['Guild AI']:.2f}"
            if ms["ours"] is not None and ms["Guild AI"] else "-"
        )
        title = scale.COMMANDS[key][0]
        print(f"  {title:44s} {cells['Guild AI']:>16s} {cells['ours']:>16s}  {ratio:>13s}")
        for name, (_, failure) in timed.items():
            if failure:
                print(f"    {name} failed: {failure}")
        theirs, ours = counts["Guild AI"], counts["ours"]
        if theirs is not None and ours is not None and theirs != ours:
            print(f"    runs shown differ: Guild AI {theirs}, ours {ours}")


if __name__ == "__main__":
    main()
