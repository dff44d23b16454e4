"""Guild AI 0.9's command line, command by command: every option its
`--help` lists (tests/fixtures/guildai-help, taken from Guild AI 0.9) is
an option of ours, unless it is listed below as belonging to a later
feature."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_run_options import options_of

HELP_DIR = Path(__file__).parent / "fixtures" / "guildai-help"

# Commands this project does not have yet, and why.
LATER_COMMANDS = {
    "package": "Guild AI packages", "packages": "Guild AI packages",
    "install": "Guild AI packages", "uninstall": "Guild AI packages",
    "publish": "Guild AI packages", "search": "Guild AI packages",
    "download": "Guild AI packages",
    "init": "environments", "shell": "a Python shell", "tensorflow": "TensorFlow tools",
    "api-merge": "the view (its JSON merge)",
}
# Options that belong to a later feature, or to what this project is
# not (Guild AI's own test suite and R support), by command ("*": every
# one).
LATER_OPTIONS = {
    "*": set(),
    "check": {
        "-T", "--tests", "-t", "--test", "-s", "--skip", "-c", "--concurrency",
        "-f", "--fast", "--force-test", "-r", "--r-script",
    },
}
# Where an option letter means something else in Guild AI's own help,
# the later-feature rule must not hide it.
OWN_MEANING = {
    "export": {"-r"},  # --copy-resources
    "compare": {"-r"},  # --skip-core
}


def help_files() -> list[Path]:
    return sorted(HELP_DIR.glob("*.txt"))


def command_args(name: str) -> list[str]:
    if name == "guild":
        return []
    if name.startswith(("runs-", "remote-", "api-")):
        group, _, sub = name.partition("-")
        return [group, sub]
    return [name]


def test_the_help_files_are_there():
    assert len(help_files()) > 40


@pytest.mark.parametrize("path", help_files(), ids=lambda p: p.stem)
def test_every_guild_ai_option_is_ours(cli, path):
    name = path.stem
    if name in LATER_COMMANDS:
        pytest.skip(f"'guild {name}' comes with {LATER_COMMANDS[name]}")
    ours = cli(*command_args(name), "--help")
    assert ours.exit_code == 0, f"guild {name}: {ours.stderr}"
    later = (LATER_OPTIONS["*"] | LATER_OPTIONS.get(name, set())) - OWN_MEANING.get(name, set())
    missing = options_of(path.read_text()) - options_of(ours.output) - later
    assert sorted(missing) == [], f"guild {' '.join(command_args(name))} lacks {sorted(missing)}"
