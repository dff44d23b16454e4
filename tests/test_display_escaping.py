"""Labels, flag values and other text a run holds are printed with
their control characters escaped in tables and `key: value` lines
(`runs`, `runs info`, previews, `compare`, `diff --flags`, `select`),
on a terminal and in a pipe alike; `--json` and `--csv` keep them
exactly as stored."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select as select_mod
import subprocess
import sys

import pytest

from guild_core.run import Run

LABEL = "ok\x1b[2J\x1b[31mEVIL\nfake row"
LABEL_SHOWN = "ok\\x1b[2J\\x1b[31mEVIL\\nfake row"
# An OSC title sequence ended by BEL, a tab and a C1 CSI.
LABEL2 = "\x1b]0;owned\x07tab\there\x9b2J"
LABEL2_SHOWN = "\\x1b]0;owned\\x07tab\\there\\x9b2J"
MSG = "a\nb\x1b[1m"
MSG_SHOWN = "a\\nb\\x1b[1m"

TRAIN = """
msg = "hi"
print("loss: 0.5")
"""


@pytest.fixture
def runs(cli, guild_home, project):
    """Two runs: the older labelled LABEL with flag msg=MSG; the newer
    relabelled LABEL2 with `runs label --set`."""
    project.write("train.py", TRAIN)
    out = cli("run", "train.py", f"msg={MSG}", "-l", LABEL, "-y")
    assert out.exit_code == 0, out.stderr
    out = cli("run", "train.py", "-y")
    assert out.exit_code == 0, out.stderr
    out = cli("runs", "label", "1", "--set", LABEL2, "-y")
    assert out.exit_code == 0, out.stderr
    by_label = {}
    for p in (guild_home / "runs").iterdir():
        run = Run.for_dir(p)
        by_label[run.get("label")] = run
    assert set(by_label) == {LABEL, LABEL2}
    assert by_label[LABEL].get("flags") == {"msg": MSG}
    return by_label


def on_terminal(*args: str, input: str | None = None) -> tuple[int, bytes]:
    """Run guild with stdout and stderr on a pseudo-terminal; what it
    wrote there, as bytes."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    proc.stdin.write((input or "").encode())
    proc.stdin.close()
    chunks = []
    try:
        while True:
            ready, _, _ = select_mod.select([master], [], [], 60)
            assert ready, "guild wrote nothing for 60 seconds"
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        rc = proc.wait(timeout=60)
    return rc, b"".join(chunks)


def no_raw_controls(data: bytes) -> None:
    assert b"\x1b" not in data
    assert b"\x07" not in data
    assert "\x9b".encode() not in data
    assert b"\t" not in data


# -- printable --------------------------------------------------------------


def test_printable_escapes_control_characters_only():
    from guild_core.cli.common import printable

    assert printable("plain text, é ✓ \\n") == "plain text, é ✓ \\n"
    assert printable(LABEL) == LABEL_SHOWN
    assert printable("\x00\x01\r\x7f\x85\x9f\xa0") == "\\x00\\x01\\r\\x7f\\x85\\x9f\xa0"
    assert printable("a\tb\nc") == "a\\tb\\nc"
    assert printable("") == ""


# -- on a terminal ------------------------------------------------------------


