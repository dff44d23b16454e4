"""guild's global options (-H, -C, --debug), `guild help`, `guild
completion`, `guild check` and `guild sys`, through the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from guild_core.cli.main import guild as guild_cli
from guild_core.run import Run

from test_plugins import guild_sub, make_dist

SCRIPT = "import os\nprint('home', os.environ['GUILD_HOME'])\nprint('cwd', os.getcwd())\n"


def runs_of(home: Path) -> list[Run]:
    root = home / "runs"
    return [Run.for_dir(p) for p in sorted(root.iterdir())] if root.is_dir() else []


@pytest.fixture
def other_home(tmp_path):
    path = tmp_path / "other-home"
    path.mkdir()
    return path


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A directory that is not the project, the cwd for the test."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


# ---------------------------------------------------------------------
# -H
# ---------------------------------------------------------------------


def test_H_is_the_guild_home_for_runs_and_their_processes(sh, cli, guild_home, other_home, project):
    project.write("t.py", SCRIPT)
    result = sh("-H", str(other_home), "run", "-y", "t.py")
    assert result.exit_code == 0, result.stderr
    assert f"home {other_home}\n" in result.output
    assert runs_of(guild_home) == []
    [run] = runs_of(other_home)
    assert run.id in cli("-H", str(other_home), "runs", "-a").output or run.short_id in cli("-H", str(other_home), "runs", "-a").output
    assert cli("runs", "-a").output == ""


def test_H_in_process_leaves_the_environment_as_it_was(cli, guild_home, other_home, project):
    project.write("t.py", SCRIPT)
    assert cli("-H", str(other_home), "run", "-y", "t.py").exit_code == 0
    assert os.environ["GUILD_HOME"] == str(guild_home)
    assert len(runs_of(other_home)) == 1 and runs_of(guild_home) == []


def test_H_relative_to_where_guild_starts_also_with_C(sh, tmp_path, elsewhere, project):
    (elsewhere / "h").mkdir()
    project.write("t.py", SCRIPT)
    result = subprocess.run(
        [sys.executable, "-m", "guild_core.cli.main", "-C", str(project.path), "-H", "h", "run", "-y", "t.py"],
        cwd=elsewhere, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"home {elsewhere / 'h'}\n" in result.stdout
    assert len(runs_of(elsewhere / "h")) == 1


def test_H_to_a_file_or_a_missing_directory_is_one_line(sh, tmp_path, guild_home):
    afile = tmp_path / "afile"
    afile.write_text("")
    result = sh("-H", str(afile), "runs")
    assert result.exit_code == 1
    assert result.stderr == f"guild: '{afile}' is not a directory\n"
    missing = tmp_path / "missing"
    result = sh("-H", str(missing), "check")
    assert result.exit_code == 1
    assert result.stderr == f"guild: directory '{missing}' does not exist\n"
    assert not missing.exists()


# ---------------------------------------------------------------------
# -C
# ---------------------------------------------------------------------

GUILDFILE = """
op:
  description: The operation
  main: t
