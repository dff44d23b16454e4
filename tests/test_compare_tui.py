"""The interactive `guild compare`, driven in a pseudo-terminal: keys
typed as a user types them, the screen read back through the pyte
terminal emulator, the terminal's modes checked after it exits."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from guild_core.run import Run

pyte = pytest.importorskip("pyte")

ROWS, COLS = 24, 140
RIGHT, LEFT = "\x1bOC", "\x1bOD"  # xterm's arrow keys in keypad mode

TRAIN = """
x = 1
for i in range(3):
    print("loss: %s" % (x / 2 ** (i + 1)))
print("acc: %s" % (1 - x / 8))
"""


class Term:
    """A command in a pseudo-terminal of a fixed size."""

    def __init__(self, argv: list[str], env: dict, rows: int = ROWS, cols: int = COLS):
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.proc = subprocess.Popen(
            argv,
            stdin=self.slave,
            stdout=self.slave,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )

    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            self.stream.feed(data)

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, pred, what: str, timeout: float = 15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            val = pred(self.lines())
            if val:
                return val
            if self.proc.poll() is not None:
                self.pump(0.05)
                if not pred(self.lines()):
                    break
            self.pump(0.05)
        raise AssertionError(f"no {what} on the screen:\n" + "\n".join(self.lines()))

    def wait_text(self, text: str) -> None:
        self.wait_for(lambda lines: any(text in line for line in lines), repr(text))

    def keys(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_exit(self, timeout: float = 15.0) -> int:
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.pump(0.05)
        assert self.proc.poll() is not None, "guild did not exit:\n" + "\n".join(self.lines())
        return self.proc.returncode

    def stderr(self) -> str:
        return self.proc.stderr.read().decode()

    def lflag(self) -> int:
        return termios.tcgetattr(self.slave)[3]

    def highlighted(self) -> tuple[int, str]:
        """The row and text of the reverse-video cell below the headings."""
        for y in range(3, self.screen.lines):
            row = self.screen.buffer[y]
            text = "".join(row[x].data for x in range(self.screen.columns) if row[x].reverse)
            if text.strip():
                return y, text.strip()
        raise AssertionError("no highlighted cell:\n" + "\n".join(self.lines()))

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term(guild_home, project):
    """``term(*args, code=None, rows=, cols=, env=)``: `guild ARGS` (or
    ``python -c CODE ARGS``) in a pseudo-terminal; every one started is
    killed and closed after the test, passed or not."""
    started: list[Term] = []

    def start(*args, code=None, rows=ROWS, cols=COLS, env=None):
        full_env = dict(os.environ, TERM="xterm", LC_ALL="C.UTF-8")
        for name in ("LINES", "COLUMNS"):
            full_env.pop(name, None)
        full_env.update(env or {})
        if code is None:
            argv = [sys.executable, "-m", "guild_core.cli.main", *args]
        else:
            argv = [sys.executable, "-c", code, *args]
        t = Term(argv, full_env, rows, cols)
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


@pytest.fixture
def runs(cli, project):
    """Three runs, newest first: b (x=2), c (x=3), a (x=1)."""
    project.write("train.py", TRAIN)
    for x, label in (("1", "a"), ("3", "c"), ("2", "b")):
        assert cli("run", "train.py", f"x={x}", "-l", label, "-y").exit_code == 0
    by_label = {}
    for run in _all_runs(cli):
        by_label[run.get("label")] = run
    return by_label


def _all_runs(cli):
    out = cli("select", "-A")
    assert out.exit_code == 0, out.stderr
    from guild_core.home import runs_dir

    return [Run.for_dir(runs_dir() / run_id) for run_id in out.output.split()]


def table(cli, *args) -> list[str]:
    result = cli("compare", "--table", *args)
    assert result.exit_code == 0, result.stderr
    return [line.rstrip() for line in result.output.splitlines()]


def row_ids(t: Term) -> list[str]:
    """The run ids of the rows shown, top to bottom."""
    return [line.split()[0] for line in t.lines()[3:] if line.strip()]


def ids(runs, labels: str) -> list[str]:
    return [runs[label].short_id for label in labels]


def restored(t: Term) -> bool:
    both = termios.ECHO | termios.ICANON
    return t.lflag() & both == both


def test_shows_the_table_and_quits_with_q(term, runs, cli):
    expected = table(cli)
    t = term("compare")
    assert restored(t)  # as a terminal starts
    t.wait_for(lambda lines: lines[2:2 + len(expected)] == expected, "table")
    assert t.lines()[0].startswith(" (1,1) run")
    assert t.highlighted() == (3, runs["b"].short_id)
    assert not t.lflag() & termios.ICANON  # curses has the terminal
    t.keys("q")
    assert t.wait_exit() == 0
    assert restored(t)
    assert t.stderr() == ""


def test_moves_and_sorts_by_the_current_column(term, runs, cli):
    header = table(cli)[0].split()
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    assert row_ids(t) == ids(runs, "bca")
    x = header.index("x")
    t.keys("l" * x)
    t.wait_for(lambda lines: lines[0].startswith(f" (1,{x + 1}) x "), "column x")
    t.keys("s")
    t.wait_for(lambda _: row_ids(t) == ids(runs, "abc"), "x ascending")
    t.keys("S")
    t.wait_for(lambda _: row_ids(t) == ids(runs, "cba"), "x descending")
    t.keys("j")
    t.wait_for(lambda lines: lines[0].startswith(f" (2,{x + 1}) x "), "row 2")
    assert t.highlighted() == (4, "2")
    t.keys(LEFT)
    t.wait_for(lambda lines: lines[0].startswith(f" (2,{x}) label "), "column label")
    t.keys(RIGHT + "1")  # numerically: the same order for numbers
    t.wait_for(lambda _: row_ids(t) == ids(runs, "abc"), "x numerically")
    t.keys("a")
    t.wait_for(lambda _: row_ids(t) == ids(runs, "bca"), "the order as loaded")
    t.keys("A")
    t.wait_for(lambda _: row_ids(t) == ids(runs, "acb"), "the order as loaded, reversed")
    t.keys("q")
    assert t.wait_exit() == 0


def test_scrolls_to_columns_off_screen(term, runs, cli):
    header = table(cli)[0].split()
    t = term("compare", cols=60)
    t.wait_text(runs["a"].short_id)
    assert "loss" not in t.lines()[2]
    t.keys("$")
    last = f" (1,{len(header)}) loss "
    t.wait_for(lambda lines: lines[0].startswith(last) and "loss" in lines[2], "the last column")
    assert t.highlighted()[1] == "0.25"  # b: x=2, last loss 2/8
    t.keys("0")
    t.wait_for(lambda lines: lines[2].startswith("run"), "the first column")
    t.keys("q")
    assert t.wait_exit() == 0


def test_help_and_run_details(term, runs):
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    t.keys("?")
    t.wait_text("Key bindings")
    t.wait_text("Sort by current column (descending)")
    t.keys("q")  # closes the help, not the view
    t.wait_for(lambda lines: not any("Key bindings" in line for line in lines), "help closed")
    t.keys("\r")
    t.wait_text(f"Run {runs['b'].short_id}")
    t.wait_text(f"Id: {runs['b'].id}")
    t.wait_text("Label: b")
    t.keys("q")
    t.wait_for(lambda lines: not any("Id: " in line for line in lines), "details closed")
    t.keys("q")
    assert t.wait_exit() == 0


def test_refresh_shows_new_runs(term, runs, cli):
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    assert cli("run", "train.py", "x=4", "-l", "d", "-y").exit_code == 0
    new = next(run for run in _all_runs(cli) if run.get("label") == "d")
    assert new.short_id not in "\n".join(t.lines())
    t.keys("r")
    t.wait_for(lambda _: row_ids(t) == [new.short_id] + ids(runs, "bca"), "the new run")
    t.keys("q")
    assert t.wait_exit() == 0


def test_marks_and_unmarks_the_current_run(term, runs):
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    t.keys("jj")
    t.wait_for(lambda lines: lines[0].startswith(" (3,1) run"), "row 3")
    t.keys("m")
    t.wait_text("train.py [marked]")
    assert [line for line in t.lines() if "[marked]" in line][0].startswith(runs["a"].short_id)
    assert Run.for_dir(runs["a"].path).get("marked") is True
    t.keys("u")
    t.wait_for(lambda lines: not any("[marked]" in line for line in lines), "unmarked")
    assert Run.for_dir(runs["a"].path).get("marked") is None
    t.keys("q")
    assert t.wait_exit() == 0


def test_search(term, runs, cli):
    acc = table(cli)[0].split().index("acc")
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    t.keys("/0.875\r")  # a's acc
    t.wait_for(lambda lines: lines[0].startswith(f" (3,{acc + 1}) acc "), "the match")
    t.keys("q")
    assert t.wait_exit() == 0


def test_no_runs(term):
    t = term("compare")
    t.wait_text("no runs")
    t.keys("\r")
    t.wait_text("There are no matching runs currently")
    t.keys("qq")
    assert t.wait_exit() == 0


def test_a_failure_is_one_line_and_restores_the_terminal(term, runs):
    code = (
        "import sys\n"
        "from guild_core.cli import compare_tui\n"
        "def boom(self, *a, **kw): raise RuntimeError('boom')\n"
        "compare_tui.Viewer.sort = boom\n"
        "from guild_core.cli.main import main\n"
        "sys.argv = ['guild'] + sys.argv[1:]\n"
        "main()\n"
    )
    t = term("compare", code=code)
    t.wait_text(runs["a"].short_id)
    t.keys("s")
    assert t.wait_exit() == 1
    assert t.stderr() == "guild: the interactive compare failed: RuntimeError: boom\n"
    assert restored(t)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_restore_the_terminal(term, runs, sig, status):
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    t.proc.send_signal(sig)
    assert t.wait_exit() == status
    assert restored(t)
    assert t.stderr() == ""


def test_an_unknown_terminal_is_one_line(term, runs):
    t = term("compare", env={"TERM": "no-such-terminal"})
    assert t.wait_exit() == 1
    assert t.stderr() == (
        "guild: cannot show the interactive compare (setupterm: could not find terminal): use --table\n"
    )
    assert restored(t)


def test_a_dumb_terminal_gets_the_table(term, runs, cli):
    expected = table(cli)
    t = term("compare", env={"TERM": "dumb"})
    assert t.wait_exit() == 0
    t.wait_for(lambda lines: lines[: len(expected)] == expected, "table")


def test_a_pipe_gets_the_table(sh, runs, cli):
    result = sh("compare")
    assert result.exit_code == 0, result.stderr
    assert [line.rstrip() for line in result.output.splitlines()] == table(cli)


def test_output_options_print_even_on_a_terminal(term, runs, cli):
    expected = table(cli, "-cc", "=x")
    t = term("compare", "-t", "-cc", "=x")
    assert t.wait_exit() == 0
    t.wait_for(lambda lines: lines[: len(expected)] == expected, "table")


def test_every_key_leaves_the_view_working(term, runs, cli):
    expected_header = table(cli)[0]
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    keys = [
        "?q", "\x1bOPq",  # help: ? and F1
        "sS1!2aAr", "mu",  # sorting, reloading, marking
        "jklh", RIGHT, LEFT, "\x1bOA", "\x1bOB",  # hjkl and the arrows
        "0^\x01\x1bOH$\x05\x1bOF", "3||",  # line start and end, columns
        "JK\x1b[5~\x1b[6~HLg3GG",  # pages, rows
        "\x1b[2~jj\x1b[3~'",  # Insert, Delete, '
        "\rq", "`q",  # details, logs
        "/loss\r", "np", "/nothing\x1b",  # search
        "<>,.-+", "cc5cC8C",  # widths
        "[]{}", "\x0c", "a0g",
    ]
    for k in keys:
        t.keys(k)
    t.wait_for(lambda lines: lines[0].startswith(" (1,1) run "), "the first cell")
    assert t.proc.poll() is None
    t.keys("c")  # back to widths of the widest cells
    t.wait_for(lambda lines: lines[2] == expected_header, "the headings")
    t.keys("q")
    assert t.wait_exit() == 0
    assert t.stderr() == ""


def test_resizing_redraws(term, runs):
    t = term("compare", cols=60)
    t.wait_text(runs["a"].short_id)
    assert "loss" not in t.lines()[2]

    def resize(rows, cols):
        fcntl.ioctl(t.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        t.screen.resize(rows, cols)
        t.proc.send_signal(signal.SIGWINCH)

    resize(ROWS, COLS)
    t.wait_for(lambda lines: "loss" in lines[2], "the wider table")
    resize(4, COLS)
    t.wait_text("Terminal too small")
    t.keys("q")
    assert t.wait_exit() == 0


def test_a_bad_column_spec_is_an_error_before_the_screen(term):
    t = term("compare", "-c", "min")
    assert t.wait_exit() == 1
    assert t.stderr() == "guild: invalid column spec 'min': expected a scalar name at the end\n"
    assert restored(t)


def test_warnings_show_with_backtick_and_after_quitting(term, runs):
    runs["c"].write_attr("compare", ["min"])
    warning = f"WARNING: run {runs['c'].short_id}: invalid column spec 'min'"
    t = term("compare")
    t.wait_text(runs["a"].short_id)
    assert not any("WARNING" in line for line in t.lines())
    t.keys("`")
    t.wait_text("Logs")
    t.wait_text(warning)
    t.keys("qq")
    assert t.wait_exit() == 0
    assert t.stderr().startswith(warning)


def test_sort_orders():
    from guild_core.compare import sort_order

    keys = [2, None, 10, "b", 1.5]
    assert sort_order(keys) == [4, 0, 2, 3, 1]
    assert sort_order(keys, reverse=True) == [3, 2, 0, 4, 1]
    mixed = [2, None, "10", "b", 1.5, float("nan"), True]
    assert sort_order(mixed, numeric=True) == [4, 0, 2, 5, 1, 3, 6]
    assert sort_order(mixed, reverse=True, numeric=True) == [2, 0, 4, 5, 1, 3, 6]