def test_runs_list_on_a_terminal(runs):
    rc, data = on_terminal("runs")
    assert rc == 0
    no_raw_controls(data)
    lines = data.decode().split("\r\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    assert len(lines) == 2, lines
    assert lines[0].startswith("[1:") and lines[0].endswith(LABEL2_SHOWN)
    assert lines[1].startswith("[2:") and lines[1].endswith(LABEL_SHOWN)


@pytest.mark.parametrize(
    "args, nlines",
    [
        (["runs", "info", "2"], None),
        (["compare"], 3),
        (["select", "--all", "-a", "label"], 2),
        (["select", "2", "-a", "flags"], 1),
        (["runs", "delete"], None),
    ],
)
def test_fields_on_a_terminal(runs, args, nlines):
    rc, data = on_terminal(*args, input="n\n")
    no_raw_controls(data)
    lines = data.decode().split("\r\n")
    assert "fake row" not in lines
    assert not any(line.startswith("fake row") for line in lines)
    if nlines is not None:
        assert rc == 0 and lines[-1] == "" and len(lines) - 1 == nlines, lines
    text = data.decode()
    if args[0] != "select" or "label" in args:
        assert LABEL_SHOWN in text


def test_diff_flags_on_a_terminal(runs):
    rc, data = on_terminal("diff", "--flags", "-c", "cat")
    assert rc == 0
    no_raw_controls(data)
    assert data.decode().split("\r\n") == [f"msg: {MSG_SHOWN}", "msg: hi", ""]


# -- in a pipe -----------------------------------------------------------------


def test_runs_list_in_a_pipe(cli, runs):
    out = cli("runs")
    assert out.exit_code == 0
    lines = out.output.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(LABEL2_SHOWN) and lines[1].endswith(LABEL_SHOWN)


def test_runs_info_in_a_pipe(cli, runs):
    lines = cli("runs", "info", "2").output.splitlines()
    assert f"label: {LABEL_SHOWN}" in lines
    assert f"  msg: {MSG_SHOWN}" in lines
    assert "fake row" not in lines


def test_preview_in_a_pipe(cli, runs):
    out = cli("runs", "delete", input="n\n")
    assert out.exit_code == 1
    rows = [line for line in out.stderr.splitlines() if line.startswith("  [")]
    assert len(rows) == 2
    assert rows[0].endswith(LABEL2_SHOWN) and rows[1].endswith(LABEL_SHOWN)
    assert "fake row" not in out.stderr.splitlines()


def test_compare_table_in_a_pipe(cli, runs):
    lines = cli("compare").output.splitlines()
    assert len(lines) == 3
    assert "msg" in lines[0].split()
    assert LABEL2_SHOWN in lines[1]
    assert LABEL_SHOWN in lines[2] and MSG_SHOWN in lines[2]
    # Escaped before aligning: the label column is as wide as its text.
    assert lines[2].index(LABEL_SHOWN) == lines[1].index(LABEL2_SHOWN)


def test_select_in_a_pipe(cli, runs):
    assert cli("select", "2", "-a", "label").output == LABEL_SHOWN + "\n"
    assert cli("select", "--all", "-a", "label").output.splitlines() == [LABEL2_SHOWN, LABEL_SHOWN]
    assert cli("select", "2").output == runs[LABEL].id + "\n"


def test_diff_flags_files(sh, runs):
    out = sh("diff", "--flags", "-c", "cat")
    assert out.exit_code == 0, out.stderr
    assert out.output.splitlines() == [f"msg: {MSG_SHOWN}", "msg: hi"]


def test_ls_file_names(cli, runs, guild_home):
    run = runs[LABEL]
    (run.path / "evil\x1b[2J\nname").write_text("x")
    lines = cli("ls", run.id).output.splitlines()
    assert "  evil\\x1b[2J\\nname" in lines
    assert "name" not in [line.strip() for line in lines]
    assert cli("cat", run.id, "-p", "evil\x1b[2J\nname").output == "x"
    rc, data = on_terminal("ls", run.id)
    assert rc == 0
    no_raw_controls(data)


# -- json and csv keep the values --------------------------------------------


def test_json_and_csv_unchanged(cli, runs):
    listed = json.loads(cli("runs", "--json").output)
    assert [r["label"] for r in listed] == [LABEL2, LABEL]
    info = json.loads(cli("runs", "info", "2", "--json").output)
    assert info["label"] == LABEL and info["flags"] == {"msg": MSG}
    rows = json.loads(cli("compare", "--json").output)
    assert [r["label"] for r in rows] == [LABEL2, LABEL]
    assert rows[1]["msg"] == MSG
    table = list(csv.reader(io.StringIO(cli("compare", "--csv", "-").output)))
    header = table[0]
    assert [row[header.index("label")] for row in table[1:]] == [LABEL2, LABEL]
    assert table[2][header.index("msg")] == MSG


def test_operations_table(cli, project):
    project.write("guild.yml", 'train:\n  description: "bad\\e[31m red"\n  main: train\n')
    out = cli("operations")
    assert out.exit_code == 0
    assert out.output.splitlines() == ["train  bad\\x1b[31m red"]
