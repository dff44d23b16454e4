"""How guild copes with many runs: homes of 1,000 to 100,000 runs.

Builds a Guild home per size by cloning real run directories: a handful
of runs made with `guild run` (completed, failed, terminated and staged;
labelled, tagged, marked and commented), each cloned under new run ids
with its own flags, label, tags, start time, status and scalars (event
file, output and output index rewritten; the files no command reads
differently, such as the source snapshot and the command, are hard
links to the seed's). Homes are cached under --cache-dir and reused.

Then times each command as a fresh subprocess with GUILD_HOME pointed
at the home, and prints the median wall time and the peak RSS of the
child (the largest over the repetitions):

  runs         guild runs
  runs-all     guild runs -a
  filter       guild runs -a --filter 'loss < 0.5'   (after a warm-up run)
  filter-cold  the same with $GUILD_HOME/cache/ deleted before each run
  json         guild runs --json
  compare      guild compare --csv -
  run          guild run -y noop.py in a project, against the same on an
               empty home (the difference is what the home's size costs)

Every command but filter-cold gets one untimed warm-up run first, so
indexes, bytecode and the OS's file cache are warm. Runs that `run`
adds are removed again, so a cached home keeps its size.

Usage: python bench/scale.py [--sizes 1000,10000] [--reps 3]
           [--commands runs,filter,...] [--cache-dir DIR] [--guild EXE]

The default sizes take a few minutes on 2 cores; --sizes 100000 builds
(once) and times a home of 100,000 runs. `--guild EXE` times another
guild, e.g. Guild AI's, the same way (bench/compare_guildai.py puts the
two side by side).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Bump when the homes built change, so cached homes are rebuilt.
BUILD_VERSION = 1

DEFAULT_SIZES = [1000, 10000]

SEED_SCRIPT = """\
import sys
import time

lr = 0.1
epochs = 3
optimizer = "sgd"
fail = False
sleep = 0.0

for step in range(epochs):
    print("step: %d" % step)
    print("loss: %f" % (lr * 5 / (step + 1)))
    print("acc: %f" % (0.5 + step * 0.04))
    sys.stdout.flush()
    time.sleep(sleep)
if fail:
    sys.exit(1)
"""

# Seed runs: (flag args, other run args, status). Each status is cloned
# from a seed that really ended that way.
SEEDS = [
    (["lr=0.05", "optimizer=adam"], ["--label", "baseline", "-t", "baseline"], "completed"),
    (["lr=0.2", "epochs=5"], [], "completed"),
    (["lr=0.01", "epochs=10", "optimizer=rmsprop"], ["-t", "sweep"], "completed"),
    (["lr=0.3", "fail=yes"], [], "error"),
    (["lr=0.1", "epochs=5", "sleep=30"], [], "terminated"),
    (["lr=0.1"], ["--stage"], "staged"),
]

# Share of each status among the clones.
STATUS_WEIGHTS = {"completed": 80, "error": 10, "terminated": 5, "staged": 5}

EPOCHS = (3, 5, 10)
OPTIMIZERS = ("sgd", "adam", "rmsprop")
TAGS = ("baseline", "sweep", "best", "v2", "ablation")
LABELS = ("baseline", "long run", "retry", "best so far", "check")
SCALAR_VARIANTS = 256

# Files a clone writes itself; every other file of its seed is linked.
_REWRITTEN_ATTRS = {
    "id", "flags", "label", "initialized", "started", "stopped", "exit_status",
    "tags", "marked", "comments",
}
_REWRITTEN_GUILD = {"output", "output.index"}
# ext4 allows 65,000 links to a file: start a fresh copy well before.
_MAX_LINKS = 30000


# ---------------------------------------------------------------------------
# Running commands


def guild_exe() -> list[str]:
    """The guild beside the Python running this script."""
    exe = shutil.which("guild", path=os.path.dirname(sys.executable)) or shutil.which("guild")
    return [exe] if exe else [sys.executable, "-m", "guild_core.cli.main"]


def timed(cmd: list[str], repeats: int, env: dict, cwd: Path) -> float:
    """The median wall time, in ms, of `cmd` run `repeats` times."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