"""


def test_C_runs_the_project_of_that_directory(sh, cli, guild_home, project, elsewhere):
    project.write("guild.yml", GUILDFILE)
    project.write("t.py", SCRIPT)
    ops = cli("-C", str(project.path), "operations")
    assert ops.exit_code == 0
    assert ops.output.split() == ["op", "The", "operation"]
    result = sh("-C", str(project.path), "run", "-y", "op")
    assert result.exit_code == 0, result.stderr
    [run] = runs_of(guild_home)
    assert run.project_dir == str(project.path.resolve())
    assert run.op_name == "op"
    # Without -C, the directory guild starts in has no operations.
    assert cli("operations").output == ""


def test_C_in_process_comes_back_to_the_directory_it_left(cli, guild_home, project, elsewhere):
    project.write("guild.yml", GUILDFILE)
    project.write("t.py", SCRIPT)
    assert cli("-C", str(project.path), "operations").exit_code == 0
    assert Path.cwd() == elsewhere


def test_C_to_a_missing_directory_or_a_file_is_one_line(sh, tmp_path, guild_home):
    missing = tmp_path / "nope"
    result = sh("-C", str(missing), "operations")
    assert result.exit_code == 1
    assert result.stderr == f"guild: directory '{missing}' does not exist\n"
    assert result.output == ""
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    result = sh("-C", str(afile), "run", "-y", "t.py")
    assert result.exit_code == 1
    assert result.stderr == f"guild: '{afile}' is not a directory\n"


def test_global_options_are_in_the_help(cli, guild_home):
    out = cli("--help").output
    for opt in ("-C PATH", "-H PATH", "--debug", "--version"):
        assert opt in out
    for name in ("help", "completion", "check", "sys"):
        assert f"\n  {name} " in out


# ---------------------------------------------------------------------
# --debug and unexpected errors
# ---------------------------------------------------------------------


def test_debug_logs_on_stderr(sh, guild_home, project):
    project.write("guild.yml", GUILDFILE)
    project.write("t.py", SCRIPT)
    result = sh("--debug", "operations")
    assert result.exit_code == 0
    assert result.output.split()[0] == "op"
    lines = result.stderr.splitlines()
    assert f"DEBUG: [guild] guild home: {guild_home}" in lines
    assert f"DEBUG: [guild] working directory: {project.path}" in lines
    assert f"DEBUG: [guild] found guild file {project.path / 'guild.yml'}" in lines
    result = sh("--debug", "run", "-y", "op")
    assert result.exit_code == 0
    assert any(line.startswith("DEBUG: [guild] loading plugin ") or line.startswith("DEBUG: [guild] plugin entry points from ") for line in result.stderr.splitlines())
    # Without --debug: no log lines.
    result = sh("run", "-y", "op")
    assert "DEBUG" not in result.stderr


def test_debug_is_off_again_after_an_in_process_command(cli, guild_home, project):
    from guild_core import log

    assert cli("--debug", "operations").exit_code == 0
    assert not log.enabled()


BOOM = """
import sys
import guild_core.opdef

def boom(*args, **kw):
    raise RuntimeError("boom")

guild_core.opdef.list_operations = boom
from guild_core.cli.main import main
sys.argv[0] = "guild"
main()
"""


def test_unexpected_error_is_one_line_or_a_traceback_with_debug(guild_home, project):
    def guild(*args):
        return subprocess.run([sys.executable, "-c", BOOM, *args], capture_output=True, text=True, timeout=60)

    result = guild("operations")
    assert result.returncode == 1
    assert result.stderr == "guild: unexpected error: RuntimeError: boom (try 'guild --debug ...' for details)\n"
    result = guild("--debug", "operations")
    assert result.returncode == 1
    assert result.stderr.startswith("DEBUG: [guild] guild home: ")
    assert "\nTraceback (most recent call last):\n" in result.stderr
    assert ', in boom\n' in result.stderr
    assert result.stderr.endswith("RuntimeError: boom\nguild: unexpected error: RuntimeError: boom\n")


def test_unexpected_error_in_process_is_raised(cli, guild_home, project, monkeypatch):
    # Tests calling the CLI in-process see the exception itself.
    import guild_core.opdef

    monkeypatch.setattr(guild_core.opdef, "list_operations", lambda *a, **kw: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli("operations")


def test_unexpected_error_in_a_plugin_as_a_user_sees_it(tmp_path, guild_home):
    site = tmp_path / "site"
    make_dist(site, "broken_plugin", "raise RuntimeError('plugin bug')\n")
    result = guild_sub(["plugins"], site=site)
    assert result.returncode == 1
    assert result.stderr == "guild: unexpected error: RuntimeError: plugin bug (try 'guild --debug ...' for details)\n"
    result = guild_sub(["--debug", "plugins"], site=site)
    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert "DEBUG: [guild] loading plugin broken_plugin: broken_plugin (broken_plugin 1.2.3)" in result.stderr
    assert result.stderr.endswith("guild: unexpected error: RuntimeError: plugin bug\n")


def test_bad_input_stays_one_line_with_debug(sh, guild_home, project):
    result = sh("--debug", "run", "-y", "nothing-here")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert "guild: cannot find operation nothing-here" in result.stderr


# ---------------------------------------------------------------------
# guild help
# ---------------------------------------------------------------------

HELP_GUILDFILE = """
train:
  description: >
    Train a model

    Uses the data prepared by prepare.
  main: guild.pass
  flags:
    lr:
      description: Learning rate
      default: 0.01
    opt:
      description: Optimizer
      default: adam
      choices: [adam, sgd]
    layers:
      description:
        Layer count

        More layers take longer.
      required: yes
    act:
      description: Activation
      choices:
        - value: relu
          description: Rectified linear
        - value: tanh
          alias: t
          description: Hyperbolic tangent
    msg: Hello there
  requires:
    - operation: prepare
      name: data
