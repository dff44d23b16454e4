"""The built-in ``argparse`` plugin: flags learned by running a script up
to ``parse_args`` in a subprocess, mapped to `FlagDef`s and cached."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import guild_flags_argparse
from guild_core.flagdefs import FlagDef, FlagsInfo
from guild_flags_argparse import _detect


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    home = tmp_path / "guild-home"
    monkeypatch.setenv("GUILD_HOME", str(home))
    return home


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    return root


def write(dir: Path, text: str, name: str = "train.py") -> Path:
    path = dir / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def detect(script: Path):
    return guild_flags_argparse.guild_detect_flags(script=script, source=script.read_text())


def cache_files(home: Path) -> list[Path]:
    d = home / "cache" / "flags-argparse"
    return sorted(d.iterdir()) if d.exists() else []


# A script that counts its imports in `imports.txt` (one line each).
COUNTED = """
with open("imports.txt", "a") as f:
    f.write("x\\n")
import argparse
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default={lr})
p.parse_args()
"""


def imports(proj: Path) -> int:
    path = proj / "imports.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


# ---------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------


def test_detects_flags_in_declaration_order(proj, capfd):
    script = write(
        proj,
        """
        import sys
        print("loading at import")
        print("noise", file=sys.stderr)
        import argparse
        import pathlib

        p = argparse.ArgumentParser(description="Train")
        p.add_argument("data", help="a positional: never a flag")
        p.add_argument("--learning-rate", "--lr", type=float, default=0.1,
                       help="learning rate (default %(default)s)")
        p.add_argument("--epochs", type=int, required=True, help="how long")
        p.add_argument("--opt", choices=["adam", "sgd"], default="adam")
        p.add_argument("--name", type=str)
        p.add_argument("--tag", default="base")
        p.add_argument("--batch", default=32)
        p.add_argument("--momentum", default=0.9)
        p.add_argument("--seed")
        p.add_argument("--debug", action="store_true", help="debug mode")
        p.add_argument("--no-cuda", dest="cuda", action="store_false")
        p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=False)
        p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out"))
        p.add_argument("--layers", type=int, nargs="+", default=[64, 32])
        p.add_argument("--hidden", help=argparse.SUPPRESS, default=5)
        p.add_argument("-v", "--verbose", action="count", default=0)
        p.add_argument("--fast", action="store_const", const=1)
        p.add_argument("--add", action="append_const", const=1)
        p.add_argument("--version", action="version", version="1")
        p.add_argument("--gone", dest=argparse.SUPPRESS, default=argparse.SUPPRESS)
        p.add_argument("-s", type=int, default=2, help="short only: skipped")
        args = p.parse_args()

        open("ran.txt", "w").write("the script body ran")
        print("body ran")
        """,
    )
    info = detect(script)
    assert isinstance(info, FlagsInfo) and info.dest == "args"
    assert list(info.flags.values()) == [
        FlagDef("learning-rate", "float", 0.1, description="learning rate (default 0.1)"),
        FlagDef("epochs", "int", None, required=True, description="how long"),
        FlagDef("opt", "string", "adam", choices=["adam", "sgd"]),
        FlagDef("name", "string", None),
        FlagDef("tag", "string", "base"),
        FlagDef("batch", "int", 32),
        FlagDef("momentum", "float", 0.9),
        FlagDef("seed", None, None),
        FlagDef("debug", "boolean", False, description="debug mode", arg_switch=True),
        FlagDef("no-cuda", "boolean", True, arg_switch=False),
        FlagDef("amp", "boolean", True, arg_name="no-amp", arg_switch=False),
        FlagDef("shuffle", "boolean", False, arg_switch=True),
        # Not JSON values / list defaults (a batch to guild): no default.
        FlagDef("out", None, None),
        FlagDef("layers", "int", None),
        FlagDef("hidden", "int", 5),
    ]
    # Nothing after parse_args ran; nothing the script printed leaked.
    assert not (proj / "ran.txt").exists()
    assert capfd.readouterr() == ("", "")


def test_script_runs_as_main_from_its_directory(proj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(proj, "VALUE = 'from helper'\n", "helper.py")
    (proj / "config.txt").write_text("from cwd")
    script = write(
        proj,
        """
        import argparse, os, sys
        import helper

        def main():
            p = argparse.ArgumentParser()
            p.add_argument("--helper", default=helper.VALUE)
            p.add_argument("--config", default=open("config.txt").read())
            p.add_argument("--argv", default=repr(sys.argv))
            p.add_argument("--cwd", default=os.getcwd())
            p.parse_args()

        if __name__ == "__main__":
            main()
        """,
    )
    flags = detect(script).flags
    assert flags["helper"].default == "from helper"
    assert flags["config"].default == "from cwd"
    assert flags["argv"].default == repr([str(script)])
    assert Path(flags["cwd"].default).resolve() == proj.resolve()


def test_parse_known_args_is_intercepted(proj):
    script = write(
        proj,
        """
        from argparse import ArgumentParser
        p = ArgumentParser()
        p.add_argument("--lr", type=float, default=0.01)
        args, rest = p.parse_known_args()
        open("ran.txt", "w").write("ran")
        """,
    )
    assert detect(script).flags == {"lr": FlagDef("lr", "float", 0.01)}
    assert not (proj / "ran.txt").exists()


def test_first_parser_parsed_wins(proj):
    script = write(
        proj,
        """
        import argparse
        a = argparse.ArgumentParser()
        a.add_argument("--first", default=1)
        b = argparse.ArgumentParser()
        b.add_argument("--second", default=2)
        b.parse_args()
        a.parse_args()
        """,
    )
    assert list(detect(script).flags) == ["second"]


@pytest.mark.parametrize(
    "source",
    [
        "lr = 0.1\nprint(lr)\n",
        "# uses argparse? no\nx = 'import argparse'\n",
        "import click\n",
    ],
)
def test_declines_scripts_without_argparse(proj, home, source):
    script = write(proj, source)
    assert detect(script) is None
    assert cache_files(home) == []


@pytest.mark.parametrize(
    "source",
    [
        "import argparse\n",
        "import os, argparse\n",
        "import argparse as ap\n",
        "from argparse import ArgumentParser\n",
        "def main():\n    import argparse\n",
    ],
)
def test_recognises_argparse_imports(source):
    assert guild_flags_argparse.uses_argparse(source)


# ---------------------------------------------------------------------
# Failures: an empty FlagsInfo and one warning, never an exception
# ---------------------------------------------------------------------


def test_script_error_before_parse_args(proj, home, capsys):
    script = write(
        proj,
        """
        import argparse
        with open("imports.txt", "a") as f:
            f.write("x\\n")
        print("some output")
        raise ValueError("no data here")
        """,
    )
    info = detect(script)
    assert info == FlagsInfo(flags={}, dest="args")
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"guild: cannot detect flags for {script}: "
        "script exited with status 1: ValueError: no data here\n"
    )
    # Failures are not cached: the next detection tries again.
    assert cache_files(home) == []
    assert detect(script) == FlagsInfo(flags={}, dest="args")
    assert imports(proj) == 2


def test_script_that_never_parses(proj, capsys):
    script = write(proj, "import argparse\nprint('no parser')\n")
    assert detect(script) == FlagsInfo({}, "args")
    err = capsys.readouterr().err
    assert err == (
        f"guild: cannot detect flags for {script}: "
        "script did not call ArgumentParser.parse_args()\n"
    )


def test_script_that_hangs_times_out(proj, monkeypatch, capsys):
    monkeypatch.setattr(_detect, "TIMEOUT", 0.5)
    script = write(proj, "import argparse, time\ntime.sleep(60)\n")
    started = time.monotonic()
    assert detect(script) == FlagsInfo({}, "args")
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith(f"guild: cannot detect flags for {script}: timed out after 0.5s")
    assert err.count("\n") == 1


def test_unexpected_errors_are_warnings(proj, monkeypatch, capsys):
    def broken(script):
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(_detect, "learn_parser", broken)
    script = write(proj, COUNTED.format(lr=0.1))
    assert detect(script) == FlagsInfo({}, "args")
    assert capsys.readouterr().err == (
        f"guild: cannot detect flags for {script}: RuntimeError: plugin bug\n"
    )


# ---------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------


def test_second_detection_uses_cache(proj, home, monkeypatch):
    script = write(proj, COUNTED.format(lr=0.1))
    first = detect(script)
    assert first.flags == {"lr": FlagDef("lr", "float", 0.1)}
    assert imports(proj) == 1
    [cached] = cache_files(home)
    assert len(cached.stem) == 64 and cached.suffix == ".json"

    def no_subprocess(*args, **kw):
        raise AssertionError("subprocess started for a cached script")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    assert detect(script) == first
    assert imports(proj) == 1


def test_edited_script_is_detected_again(proj, home):
    script = write(proj, COUNTED.format(lr=0.1))
    assert detect(script).flags["lr"].default == 0.1
    write(proj, COUNTED.format(lr=0.5))
    assert detect(script).flags["lr"].default == 0.5
    assert imports(proj) == 2
    assert len(cache_files(home)) == 2


def test_same_script_elsewhere_is_detected_again(tmp_path, home):
    a = write(tmp_path, COUNTED.format(lr=0.1), "a.py")
    (tmp_path / "sub").mkdir()
    b = write(tmp_path / "sub", COUNTED.format(lr=0.1), "a.py")
    assert detect(a) == detect(b)
    assert imports(tmp_path) == 1 and imports(tmp_path / "sub") == 1


@pytest.mark.parametrize("garbage", ["{not json", "[]", '{"cache-version": "2", "actions": [3]}', '{"cache-version": "2", "actions": [], "subcommands": {"a": {"actions": 1}}}', ""])
def test_corrupt_cache_is_rebuilt(proj, home, garbage):
    script = write(proj, COUNTED.format(lr=0.1))
    first = detect(script)
    [cached] = cache_files(home)
    cached.write_text(garbage)
    assert detect(script) == first
    assert imports(proj) == 2
    assert json.loads(cached.read_text())["actions"][1]["dest"] == "lr"


def test_cache_round_trips_every_field(proj, home):
    script = write(
        proj,
        """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--opt", choices=[1, 2], type=int, default=1, help="opt", required=True)
        p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--no-cuda", action="store_false")
        p.parse_args()
        """,
    )
    fresh = detect(script)
    assert detect(script) == fresh
    assert [p.name for p in (home / "cache" / "flags-argparse").iterdir()] == [
        cache_files(home)[0].name
    ]  # no temp files left behind


def test_unwritable_cache_is_ignored(proj, home):
    home.mkdir()
    (home / "cache").write_text("a file, not a directory")
    script = write(proj, COUNTED.format(lr=0.1))
    assert detect(script).flags["lr"].default == 0.1
    assert detect(script).flags["lr"].default == 0.1
    assert imports(proj) == 2


# ---------------------------------------------------------------------
# Through the CLI: the flags as detected work with guild's argument passing
# ---------------------------------------------------------------------


def test_detected_flags_reach_the_script(cli, project):
    project.write(
        "train.py",
        """
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=0.1)
        p.add_argument("--debug", action="store_true")
        p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
        p.add_argument("--layers", type=int, nargs="+", default=[1, 2])
        print(sorted(vars(p.parse_args()).items()))
        """,
    )
    result = cli("run", "train.py", "lr=0.5", "debug=yes", "amp=no", "-y")
    assert result.exit_code == 0, result.stderr
    assert "[('amp', False), ('debug', True), ('layers', [1, 2]), ('lr', 0.5)]" in result.output
    result = cli("run", "train.py", "layers=3", "-y")
    assert result.exit_code == 0, result.stderr
    assert "[('amp', True), ('debug', False), ('layers', [3]), ('lr', 0.1)]" in result.output


SUBCOMMANDS = """
import argparse
p = argparse.ArgumentParser()
p.add_argument("--base-foo", default=1, type=int)
sub = p.add_subparsers()
a = sub.add_parser("a")
a.add_argument("--a-foo", default=2, type=int)
b = sub.add_parser("b")
b.add_argument("--b-foo", default=3, type=int)
bsub = b.add_subparsers().add_parser("deep")
bsub.add_argument("--deep-foo", default=4.5, type=float)
args = p.parse_args()
print(sorted(vars(args).items()))
"""


def test_sub_command_flags_as_guild_ai_imports_them(cli, project):
    """`main: script a` gets the flags of sub-command `a` (Guild AI's
    sub-commands sample), nested ones too; the script alone its own."""
    project.write("cmds.py", SUBCOMMANDS)
    project.write("guild.yml", """
a:
  main: cmds a
  flags-import: all
deep:
  main: cmds b deep
  flags-import: all
top:
  main: cmds
  flags-import: all
""")
    assert "a-foo  (default is 2)" in cli("run", "a", "--help-op").output
    assert "base-foo" not in cli("run", "a", "--help-op").output
    assert "deep-foo  (default is 4.5)" in cli("run", "deep", "--help-op").output
    assert "base-foo  (default is 1)" in cli("run", "top", "--help-op").output
    result = cli("run", "a", "a-foo=9", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "[('a_foo', 9), ('base_foo', 1)]\n"
    result = cli("run", "deep", "deep-foo=0.5", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "[('b_foo', 3), ('base_foo', 1), ('deep_foo', 0.5)]\n"
    result = cli("run", "a", "base-foo=2", "-y")
    assert result.exit_code == 1
    assert "unsupported flag 'base-foo'" in result.stderr


# ---------------------------------------------------------------------
# Import cost
# ---------------------------------------------------------------------


def test_plugin_import_is_cheap():
    code = (
        "import sys; import guild_core.hookspecs; before = set(sys.modules); "
        "import guild_flags_argparse; print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["['guild_flags_argparse']"], out.stderr
