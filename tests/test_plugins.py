"""The plugin framework: loading, disabling, checking, registering."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

from guild_core import hookspecs
from guild_core.errors import PluginError
from guild_core.hookspecs import hookimpl
from guild_core.plugins import check, get_plugin_manager
from guild_core.registry import Registry

ROOT = Path(__file__).parent.parent
BUILTINS = {"argparse", "globals", "csv", "json", "yaml", "config", "resources", "dask"}


def hook_names() -> list[str]:
    return sorted(
        name for name, obj in inspect.getmembers(hookspecs)
        if name.startswith("guild_") and callable(obj)
    )


def make_dist(site: Path, name: str, module_text: str) -> None:
    """Install a third-party plugin as an entry point in `site`."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(textwrap.dedent(module_text))
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[guild]\n{name} = {name}\n")


def guild_sub(args, site=None, env=None, cwd=None):
    import os

    full_env = dict(os.environ)
    if site:
        full_env["PYTHONPATH"] = str(site)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=60,
    )


def test_builtins_load_through_entry_points(guild_home):
    pm = get_plugin_manager()
    names = {name for name, plugin in pm.list_name_plugin() if plugin is not None}
    assert BUILTINS <= names


def test_disable_plugins_blocks_import(guild_home):
    code = (
        "import sys; from guild_core.plugins import get_plugin_manager; "
        "pm = get_plugin_manager(); "
        "print('guild_flags_argparse' in sys.modules, pm.is_blocked('argparse'), "
        "pm.get_plugin('globals') is not None)"
    )
    import os

    env = dict(os.environ, GUILD_DISABLE_PLUGINS="argparse, other")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["False", "True", "True"], out.stderr


def test_misspelled_hook_fails_loudly():
    pm = get_plugin_manager(load_entry_points=False)

    class Bad:
        @hookimpl
        def guild_detect_flagz(self, script, source):
            return None

    pm.register(Bad(), name="bad")
    with pytest.raises(PluginError, match="guild_detect_flagz"):
        check(pm)