prepare:
  description: Prepare data
  main: guild.pass
_hidden:
  main: guild.pass
"""

# What Guild AI 0.9 prints for HELP_GUILDFILE after its overview.
HELP_OPERATIONS = """
BASE OPERATIONS

    prepare
      Prepare data

    train
      Train a model

      Uses the data prepared by prepare.

      Flags:
        act     Activation

                Choices:
                  relu  Rectified linear
                  t     Hyperbolic tangent

        layers  Layer count (required)

                More layers take longer.

        lr      Learning rate (default is 0.01)
        msg     (default is 'Hello there')
        opt     Optimizer (default is adam)

                Choices:  adam, sgd

        data

"""

MODELS_GUILDFILE = """
- model: mnist
  description: MNIST classifier
  references:
    - https://example.com/mnist
  operations:
    train:
      main: guild.pass
      flags:
        epochs: 5
    evaluate:
      description: Evaluate a trained model
      main: guild.pass
- model: empty
- model: _private
  operations:
    op:
      main: guild.pass
"""

# Guild AI 0.9's, but for the line about a model without operations.
HELP_MODELS = """
MODELS

    empty

      Operations:

        This model has no operations.


    mnist

      MNIST classifier

      Operations:

        evaluate
          Evaluate a trained model

        train
          Flags:
            epochs  (default is 5)

      References:

        - https://example.com/mnist

    _private

      Operations:

        op


