"""The built-in ``globals`` plugin: flag detection from module-level
literals and the launcher that runs a script with rewritten globals."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from guild_flags_globals import plugin as guild_flags_globals
from guild_core.plugins import get_plugin_manager
from guild_flags_globals import launch

LAUNCHER = "guild_flags_globals.launch"


def detect(source: str, script: str = "/project/train.py"):
    return guild_flags_globals.guild_detect_flags(
        script=Path(script), source=textwrap.dedent(source)
    )


def summary(info):
    return [(f.name, f.type, f.default) for f in info.flags.values()]


# ---------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------


def test_detects_literals_in_source_order_with_types():
    info = detect(
        """
        '''A training script.'''
        import os

        lr = 0.1
        epochs = 10
        offset = -3
        scale = -2.5
        plus = +4
        name = "base"
        debug = True
        quiet = False
        checkpoint = None
        layers = [64, -32, 16]
        tags = ["a", "b"]
        mixed = [1, "x", None, True, -0.5]
        empty = []
        batch_size: int = 32
        momentum: float = 0.9

        print(lr)
        """
    )
    assert info.dest == "globals"
    assert summary(info) == [
        ("lr", "number", 0.1),
        ("epochs", "number", 10),
        ("offset", "number", -3),
        ("scale", "number", -2.5),
        ("plus", "number", 4),
        ("name", "string", "base"),
        ("debug", "boolean", True),
        ("quiet", "boolean", False),
        ("checkpoint", None, None),
        ("layers", None, [64, -32, 16]),
        ("tags", None, ["a", "b"]),
        ("mixed", None, [1, "x", None, True, -0.5]),
        ("empty", None, []),
        ("batch_size", "number", 32),
        ("momentum", "number", 0.9),
    ]


def test_skips_private_local_class_and_non_literal_assignments():
    info = detect(
        """
        import os

        _private = 1
        __dunder__ = 2
        x = foo()
        y = os.environ.get("Y", "1")
        z = 1 + 2
        t = (1, 2)
        d = {"a": 1}
        nested = [[1, 2]]
        call_list = [foo()]
        b = b"bytes"
        c = 1j
        neg_bool = -True
        a = b2 = 3
        u, v = 1, 2
        ann: int
        obj.attr = 5
        items[0] = 6
        lr = 0.1

        def train():
            local = 1
            return local

        class Config:
            field = 2

        if __name__ == "__main__":
            inside_if = 3

        for i in range(3):
            loop_var = 4
        """
    )
    assert summary(info) == [("lr", "number", 0.1)]


def test_repeated_name_keeps_first_position_and_last_value():
    info = detect(
        """
        lr = 0.1
        epochs = 5
        lr = 0.2
        lr = lr * 2
        """
    )
    assert summary(info) == [("lr", "number", 0.2), ("epochs", "number", 5)]


@pytest.mark.parametrize(
    "imports",
    [
        "import argparse",
        "import os, argparse",
        "import argparse as ap",
        "from argparse import ArgumentParser",
        "    import argparse",
        "import click",
        "from click import command, option",
    ],
)
def test_declines_argparse_and_click_scripts(imports):
    source = f"lr = 0.1\ndef main():\n    pass\n{imports}\n"
    assert guild_flags_globals.guild_detect_flags(script=Path("t.py"), source=source) is None


@pytest.mark.parametrize(
    "imports",
    ["import clickhouse", "import argparse_ext", "import os  # not argparse", "_s = 'import click'"],
)
def test_similar_imports_are_not_argparse_or_click(imports):
    info = detect(f"{imports}\nlr = 0.1\n")
    assert summary(info) == [("lr", "number", 0.1)]


def test_syntax_error_gives_no_flags():
    info = detect("lr = 0.1\ndef broken(:\n")
    assert info.flags == {} and info.dest == "globals"


def test_script_without_assignments_has_no_flags():
    info = detect("print('hello')\n")
    assert info.flags == {} and info.dest == "globals"


# ---------------------------------------------------------------------
# Launcher hook and registration
# ---------------------------------------------------------------------


def test_launcher_hook():
    assert guild_flags_globals.guild_flags_launcher(dest="globals") == LAUNCHER
    assert guild_flags_globals.guild_flags_launcher(dest="args") is None
    assert guild_flags_globals.guild_flags_launcher(dest="other") is None


def test_hooks_through_plugin_manager():
    pm = get_plugin_manager(load_entry_points=False)
    pm.register(guild_flags_globals, "globals")
    assert pm.hook.guild_flags_launcher(dest="globals") == LAUNCHER
    assert pm.hook.guild_flags_launcher(dest="args") is None
    info = pm.hook.guild_detect_flags(script=Path("t.py"), source="lr = 0.1\n")
    assert summary(info) == [("lr", "number", 0.1)]
    assert pm.hook.guild_detect_flags(script=Path("t.py"), source="import argparse\nlr = 1\n") is None


def test_hooks_are_trylast():
    for name in ("guild_detect_flags", "guild_flags_launcher"):
        opts = getattr(getattr(guild_flags_globals, name), "guild_impl")
        assert opts["trylast"] is True


def test_installed_as_entry_point_plugin(monkeypatch):
    monkeypatch.delenv("GUILD_DISABLE_PLUGINS", raising=False)
    pm = get_plugin_manager()
    assert pm.get_plugin("globals") is guild_flags_globals
    assert pm.hook.guild_flags_launcher(dest="globals") == LAUNCHER


# ---------------------------------------------------------------------
# Launcher: argument parsing and typing (in-process)
# ---------------------------------------------------------------------


def test_parse_args():
    assert launch.parse_args(["t.py"]) == ("t.py", [], {})
    assert launch.parse_args(["t.py", "--lr", "0.5", "--x", "-1", "--s", ""]) == (
        "t.py",
        [],
        {"lr": "0.5", "x": "-1", "s": ""},
    )
    assert launch.parse_args(["t.py", "a", "b", "--lr=0.5", "--lr", "2"]) == (
        "t.py",
        ["a", "b"],
        {"lr": "2"},
    )


@pytest.mark.parametrize(
    "argv, msg",
    [
        ([], "missing SCRIPT"),
        (["t.py", "--lr", "1", "stray"], "unexpected argument 'stray'"),
    ],
)
def test_parse_args_errors(argv, msg):
    with pytest.raises(launch.UsageError, match=msg):
        launch.parse_args(argv)


@pytest.mark.parametrize(
    "raw, original, expected",
    [
        ("1", "a", "1"),
        ("yes", "a", "yes"),
        ("[1, 2]", "a", "[1, 2]"),
        ("5", 1, 5),
        ("-5", 1, -5),
        ("0.5", 1, 0.5),  # guild.yml may type the flag as a float
        ("5", 1.0, 5),  # a number as given, as Guild AI gives it
        ("1e-3", 0.1, 0.001),
        ("no", True, False),
        ("TRUE", False, True),
        ("1", False, True),
        ("0", True, False),
        ("on", False, True),
        ("[1, 2]", [3], [1, 2]),
        ("3", [3], 3),
        ("null", None, None),
        ("7", None, 7),
        ("abc", None, "abc"),
    ],
)
def test_decode_by_original_literal(raw, original, expected):
    val = launch.decode(raw, original)
    assert val == expected and type(val) is type(expected)


# ---------------------------------------------------------------------
# Launcher end to end
# ---------------------------------------------------------------------


def run_launch(cwd: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-um", LAUNCHER, script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


PRINT_GLOBALS = """
    lr = 0.1
    name = "a"
    layers = [4]
    epochs: int = 10
    debug = False
    checkpoint = None
    for key in ("lr", "name", "layers", "epochs", "debug", "checkpoint"):
        print(key, repr(globals()[key]))