def test_plugins_command_lists_builtins(sh):
    result = sh("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    infos = {i["name"]: i for i in json.loads(result.output)}
    assert BUILTINS <= set(infos)
    assert infos["argparse"]["distribution"] == "guild"
    assert "guild_detect_flags" in infos["argparse"]["hooks"]
    table = sh("plugins").output
    assert re.search(r"^globals\s+guild \S+\s+guild_detect_flags, guild_flags_launcher$", table, re.M)


def test_third_party_plugin_and_lifecycle_hooks(guild_home, tmp_path, project):
    site = tmp_path / "site"
    make_dist(
        site,
        "guild_test_lifecycle",
        """
        from pathlib import Path
        from guild_core.hookspecs import hookimpl

        @hookimpl
        def guild_run_starting(run):
            Path(run.path, "started-by-plugin").write_text(run.id)

        @hookimpl
        def guild_run_stopped(run):
            Path(run.path, "stopped-by-plugin").write_text(str(run.get("exit_status")))
        """,
    )
    listed = guild_sub(["plugins"], site=site)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^guild_test_lifecycle\s+guild_test_lifecycle 1.2.3\s+guild_run_starting, guild_run_stopped$", listed.stdout, re.M)
    project.write("hello.py", "print('hi')\n")
    ran = guild_sub(["run", "hello.py", "-y"], site=site, cwd=project.path)
    assert ran.returncode == 0, ran.stderr
    run_dir = next((guild_home / "runs").iterdir())
    assert (run_dir / "started-by-plugin").read_text() == run_dir.name
    assert (run_dir / "stopped-by-plugin").read_text() == "0"


def test_broken_third_party_plugin_is_one_line_error(guild_home, tmp_path):
    site = tmp_path / "site"
    make_dist(
        site,
        "guild_test_broken",
        """
        from guild_core.hookspecs import hookimpl

        @hookimpl
        def guild_register_optimisers(register):
            pass
        """,
    )
    result = guild_sub(["plugins"], site=site)
    assert result.returncode == 1
    assert result.stderr.startswith("guild: plugin guild_test_broken: ")
    assert "guild_register_optimisers" in result.stderr
    assert "Traceback" not in result.stderr
    # Disabling the broken plugin gets everything else back.
    ok = guild_sub(["plugins"], site=site, env={"GUILD_DISABLE_PLUGINS": "guild_test_broken"})
    assert ok.returncode == 0, ok.stderr


class OptA:
    @hookimpl
    def guild_register_optimizers(self, register):
        register("anneal", lambda ctx: None, aliases=["sa"], default_max_trials=7)


class OptB:
    @hookimpl
    def guild_register_optimizers(self, register):
        register("other", lambda ctx: None, aliases=["sa"])


def _pm(*plugins):
    pm = get_plugin_manager(load_entry_points=False)
    for i, p in enumerate(plugins):
        pm.register(p(), name=p.__name__)
    return pm


def test_registry_optimizers_and_aliases():
    reg = Registry(_pm(OptA))
    assert reg.optimizer("sa").name == "anneal"
    assert reg.optimizer("anneal").default_max_trials == 7
    with pytest.raises(Exception, match="unknown optimizer 'nope'"):
        reg.optimizer("nope")


def test_registry_clash_names_both_plugins():
    reg = Registry(_pm(OptA, OptB))
    with pytest.raises(PluginError, match="optimizer 'sa' is registered by both plugin 'OptA' and plugin 'OptB'"):
        reg.optimizers()


def test_registry_batch_formats_remotes_resolvers_filters():
    class P:
        @hookimpl
        def guild_register_batch_formats(self, register):
            register([".TSV"], read=lambda path: [{"x": 1}], write=None)

        @hookimpl
        def guild_register_remote_types(self, register):
            register("mem", lambda name, config: ("remote", name, config))

        @hookimpl
        def guild_register_resolvers(self, register):
            register("best", lambda dep, value, ctx: ["r1"])

        @hookimpl
        def guild_register_filter_extensions(self, register):
            register.value("duration", lambda run: 3)
            register.operator("~", lambda a, b: a == b)

        @hookimpl
        def guild_register_executors(self, register):
            register("inline", lambda ctx: ("executor", ctx), description="runs trials inline")

    reg = Registry(_pm(P))
    assert reg.executor("inline").value("c") == ("executor", "c")
    with pytest.raises(Exception, match="no executor 'nope'"):
        reg.executor("nope")
    assert reg.batch_format("trials.tsv").read(None) == [{"x": 1}]
    with pytest.raises(Exception, match="unsupported batch file extension '.csv'"):
        reg.batch_format("t.csv")
    assert reg.remote_types()["mem"].value("r", {"a": 1}) == ("remote", "r", {"a": 1})
    assert reg.resolvers()["best"].value({}, None, None) == ["r1"]
    values, ops = reg.filter_extensions()
    assert values["duration"].value(None) == 3 and ops["~"].value(1, 1)


def test_flags_launcher_hook(guild_home):
    pm = get_plugin_manager()
    assert pm.hook.guild_flags_launcher(dest="globals") == "guild_flags_globals.launch"
    assert pm.hook.guild_flags_launcher(dest="other") is None


def test_detect_flags_hook_third_party_wins(guild_home, tmp_path):
    from guild_core.flagdefs import FlagDef, FlagsInfo

    class Custom:
        @hookimpl
        def guild_detect_flags(self, script, source):
            return FlagsInfo({"k": FlagDef("k", default=1)}, dest="args")

    pm = get_plugin_manager()
    pm.register(Custom(), name="custom")
    script = tmp_path / "s.py"
    script.write_text("a = 1\n")
    assert list(pm.hook.guild_detect_flags(script=script, source="a = 1\n").flags) == ["k"]


# -- meta-tests: every hook is tested and documented ------------------


def test_every_hook_is_tested():
    tests_text = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    untested = [name for name in hook_names() if name not in tests_text.replace("test_every_hook", "")]
    assert not untested


def test_every_hook_is_documented():
    guide = (ROOT / "docs" / "plugins.md").read_text()
    undocumented = [name for name in hook_names() if f"`{name}" not in guide]
    assert not undocumented


def test_every_hook_has_a_docstring():
    missing = [n for n in hook_names() if not (getattr(hookspecs, n).__doc__ or "").strip()]
    assert not missing


def test_disabling_a_plugin_removes_exactly_its_feature(guild_home, project):
    project.write("glob.py", "lr = 0.1\nprint('lr', lr)\n")
    project.write(
        "args.py",
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float, default=0.1)\nprint('lr', p.parse_args().lr)\n",
    )
    off = {"GUILD_DISABLE_PLUGINS": "globals"}
    no_globals = guild_sub(["run", "glob.py", "lr=0.5", "-y"], env=off, cwd=project.path)
    assert no_globals.returncode == 1
    assert no_globals.stderr.startswith("guild: unsupported flag 'lr'")
    plain = guild_sub(["run", "glob.py", "-y"], env=off, cwd=project.path)
    assert plain.returncode == 0 and plain.stdout == "lr 0.1\n"
    still_args = guild_sub(["run", "args.py", "lr=0.5", "-y"], env=off, cwd=project.path)
    assert still_args.returncode == 0, still_args.stderr
    assert still_args.stdout == "lr 0.5\n"
    listed = guild_sub(["plugins"], env=off).stdout
    assert "argparse" in listed and not re.search(r"^globals ", listed, re.M)
    assert "Disabled (GUILD_DISABLE_PLUGINS): globals" in listed