"""


def _after(text: str, heading: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    return lines[lines.index(heading):]


def test_help_shows_operations_and_flags_as_guild_ai_does(cli, guild_home, project):
    project.write("guild.yml", HELP_GUILDFILE)
    result = cli("help", "-n")
    assert result.exit_code == 0, result.stderr
    assert result.output.startswith("OVERVIEW\n\n    These are the operations defined in the current directory.\n")
    assert _after(result.output, "BASE OPERATIONS") == HELP_OPERATIONS.splitlines()[1:]
    # Private operations are left out; a pipe gets the same text (no pager).
    assert "_hidden" not in result.output
    assert cli("help").output == result.output


def test_help_shows_models_and_references(cli, guild_home, project):
    project.write("guild.yml", MODELS_GUILDFILE)
    out = cli("help", "-n").output
    assert "BASE OPERATIONS" not in out
    assert _after(out, "MODELS") == HELP_MODELS.splitlines()[1:]


def test_help_shows_imported_flags(cli, guild_home, project):
    project.write("guild.yml", """
        train:
          description: Train with imported flags
          main: train
          flags-import: all
          flags:
            lr:
              description: The learning rate
        """)
    project.write("train.py", """
        import argparse

        p = argparse.ArgumentParser()
        p.add_argument("--lr", type=float, default=0.1, help="Learning rate")
        p.add_argument("--epochs", type=int, default=3, help="Epochs to train")
        p.add_argument("--name", default="a b", help="Run name")
        p.parse_args()
        """)
    out = cli("help", "-n").output
    assert _after(out, "BASE OPERATIONS") == [
        "BASE OPERATIONS",
        "",
        "    train",
        "      Train with imported flags",
        "",
        "      Flags:",
        "        epochs  Epochs to train (default is 3)",
        "        lr      The learning rate (default is 0.1)",
        "        name    Run name (default is 'a b')",
        "",
    ]


def test_help_for_a_path_or_a_guild_file(cli, guild_home, project, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "guild.yml").write_text(textwrap.dedent(MODELS_GUILDFILE))
    out = cli("help", "-n", str(other)).output
    assert "These are the operations defined in '../other'." in out
    assert _after(out, "MODELS") == HELP_MODELS.splitlines()[1:]
    named = other / "ops.yml"
    named.write_text(textwrap.dedent(HELP_GUILDFILE))
    out = cli("help", "-n", str(named)).output
    assert _after(out, "BASE OPERATIONS") == HELP_OPERATIONS.splitlines()[1:]
    # -C makes it the current directory.
    assert "defined in the current directory" in cli("-C", str(other), "help", "-n").output


def test_help_markdown_and_package_description(cli, guild_home, project):
    project.write("guild.yml", MODELS_GUILDFILE)
    md = cli("help", "--markdown", "--title", "My Project", "--base-heading-level", "2").output
    assert md.startswith("## My Project\n\n### Overview\n")
    lines = md.splitlines()
    for heading in ("### Models", "#### mnist", "##### Operations", "###### train", "<h7>Flags</h7>", "##### References"):
        assert heading in lines
    assert "<dt>epochs</dt>" in lines and "<dd>(default is 5)</dd>" in lines
    rst = cli("help", "--package-description").output.splitlines()
    i = rst.index("Models")
    assert rst[i + 1] == "#" * len("Models")
    assert rst[rst.index("mnist") + 1] == "====="
    assert "*MNIST classifier*" in rst
    result = cli("help", "--markdown", "--package-description")
    assert result.exit_code == 1
    assert result.stderr == "guild: --package-description and --markdown cannot both be used\n"


def test_help_without_a_guild_file(cli, guild_home, project, tmp_path):
    result = cli("help")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: the current directory has no guild.yml\n")
    result = cli("help", str(tmp_path / "missing"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"guild: cannot find '{tmp_path / 'missing'}': not a project directory or guild file"


def test_help_of_a_bad_guild_file_names_file_and_line(cli, guild_home, project):
    project.write("guild.yml", "op:\n  main: x\n  flags: [\n")
    result = cli("help")
    assert result.exit_code == 1
    assert result.stderr.startswith("guild: ")
    assert "guild.yml:" in result.stderr


def test_help_escapes_control_characters(cli, guild_home, project):
    project.write("guild.yml", 'op:\n  description: "bad \\x1b[31m red"\n  main: guild.pass\n')
    out = cli("help").output
    assert "\x1b" not in out
    assert "bad \\x1b[31m red" in out


# ---------------------------------------------------------------------
# guild completion
# ---------------------------------------------------------------------


def complete(words: str, env: dict | None = None, shell: str = "bash") -> list[str]:
    """What guild answers a shell completing `words` (the last word is
    the one being typed): click's protocol, through _GUILD_COMPLETE."""
    parts = words.split(" ")
    full_env = {
        "_GUILD_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(parts) - 1),
    }
    full_env.update(env or {})
    result = CliRunner().invoke(guild_cli, [], env=full_env, prog_name="guild", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # Nothing to offer is one empty line.
    return [line for line in result.output.splitlines() if line]


def plain(lines: list[str]) -> list[str]:
    """Values of bash's ``TYPE,VALUE`` lines."""
    return [line.split(",", 1)[1] for line in lines]


def make_run(cli, project, name="t.py") -> Run:
    project.write(name, "print('ok')\n")
    assert cli("run", "-y", name).exit_code == 0


def test_completes_command_names_without_importing_them(guild_home):
    assert plain(complete("guild he")) == ["help"]
    assert plain(complete("guild ru")) == ["run", "runs"]
    zsh = complete("guild comp", shell="zsh")
    assert zsh[:3] == ["plain", "compare", "Compare run flags, scalars and attributes."]
    assert "completion" in zsh


def test_completes_operations_and_scripts(guild_home, project):
    project.write("guild.yml", HELP_GUILDFILE)
    project.write("train.py", "")
    project.write("sub/x.py", "")
    assert plain(complete("guild run ")) == ["prepare", "train", "sub/", "train.py"]
    assert plain(complete("guild run tr")) == ["train", "train.py"]
    assert plain(complete("guild run sub/")) == ["sub/x.py"]
    zsh = complete("guild run pr", shell="zsh")
    assert zsh == ["plain", "prepare", "Prepare data"]


def test_completes_operations_of_the_C_directory(guild_home, project, elsewhere):
    project.write("guild.yml", HELP_GUILDFILE)
    assert plain(complete("guild run ")) == []
    assert plain(complete(f"guild -C {project.path} run ")) == ["prepare", "train"]


def test_completes_run_ids_newest_first(cli, guild_home, project, other_home):
    make_run(cli, project, "a.py")
    make_run(cli, project, "b.py")
    runs = sorted(runs_of(guild_home), key=lambda r: r.get("started"), reverse=True)
    ids = [r.id for r in runs]
    for words in ("guild runs info ", "guild cat ", "guild runs delete ", "guild export out ", "guild run --start "):
        assert plain(complete(words)) == ids, words
    assert plain(complete(f"guild runs info {ids[1][:3]}")) == [i for i in ids if i.startswith(ids[1][:3])]
    # zsh and fish show each run's operation.
    zsh = complete("guild runs info ", shell="zsh")
    assert zsh[:3] == ["plain", ids[0], "b.py"]
    # Deleted runs for restore and purge, the -H home's runs with -H.
    cli("runs", "delete", "-y", ids[0])
    assert plain(complete("guild runs restore ")) == [ids[0]]
    assert plain(complete("guild runs info ")) == [ids[1]]
    assert plain(complete(f"guild -H {other_home} runs info ")) == []


def test_completion_of_directories_for_C_and_H(guild_home):
    assert complete("guild -C ") == ["dir,"]
    assert complete("guild -H x", shell="zsh") == ["dir", "x", "_"]


def test_completion_scripts(cli, guild_home):
    for shell, marker in (("bash", "complete -o nosort -F _guild_completion guild"), ("zsh", "compdef _guild_completion guild"), ("fish", "complete --no-files --command guild")):
        result = cli("completion", "--shell", shell)
        assert result.exit_code == 0, result.stderr
        assert marker in result.output
        assert "_GUILD_COMPLETE" in result.output
        assert result.output.endswith("\n") and not result.output.endswith("\n\n")
    result = cli("completion", "--shell", "tcsh")
    assert result.exit_code == 2


@pytest.mark.parametrize("shell,check", [
    ("bash", ["bash", "-n"]),
    ("zsh", ["zsh", "-n"]),
    ("fish", ["fish", "--no-execute"]),
])
def test_completion_script_is_valid_for_its_shell(cli, guild_home, tmp_path, shell, check):
    if shutil.which(check[0]) is None:
        pytest.skip(f"{shell} is not installed")
    script = tmp_path / f"guild.{shell}"
    script.write_text(cli("completion", "-s", shell).output)
    proc = subprocess.run(check + [str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


def _guild_exe() -> str | None:
    exe = Path(sys.executable).parent / "guild"
    return str(exe) if exe.exists() else None


def test_bash_completes_through_the_script(cli, guild_home, project):
    if shutil.which("bash") is None or _guild_exe() is None:
        pytest.skip("needs bash and the guild command")
    project.write("guild.yml", HELP_GUILDFILE)
    script = project.path / "guild.bash"
    script.write_text(cli("completion", "-s", "bash").output)
    test = (
        f". {script}\n"
        "COMP_WORDS=(guild run tr); COMP_CWORD=2\n"
        "_guild_completion guild\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = dict(os.environ, PATH=f"{Path(_guild_exe()).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "--norc", "-c", test], capture_output=True, text=True, env=env, cwd=project.path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["train"]


def test_fish_completes_through_the_script(cli, guild_home, project):
    if shutil.which("fish") is None or _guild_exe() is None:
        pytest.skip("needs fish and the guild command")
    project.write("guild.yml", HELP_GUILDFILE)
    script = project.path / "guild.fish"
    script.write_text(cli("completion", "-s", "fish").output)
    env = dict(os.environ, PATH=f"{Path(_guild_exe()).parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; complete -C 'guild run tr'"],
        capture_output=True, text=True, env=env, cwd=project.path, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["train\tTrain a model"]


def test_zsh_loads_the_script_into_its_completion_system(cli, guild_home, tmp_path):
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed")
    script = tmp_path / "guild.zsh"
    script.write_text(cli("completion", "-s", "zsh").output)
    test = f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; source {script}; print -r -- $_comps[guild]"
    proc = subprocess.run(["zsh", "-f", "-c", test], capture_output=True, text=True, timeout=60, env=dict(os.environ, HOME=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_guild_completion"


def test_completion_install(sh, guild_home, tmp_path):
    home = tmp_path / "user"
    home.mkdir()
    rc = home / ".bashrc"
    rc.write_text("# mine\n")
    env = {"HOME": str(home)}
    result = sh("completion", "-s", "bash", "--install", env=env)
    assert result.exit_code == 0, result.stderr
    script = home / ".guild" / "bash_completion"
    assert "_guild_completion" in script.read_text()
    assert rc.read_text() == "# mine\n\n[ -s ~/.guild/bash_completion ] && . ~/.guild/bash_completion  # Enable completion for guild\n"
    assert (home / ".bashrc.guild-backup.1").read_text() == "# mine\n"
    assert "completion is installed" in result.output
    again = sh("completion", "-s", "bash", "--install", env=env)
    assert again.exit_code == 0
    assert "already installed in ~/.bashrc (line 3)" in again.stderr
    assert rc.read_text().count("bash_completion") == 2
    fish_init = tmp_path / "fish-init.fish"
    result = sh("completion", "-s", "fish", "-i", "--shell-init", str(fish_init), env=env)
    assert result.exit_code == 0, result.stderr
    assert fish_init.read_text() == "test -s ~/.guild/fish_completion ;and . ~/.guild/fish_completion\n"
    assert not list(tmp_path.glob("fish-init.fish.guild-backup.*"))


def test_completion_costs_normal_start_up_nothing(guild_home):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from guild_core.cli.main import guild\n"
        "CliRunner().invoke(guild, ['operations'], catch_exceptions=False)\n"
        "print('guild_core.cli.completion' in sys.modules, 'click.shell_completion' in sys.modules, 'logging' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["False", "False", "False"]


# ---------------------------------------------------------------------
# guild check
# ---------------------------------------------------------------------

CHECK_FIELDS = [
    "guild_version", "guild_install_location", "guild_home", "guild_resource_cache",
    "installed_plugins", "python_version", "python_exe", "platform", "psutil_version",
    "tensorboard_version", "cuda_version", "nvidia_smi_version",
]


def _fields(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        name, _, val = line.partition(":")
        fields[name] = val.strip()
    return fields


def test_check_shows_guild_ai_fields(cli, guild_home):
    import guild_core

    result = cli("check")
    assert result.exit_code == 0, result.stderr
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == CHECK_FIELDS
    # Values start at Guild AI's column.
    assert lines[2] == f"guild_home:                {guild_home}"
    f = _fields(result.output)
    assert f["guild_version"] == guild_core.__version__
    assert f["guild_install_location"] == str(Path(guild_core.__file__).parent)
    assert f["guild_resource_cache"] == str(guild_home / "cache" / "resources")
    assert f["python_exe"] == sys.executable
    assert f["python_version"] == sys.version.replace("\n", "")
    assert {"argparse", "globals", "gp", "random"} <= set(f["installed_plugins"].split(", "))


def test_check_verbose_and_env(cli, guild_home):
    out = cli("check", "-v").output
    names = [line.split(":")[0] for line in out.splitlines()]
    assert names.index("python_path") == names.index("python_exe") + 1
    assert "  argparse" in names and "  gp" in names
    for mod in ("click", "pluggy", "yaml", "numpy", "skopt"):
        assert f"{mod}_version" in names
    f = _fields(out)
    assert f["  argparse"].startswith("guild ") and f["  argparse"].endswith("(guild_flags_argparse)")
    env = cli("check", "--env").output
    assert [line.split(":")[0] for line in env.splitlines()] == [
        "guild_version", "guild_install_location", "guild_home", "guild_resource_cache", "python_version", "python_exe",
    ]
    assert cli("check", "--offline").output == cli("check", "--no-offline").output


def test_check_shows_a_third_party_plugin_with_its_version(tmp_path, guild_home):
    site = tmp_path / "site"
    make_dist(site, "extra_plugin", "X = 1\n")
    result = guild_sub(["check"], site=site)
    assert result.returncode == 0, result.stderr
    assert "extra_plugin (extra_plugin 1.2.3)" in _fields(result.stdout)["installed_plugins"]
    result = guild_sub(["check", "-v"], site=site)
    assert _fields(result.stdout)["  extra_plugin"] == "extra_plugin 1.2.3 (extra_plugin)"
    result = guild_sub(["check"], site=site, env={"GUILD_DISABLE_PLUGINS": "extra_plugin"})
    assert _fields(result.stdout)["installed_plugins"].endswith(" (disabled: extra_plugin)")


def test_check_a_plugin_that_fails_to_load_is_a_problem(tmp_path, guild_home):
    site = tmp_path / "site"
    make_dist(site, "bad_import", "import no_such_module_here\n")
    result = guild_sub(["check"], site=site)
    assert result.returncode == 1
    assert "ERROR: cannot load plugin bad_import" in _fields(result.stdout)["installed_plugins"]
    assert "platform" in _fields(result.stdout)  # the other checks still run
    assert result.stderr.splitlines()[0] == "guild: there are problems with your setup"


@pytest.mark.parametrize("required,ok", [
    (">=0.1", True), ("0.1.0", True), ("==0.1.*", True), ("0.1.*", True), ("~=0.1", True),
    (">=0.1,<1", True), ("!=0.1.0", False), (">=1.0", False), ("<0.1", False), ("==0.2.*", False),
])
def test_check_version(cli, guild_home, required, ok, monkeypatch):
    import guild_core.cli.info as info

    monkeypatch.setattr(info, "__version__", "0.1.0")
    result = cli("check", "-n", "--version", required)
    assert result.output == ""
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        assert result.exit_code == 1
        assert result.stderr == f"guild: version mismatch: current version '0.1.0' does not match '{required}'\n"


@pytest.mark.parametrize("required", ["foo", ">=", "~=1", ">=1.*", "1.0a1"])
def test_check_invalid_version_requirement(cli, guild_home, required):
    result = cli("check", "--version", required)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"guild: invalid version requirement '{required}'\n")
    assert result.output == ""


def test_check_no_info_prints_nothing(cli, guild_home):
    result = cli("check", "-n")
    assert result.exit_code == 0 and result.output == ""


# ---------------------------------------------------------------------
# guild sys
# ---------------------------------------------------------------------


def test_shutdown_timer_in_the_foreground(sh, guild_home):
    # --dont-shutdown always: a test must never shut the machine down.
    result = sh("sys", "shutdown-timer", "start", "-f", "-d", "-t", "0.01")
    assert result.exit_code == 0, result.stderr
    log = [line.split(" ", 2)[2] for line in result.stderr.splitlines()]
    assert log[0] == "Shutdown timer started with timeout = 0.01m"
    assert "would run: shutdown +1 (--dont-shutdown)" in log
    assert log[-1] == "Stopping"
    assert not (guild_home / "proc" / "shutdown-timer.pid").exists()


def test_shutdown_timer_start_status_stop(sh, guild_home):
    assert sh("sys", "shutdown-timer", "status").output == "Shutdown timer is not running\n"
    started = sh("sys", "shutdown-timer", "start", "-d", "-t", "30")
    try:
        assert started.exit_code == 0, started.stderr
        assert started.output == "Starting Shutdown timer (use 'guild sys shutdown-timer stop' to stop)\n"
        status = sh("sys", "shutdown-timer", "status").output
        assert status.startswith("Shutdown timer is running (pid ")
        again = sh("sys", "shutdown-timer", "start", "-d")
        assert again.exit_code == 1
        assert again.stderr.startswith("guild: Shutdown timer is already running")
    finally:
        stopped = sh("sys", "shutdown-timer", "stop")
    assert stopped.output.startswith("Stopping Shutdown timer (pid ")
    assert sh("sys", "shutdown-timer", "status").output == "Shutdown timer is not running\n"
    assert sh("sys", "shutdown-timer", "stop").output == "Shutdown timer is not running\n"
    log = (guild_home / "logs" / "shutdown-timer.log").read_text()
    assert "Shutdown timer started with timeout = 30m" in log and log.rstrip().endswith("Stopping")


def test_shutdown_timer_stale_pid_file_is_not_running(cli, guild_home):
    pidfile = guild_home / "proc" / "shutdown-timer.pid"
    pidfile.parent.mkdir()
    pidfile.write_text(f"{os.getpid()} t0\n")  # this pid, another start time
    assert cli("sys", "shutdown-timer", "status").output == "Shutdown timer is not running\n"
    assert not pidfile.exists()


# ---------------------------------------------------------------------
# --help of each command covers its options
# ---------------------------------------------------------------------


@pytest.mark.parametrize("args,options", [
    (["help"], ["--package-description", "--markdown", "--base-heading-level", "--title", "-n, --no-pager"]),
    (["completion"], ["-s, --shell", "--shell-init", "-i, --install"]),
    (["check"], ["--env", "--tensorflow", "--pytorch", "-n, --no-info", "-v, --verbose", "--space", "--version", "--notify", "--offline"]),
    (["sys"], ["shutdown-timer"]),
    (["sys", "shutdown-timer", "start"], ["-t, --timeout", "-s, --su", "-f, --foreground", "-g, --grace-period", "-d, --dont-shutdown"]),
])
def test_help_text_covers_options(cli, guild_home, args, options):
    result = cli(*args, "--help")
    assert result.exit_code == 0
    for opt in options:
        assert opt in result.output, opt