"""


def printed(stdout: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)


def test_launch_sets_globals_with_types(tmp_path):
    write(tmp_path / "train.py", PRINT_GLOBALS)
    proc = run_launch(
        tmp_path, "train.py",
        "--lr", "0.5", "--name", "b", "--layers", "[1, 2]",
        "--epochs", "3", "--debug", "yes", "--checkpoint", "last",
    )
    assert proc.returncode == 0, proc.stderr
    assert printed(proc.stdout) == {
        "lr": "0.5",
        "name": "'b'",
        "layers": "[1, 2]",
        "epochs": "3",
        "debug": "True",
        "checkpoint": "'last'",
    }


def test_launch_without_flags_keeps_defaults(tmp_path):
    write(tmp_path / "train.py", PRINT_GLOBALS)
    proc = run_launch(tmp_path, "train.py")
    assert proc.returncode == 0, proc.stderr
    assert printed(proc.stdout) == {
        "lr": "0.1",
        "name": "'a'",
        "layers": "[4]",
        "epochs": "10",
        "debug": "False",
        "checkpoint": "None",
    }


def test_launch_string_flag_stays_string(tmp_path):
    write(tmp_path / "train.py", PRINT_GLOBALS)
    proc = run_launch(tmp_path, "train.py", "--name", "1", "--lr", "2")
    assert proc.returncode == 0, proc.stderr
    out = printed(proc.stdout)
    assert out["name"] == "'1'"
    assert out["lr"] == "2"  # a number as given (Guild AI's type: number)


def test_launch_rewrites_every_literal_assignment(tmp_path):
    write(
        tmp_path / "train.py",
        """
        lr = 0.1
        print("first", lr)
        lr = 0.2
        print("second", lr)
        lr = lr * 10
        print("third", lr)
        """,
    )
    proc = run_launch(tmp_path, "train.py", "--lr", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["first 0.5", "second 0.5", "third 5.0"]


def test_launch_injects_unassigned_flags(tmp_path):
    write(
        tmp_path / "train.py",
        """
        lr = 0.1
        print(repr(extra), repr(words), repr(lr))
        """,
    )
    proc = run_launch(tmp_path, "train.py", "--extra", "3", "--words", "hello", "--lr", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3 'hello' 1"


def test_launch_runs_as_main(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "helper.py", "VALUE = 'helper'\n")
    write(
        tmp_path / "sub" / "train.py",
        """
        '''Doc.'''
        from __future__ import annotations
        import os, pickle, sys
        import __main__
        import helper

        class Point:
            pass

        print("name", __name__)
        print("doc", __doc__)
        print("file", __file__ == os.path.abspath("sub/train.py"))
        print("argv", sys.argv)
        print("path0", sys.path[0] == os.path.dirname(os.path.abspath(__file__)))
        print("main", __main__.__dict__ is globals())
        print("helper", helper.VALUE)
        print("pickle", type(pickle.loads(pickle.dumps(Point()))).__name__)
        def f(x: int) -> str: ...
        print("annotations", f.__annotations__)
        if __name__ == "__main__":
            print("guarded ran")
        """,
    )
    proc = run_launch(tmp_path, "sub/train.py", "extra-arg")
    assert proc.returncode == 0, proc.stderr
    out = printed(proc.stdout)
    assert out["name"] == "__main__"
    assert out["doc"] == "Doc."
    assert out["file"] == "True"
    assert out["argv"] == "['sub/train.py', 'extra-arg']"
    assert out["path0"] == "True"
    assert out["main"] == "True"
    assert out["helper"] == "helper"
    assert out["pickle"] == "Point"
    # The script's `from __future__ import annotations` applies.
    assert out["annotations"] == "{'x': 'int', 'return': 'str'}"
    assert "guarded ran" in proc.stdout


def test_launch_traceback_points_at_script_line(tmp_path):
    script = write(
        tmp_path / "train.py",
        """
        lr = 0.1
        name = "a"

        def fail():
            raise ValueError("bad lr %s" % lr)

        print("before")
        fail()
        """,
    )
    proc = run_launch(tmp_path, "train.py", "--lr", "0.5", "--name", "b")
    assert proc.returncode == 1
    assert proc.stdout == "before\n"
    err = proc.stderr
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{script}", line 8, in <module>' in err
    assert f'File "{script}", line 5, in fail' in err
    assert 'raise ValueError("bad lr %s" % lr)' in err  # source lines shown
    assert err.rstrip().endswith("ValueError: bad lr 0.5")
    assert "launch.py" not in err


def test_launch_error_on_rewritten_line_keeps_line_number(tmp_path):
    script = write(
        tmp_path / "train.py",
        """
        import sys

        layers = [1, 2]
        print(layers[5])
        """,
    )
    proc = run_launch(tmp_path, "train.py", "--layers", "[3]")
    assert proc.returncode == 1
    assert f'File "{script}", line 4, in <module>' in proc.stderr
    assert "IndexError" in proc.stderr


def test_launch_syntax_error(tmp_path):
    script = write(tmp_path / "train.py", "lr = 0.1\ndef broken(:\n    pass\n")
    proc = run_launch(tmp_path, "train.py", "--lr", "1")
    assert proc.returncode == 1
    assert f'File "{script}", line 2' in proc.stderr
    assert "SyntaxError" in proc.stderr
    assert "launch.py" not in proc.stderr


@pytest.mark.parametrize(
    "body, status",
    [
        ("import sys\nsys.exit(3)\n", 3),
        ("raise SystemExit(4)\n", 4),
        ("import sys\nsys.exit(0)\n", 0),
        ("import sys\nsys.exit()\n", 0),
        ("print('done')\n", 0),
    ],
)
def test_launch_exit_status(tmp_path, body, status):
    write(tmp_path / "train.py", "lr = 0.1\n" + body)
    proc = run_launch(tmp_path, "train.py", "--lr", "0.2")
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr


def test_launch_sys_exit_message(tmp_path):
    write(tmp_path / "train.py", "import sys\nsys.exit('giving up')\n")
    proc = run_launch(tmp_path, "train.py")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "giving up"


def test_launch_flag_without_value_is_a_switch(tmp_path):
    """As Guild AI reads `main: evaluate --test` for a globals script."""
    write(tmp_path / "train.py", "test = False\nlr = 0.1\nprint(test, lr, extra)\n")
    proc = run_launch(tmp_path, "train.py", "--test", "--extra", "--lr", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "True 0.5 True\n"
    assert launch.parse_args(["t.py", "a", "--x", "--y", "1", "--z"]) == ("t.py", ["a"], {"x": "true", "y": "1", "z": "true"})


def test_launch_missing_script(tmp_path):
    proc = run_launch(tmp_path, "nope.py", "--lr", "1")
    assert proc.returncode == 2
    assert "nope.py" in proc.stderr


def test_launch_does_not_import_yaml_for_typed_literals(tmp_path):
    write(
        tmp_path / "train.py",
        """
        import sys
        lr = 0.1
        epochs = 1
        name = "a"
        debug = False
        print("yaml" in sys.modules, "guild_core.flags" in sys.modules)
        """,
    )
    proc = run_launch(
        tmp_path, "train.py", "--lr", "0.5", "--epochs", "2", "--name", "x", "--debug", "yes"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False"
