"""The built-in click plugin: a click script's options are its flags, as
Guild AI 0.9 imports them (``flags-dest: args:click``), through the
real CLI."""

from __future__ import annotations

import json
import subprocess

import pytest

from guild_core import plugins
from guild_core.cli import common

TRAIN = """
import click

@click.command()
@click.option("--lr", default=0.1, type=float, help="Learning rate")
@click.option("--epochs", default=3, type=int)
@click.option("--name", default="base")
@click.option("--opt", type=click.Choice(["adam", "sgd"]), default="adam")
@click.option("--debug", is_flag=True)
@click.option("--amp/--no-amp", default=True)
@click.option("--tag", multiple=True)
@click.option("-v", "verbose", count=True)
@click.argument("extra", required=False)
def main(lr, epochs, name, opt, debug, amp, tag, verbose, extra):
    print(repr((lr, epochs, name, opt, debug, amp)))

main()
"""

GROUP = """
import click

@click.group()
@click.option("--base-foo", default=4, type=int)
def cli(base_foo):
    print("base-foo=%i" % base_foo)

@cli.command()
@click.option("--a-foo", default=5, type=int)
def a(a_foo):
    print("a-foo=%i" % a_foo)

@cli.group()
@click.option("--b-foo", default=6, type=int)
def b(b_foo):
    print("b-foo=%i" % b_foo)

@b.command("b-sub")
@click.option("--b-sub-foo", default=7, type=int)
def b_sub(b_sub_foo):
    print("b-sub-foo=%i" % b_sub_foo)

cli()
"""


def help_flags(cli, op) -> str:
    out = cli("run", op, "--help-op")
    assert out.exit_code == 0, out.stderr
    return out.output.split("Flags:", 1)[-1] if "Flags:" in out.output else ""


def test_click_options_are_flags(cli, guild_home, project):
    project.write("train.py", TRAIN)
    flags = help_flags(cli, "train.py")
    for line in ("lr", "epochs", "name", "opt", "debug", "amp"):
        assert f"  {line}" in flags, flags
    assert "Learning rate" in flags and "Choices:" in flags
    # count, multiple and arguments are not name=value flags.
    assert "tag" not in flags and "verbose" not in flags and "extra" not in flags
    result = cli("run", "train.py", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "(0.1, 3, 'base', 'adam', False, True)\n"
    result = cli("run", "train.py", "lr=0.5", "epochs=9", "name=x y", "opt=sgd", "debug=yes", "amp=no", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "(0.5, 9, 'x y', 'sgd', True, False)\n"
    info = json.loads(cli("runs", "info", "--json").output)
    assert info["flags"] == {"amp": False, "debug": True, "epochs": 9, "lr": 0.5, "name": "x y", "opt": "sgd"}
    bad = cli("run", "train.py", "opt=rmsprop", "-y")
    assert bad.exit_code == 1 and "rmsprop" in bad.stderr


def test_guild_yml_args_click_and_sub_commands(cli, guild_home, project):
    """Guild AI's sub-commands sample: `main: cmds b b-sub` gets the
    flags of that sub-command."""
    project.write("cmds.py", GROUP)
    project.write("guild.yml", """
click-a:
  main: cmds a
  flags-dest: args:click
  flags-import: all
click-b-sub:
  main: cmds b b-sub
  flags-dest: args:click
  flags-import: all
""")
    assert "a-foo  (default is 5)" in help_flags(cli, "click-a")
    flags = help_flags(cli, "click-b-sub")
    assert "b-sub-foo  (default is 7)" in flags and "  b-foo " not in flags
    result = cli("run", "click-b-sub", "b-sub-foo=9", "-y")
    assert result.exit_code == 0, result.stderr
    assert result.output == "base-foo=4\nb-foo=6\nb-sub-foo=9\n"
    result = cli("run", "click-a", "base-foo=1", "-y")
    assert result.exit_code == 1 and "unsupported flag 'base-foo'" in result.stderr


def test_detection_is_cached_and_failures_warn(cli, guild_home, project, monkeypatch):
    project.write("train.py", TRAIN)
    assert "lr" in help_flags(cli, "train.py")
    cached = list((guild_home / "cache" / "flags-click").glob("*.json"))
    assert len(cached) == 1

    def no_subprocess(*args, **kw):
        raise AssertionError("subprocess started for a cached script")

    with monkeypatch.context() as m:
        m.setattr(subprocess, "Popen", no_subprocess)
        assert "lr" in help_flags(cli, "train.py")
    project.write("broken.py", "import click\nraise SystemExit(3)\n")
    out = cli("run", "broken.py", "--help-op")
    assert "cannot detect flags for" in out.stderr and "status 3" in out.stderr


def test_disabling_the_plugin_removes_click_flags(cli, guild_home, project, monkeypatch):
    project.write("train.py", TRAIN)
    monkeypatch.setenv("GUILD_DISABLE_PLUGINS", "click")
    common.plugin_manager.cache_clear()
    assert help_flags(cli, "train.py") == ""
    assert "click" in cli("plugins").output