@dataclass
class Result:
    seconds: float
    maxrss_kb: int
    returncode: int
    timed_out: bool
    stderr: str
    stdout: str | None = None


def run_once(
    cmd: list[str], env: dict, cwd: Path, timeout: float | None = None, capture: bool = False,
) -> Result:
    """Run `cmd` once; wall time and peak RSS (the child's and its own
    children's, from wait4). Its output goes to a file when `capture`
    (and is returned), else nowhere."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out if capture else subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C or SIGTERM: the child has its own session (so a
            # timeout can kill its whole group) and would not see it.
            kill()
            proc.wait()
            raise
        finally:
            if timer:
                timer.cancel()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        stdout = None
        if capture:
            out.seek(0)
            stdout = out.read().decode("utf-8", "replace")
    return Result(seconds, usage.ru_maxrss, proc.returncode, timed_out.is_set(), stderr, stdout)


def exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so the command in flight is killed and
    temporary directories are removed, as on Ctrl-C."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def home_env(home: Path) -> dict:
    env = dict(os.environ, GUILD_HOME=str(home))
    env.pop("GUILD_FAULTS", None)
    return env


def check(result: Result, what: str) -> None:
    if result.timed_out:
        return
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output on stderr)"]
        raise SystemExit(f"{what} failed (exit {result.returncode}): {lines[-1]}")


# ---------------------------------------------------------------------------
# Building homes


def make_seed(seed_dir: Path, guild: list[str]) -> Path:
    """Real runs made with `guild run` in `seed_dir/home`; returns the
    home. The project stays beside it: the runs' oprefs name it."""
    project = seed_dir / "project"
    home = seed_dir / "home"
    project.mkdir(parents=True)
    home.mkdir()
    (project / "train.py").write_text(SEED_SCRIPT)
    env = home_env(home)
    for flags, args, status in SEEDS:
        cmd = guild + ["run", "-y", "train.py"] + flags + args
        if status == "terminated":
            _run_terminated(cmd, env, project)
            continue
        proc = subprocess.run(cmd, env=env, cwd=project, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != (1 if status == "error" else 0):
            raise SystemExit(f"seed run {' '.join(flags)} failed: {proc.stderr.strip()}")
    # Newest first: SEEDS[-1] is run 1. Mark the first, comment the
    # second (the first seeds, listed last).
    n = len(SEEDS)
    for args in (["mark", "-y", str(n)], ["comment", "-y", str(n - 1), "-m", "worth a second look"]):
        subprocess.run(guild + args, env=env, cwd=project, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return home


def _run_terminated(cmd: list[str], env: dict, cwd: Path) -> None:
    """Start a run and send its guild SIGTERM after its first scalar."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in proc.stdout:
        if line.startswith(b"acc:"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.stdout.read()
    proc.wait()


def _seed_status(run_dir: Path) -> str:
    g = run_dir / ".guild"
    if (g / "STAGED").exists():
        return "staged"
    try:
        exit_status = int((g / "attrs" / "exit_status").read_text())
    except (OSError, ValueError):
        return "error"
    return "completed" if exit_status == 0 else "terminated" if exit_status < 0 else "error"


class _Seed:
    """One seed run: what a clone links and what it writes itself."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.status = _seed_status(run_dir)
        self.dirs: list[str] = []
        self.files: list[str] = []
        for root, dirnames, filenames in os.walk(run_dir):
            rel = os.path.relpath(root, run_dir)
            for d in dirnames:
                self.dirs.append(os.path.normpath(os.path.join(rel, d)))
            for f in filenames:
                path = os.path.normpath(os.path.join(rel, f))
                if not self._rewritten(path):
                    self.files.append(path)
        self.link_src: str | None = str(run_dir)
        self.links = 0

    @staticmethod
    def _rewritten(path: str) -> bool:
        parts = path.split(os.sep)
        if parts[:2] == [".guild", "attrs"] and len(parts) == 3:
            return parts[2] in _REWRITTEN_ATTRS
        if parts[0] == ".guild" and len(parts) == 2:
            return parts[1] in _REWRITTEN_GUILD or parts[1].startswith("events.out.tfevents.")
        return False


def _scalar_variant(v: int, epochs: int, steps: int, tmp: Path) -> tuple[bytes, list[str]]:
    """Event file bytes and output lines of scalar variant `v`: a loss
    falling to a final value spread over 0.05..1.0, and an accuracy."""
    from guild_core import tfevents

    final = 0.05 + 0.95 * ((v * 0.6180339887) % 1.0)
    writer = tfevents.EventWriter(tmp)
    lines = []
    for step in range(steps):
        loss = final * ((epochs / (step + 1)) ** 0.5)
        acc = min(0.99, 1.0 - loss / 2)
        writer.add_scalar("loss", loss, step, wall_time=1.0e9 + step)
        writer.add_scalar("acc", acc, step, wall_time=1.0e9 + step)
        lines += [f"step: {step}\n", f"loss: {loss:f}\n", f"acc: {acc:f}\n"]
    path = writer.path
    writer.close()
    data = Path(path).read_bytes()
    os.remove(path)
    return data, lines


def _yaml_scalar(val) -> str:
    if isinstance(val, bool):
        return "true" if val else "false"
    return str(val)


def _label_value(val) -> str:
    if isinstance(val, bool):
        return "yes" if val else "no"
    return str(val)


class _Builder:
    def __init__(self, seeds: list[_Seed], size: int, tmp: Path):
        self.by_status: dict[str, list[_Seed]] = {}
        for seed in seeds:
            self.by_status.setdefault(seed.status, []).append(seed)
        missing = set(STATUS_WEIGHTS) - set(self.by_status)
        if missing:
            raise SystemExit(f"seed runs lack statuses {sorted(missing)}")
        self.rng = random.Random(size)
        self.tmp = tmp
        self.variants: dict[tuple[int, int, int], tuple[bytes, list[str]]] = {}
        self.statuses = list(STATUS_WEIGHTS)
        self.weights = list(STATUS_WEIGHTS.values())
        self.pid = os.getpid()

    def variant(self, v: int, epochs: int, steps: int):
        key = (v, epochs, steps)
        if key not in self.variants:
            self.variants[key] = _scalar_variant(v, epochs, steps, self.tmp)
        return self.variants[key]

    def clone(self, runs: str, started_us: int) -> None:
        # Plain string paths: pathlib costs as much as the file system here.
        rng = self.rng
        status = rng.choices(self.statuses, self.weights)[0]
        seeds = self.by_status[status]
        seed = seeds[rng.randrange(len(seeds))]
        run_id = os.urandom(16).hex()
        dest = f"{runs}/{run_id}"
        os.mkdir(dest)
        for d in seed.dirs:
            os.mkdir(f"{dest}/{d}")
        if seed.links >= _MAX_LINKS:
            seed.link_src, seed.links = None, 0
        for f in seed.files:
            if seed.link_src is not None:
                try:
                    os.link(f"{seed.link_src}/{f}", f"{dest}/{f}", follow_symlinks=False)
                    continue
                except OSError:
                    pass
            shutil.copy2(f"{seed.dir}/{f}", f"{dest}/{f}", follow_symlinks=False)
        if seed.link_src is None:
            seed.link_src = dest
        seed.links += 1

        epochs = rng.choice(EPOCHS)
        flags = {
            "epochs": epochs,
            "fail": status == "error",
            "lr": float(f"{10 ** rng.uniform(-3, -0.3):.4f}"),
            "optimizer": rng.choice(OPTIMIZERS),
            "sleep": 30.0 if status == "terminated" else 0.0,
        }
        g = f"{dest}/.guild"
        attrs = f"{g}/attrs"
        write = _write_text
        write(f"{attrs}/id", run_id + "\n")
        write(f"{attrs}/flags", "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in flags.items()))
        if rng.random() < 0.05:
            label = rng.choice(LABELS)
        else:
            label = " ".join(f"{k}={_label_value(v)}" for k, v in flags.items())
        write(f"{attrs}/label", label + "\n")
        write(f"{attrs}/initialized", f"{started_us - 12_000}\n")
        write(f"{attrs}/started", f"{started_us}\n")
        if rng.random() < 0.15:
            tags = rng.sample(TAGS, rng.randint(1, 2))
            write(f"{attrs}/tags", "".join(f"- {t}\n" for t in tags))
        if rng.random() < 0.02:
            write(f"{attrs}/marked", "true\n")
        if rng.random() < 0.02:
            write(f"{attrs}/comments", (
                f"- body: note {rng.randrange(1000)}\n  host: bench\n"
                f"  time: {started_us + 60_000_000}\n  user: bench\n"
            ))
        if status == "staged":
            return
        steps = epochs if status != "terminated" else max(1, epochs // 2)
        events, lines = self.variant(rng.randrange(SCALAR_VARIANTS), epochs, steps)
        duration_us = steps * 1_500_000 + rng.randrange(500_000)
        exit_status = {"completed": 0, "error": 1, "terminated": -15}[status]
        write(f"{attrs}/stopped", f"{started_us + duration_us}\n")
        write(f"{attrs}/exit_status", f"{exit_status}\n")
        _write_bytes(f"{g}/events.out.tfevents.{started_us // 1_000_000}.bench.{self.pid}.0", events)
        write(f"{g}/output", "".join(lines))
        t0_ms = started_us // 1000 + 20
        step_ms = duration_us // 1000 // max(1, len(lines))
        _write_bytes(f"{g}/output.index", b"".join(
            struct.pack(">QB", t0_ms + i * step_ms, 0) for i in range(len(lines))
        ))


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "guild-bench"


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass
    return True


def build_home(size: int, cache_dir: Path, log=print) -> Path:
    """A Guild home of `size` runs under `cache_dir`, built once and
    reused: the directory is renamed into place only when complete. The
    seed runs are made with this project's guild, whichever is timed."""
    base = cache_dir / f"scale-v{BUILD_VERSION}"
    home = base / f"home-{size}"
    if (home / "runs").is_dir():
        return home
    base.mkdir(parents=True, exist_ok=True)
    seed_dir = base / "seed"
    seed_home = seed_dir / "home"
    if not (seed_dir / "complete").exists():
        # Made in place (the runs name their project's path), marked
        # complete last.
        shutil.rmtree(seed_dir, ignore_errors=True)
        log("making seed runs with guild run ...")
        make_seed(seed_dir, guild_exe())
        (seed_dir / "complete").touch()
    seeds = [_Seed(p) for p in sorted((seed_home / "runs").iterdir()) if p.is_dir()]
    for leftover in base.glob(f".home-{size}-*"):
        if not _alive(leftover.name.rsplit("-", 1)[1]):
            shutil.rmtree(leftover, ignore_errors=True)
    partial = base / f".home-{size}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    runs = partial / "runs"
    runs.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            builder = _Builder(seeds, size, Path(tmp))
            now_us = int(time.time() * 1e6)
            for i in range(size):
                # Newest first, a minute apart, with some jitter.
                builder.clone(str(runs), now_us - i * 60_000_000 - builder.rng.randrange(30_000_000))
        os.rename(partial, home)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"built a home of {size:,} runs in {time.perf_counter() - t0:.1f} s")
    return home


# ---------------------------------------------------------------------------
# Commands

FILTER = "loss < 0.5"

COMMANDS = {
    "runs": ("guild runs", ["runs"]),
    "runs-all": ("guild runs -a", ["runs", "-a"]),
    "filter": (f"guild runs -a --filter '{FILTER}'  (warm)", ["runs", "-a", "--filter", FILTER]),
    "filter-cold": (f"guild runs -a --filter '{FILTER}'  (cold)", ["runs", "-a", "--filter", FILTER]),
    "json": ("guild runs --json", ["runs", "--json"]),
    "compare": ("guild compare --csv -", ["compare", "--csv", "-"]),
    "run": ("guild run -y noop.py", None),
}


def drop_cache(home: Path) -> None:
    shutil.rmtree(home / "cache", ignore_errors=True)


def time_command(
    guild: list[str], key: str, home: Path, cwd: Path, reps: int,
    timeout: float | None = None, warm: bool = True,
) -> list[Result]:
    """`reps` timed runs of command `key` (not `run`) on `home`."""
    args = COMMANDS[key][1]
    env = home_env(home)
    cold = key.endswith("-cold")
    if warm and not cold:
        check(run_once(guild + args, env, cwd, timeout), COMMANDS[key][0])
    results = []
    for _ in range(reps):
        if cold:
            drop_cache(home)
        result = run_once(guild + args, env, cwd, timeout)
        check(result, COMMANDS[key][0])
        results.append(result)
        if result.timed_out:
            break
    return results


def time_run(guild: list[str], home: Path, empty_home: Path, project: Path, reps: int):
    """`guild run -y noop.py` on `home` and on `empty_home`, alternately;
    the runs made are removed again."""
    cmd = guild + ["run", "-y", "noop.py"]
    timings: dict[Path, list[Result]] = {home: [], empty_home: []}
    for i in range(reps + 1):
        for h in (empty_home, home):
            before = set(os.listdir(h / "runs")) if (h / "runs").is_dir() else set()
            result = run_once(cmd, home_env(h), project)
            check(result, "guild run -y noop.py")
            for name in set(os.listdir(h / "runs")) - before:
                shutil.rmtree(h / "runs" / name, ignore_errors=True)
            if i:  # the first round warms up
                timings[h].append(result)
    return timings[home], timings[empty_home]


def median_ms(results: list[Result]) -> float:
    return statistics.median(r.seconds for r in results) * 1000


def peak_mb(results: list[Result]) -> float:
    return max(r.maxrss_kb for r in results) / 1024


def fmt_ms(ms: float) -> str:
    return f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sizes are numbers separated by commas: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be 1 or more: {text!r}")
    return sizes


def parse_commands(text: str, allowed=COMMANDS) -> list[str]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in allowed]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown command {', '.join(unknown) or text!r}; choose from {', '.join(allowed)}"
        )
    return keys


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                   help="home sizes, comma-separated (default: 1000,10000)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each command (default: 3)")
    p.add_argument("--commands", type=parse_commands, default=list(COMMANDS),
                   help=f"commands to time, comma-separated: {','.join(COMMANDS)} (default: all)")
    p.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="where built homes are kept and reused (default: guild-bench in the temp dir)")
    p.add_argument("--guild", help="the guild executable to time (default: the one beside this Python)")
    args = p.parse_args()
    if args.reps < 1:
        p.error("--reps must be 1 or more")
    exit_on_sigterm()
    guild = [args.guild] if args.guild else guild_exe()
    print(f"{args.reps} timed runs per command; median wall time, peak RSS of the largest run")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        project = tmp / "project"
        project.mkdir()
        (project / "noop.py").write_text("pass\n")
        empty_home = tmp / "empty-home"
        (empty_home / "runs").mkdir(parents=True)
        for size in args.sizes:
            home = build_home(size, args.cache_dir)
            print(f"\n{size:,} runs")
            for key in args.commands:
                title = COMMANDS[key][0]
                if key == "run":
                    on_home, on_empty = time_run(guild, home, empty_home, project, args.reps)
                    diff = median_ms(on_home) - median_ms(on_empty)
                    print(f"  {title:44s} {fmt_ms(median_ms(on_home)):>10s}  {peak_mb(on_home):6.0f} MB"
                          f"  (empty home {fmt_ms(median_ms(on_empty))}: {diff:+,.0f} ms)")
                    continue
                results = time_command(guild, key, home, project, args.reps)
                print(f"  {title:44s} {fmt_ms(median_ms(results)):>10s}  {peak_mb(results):6.0f} MB")


if __name__ == "__main__":
    main()
