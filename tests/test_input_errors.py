"""Bad input is one clear ``guild: ...`` line and exit status 1: never a
traceback, never silently accepted, and nothing written under
GUILD_HOME/runs. guild.yml errors name the file, the line and the key."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from guild_core import filterexpr
from guild_core.errors import GuildError, OpDefError
from guild_core.opdef import load_guildfile

TRAIN_PY = "print('trained')\n"


def no_runs(home) -> bool:
    runs = home / "runs"
    return not runs.exists() or not any(runs.iterdir())


def assert_one_error(result, *parts: str) -> str:
    """Exit 1, one ``guild:`` line on stderr holding every part, no
    traceback; returns the line."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.stderr)
    assert "Traceback" not in result.stderr + result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("guild: "), line
    for part in parts:
        assert part in line, (part, line)
    return line


def write_guildfile(project, text: str):
    path = project.path / "guild.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    project.write("train.py", TRAIN_PY)
    return path


# ---------------------------------------------------------------------
# 1. env
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, line, message",
    [
        ("env: [1, 2]", 3, "env must be a mapping of names to values"),
        ("env: 5", 3, "env must be a mapping of names to values"),
        ("env:\n    A: {b: 1}", 4, "env value for 'A' must be a string, number or boolean (got a mapping)"),
        ("env:\n    A: [1]", 4, "env value for 'A' must be a string, number or boolean (got a list)"),
        ("env:\n    A: 2020-01-01", 4, "env value for 'A' must be a string, number or boolean (got a date"),
    ],
)
def test_env_must_be_a_mapping_of_scalars(cli, guild_home, project, env, line, message):
    gf = write_guildfile(project, f"train:\n  main: train\n  {env}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), f"guild: {gf}:{line}: {message}")
    assert no_runs(guild_home)


def test_env_scalars_are_written_as_strings(cli, guild_home, project):
    project.write(
        "guild.yml",
        """
        train:
          main: train
          env:
            S: hello
            I: 3
            F: 0.5
            B: yes
            N: null
        """,
    )
    project.write("train.py", "import os\nfor k in 'SIFBN': print(k, repr(os.environ[k]))\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    assert "S 'hello'\nI '3'\nF '0.5'\nB 'True'\nN ''" in result.output


# ---------------------------------------------------------------------
# 2. main/exec that do not split into arguments
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("main", "\"train --msg 'oops\""),
        ("exec", "\"echo 'oops\""),
        ("exec", "'echo oops\\'"),
    ],
)
def test_unbalanced_quote_in_command(cli, guild_home, project, key, value):
    gf = write_guildfile(project, f"train:\n  description: x\n  {key}: {value}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        line = assert_one_error(cli(*args), f"guild: {gf}:3: invalid {key}: ")
        assert re.search("no closing quotation|no escaped character", line), line
    assert no_runs(guild_home)


@pytest.mark.parametrize("key, value", [("main", "'  '"), ("exec", "''"), ("main", "''")])
def test_empty_command(cli, guild_home, project, key, value):
    gf = write_guildfile(project, f"train:\n  {key}: {value}\n")
    assert_one_error(cli("run", "train", "-y"), f"guild: {gf}:2: {key} is empty")
    assert no_runs(guild_home)


# ---------------------------------------------------------------------
# 3. flag defaults and choices
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, line, message",
    [
        ("x:\n      default: [1, {a: 2}]", 5, "invalid default for flag 'x': a list may not contain a mapping"),
        ("x: [1, {a: 2}]", 4, "invalid default for flag 'x': a list may not contain a mapping"),
        ("x: [1, [2, {a: 2}]]", 4, "invalid default for flag 'x': a list may not contain a mapping"),
        ("x:\n      default: {a: [{b: 1}]}", 5, "invalid default for flag 'x': a list may not contain a mapping"),
        ("x: 2020-01-01", 4, "invalid default for flag 'x': 2020-01-01 is a date (quote it for a string)"),
        ("x: !!binary aGVsbG8=", 4, "invalid default for flag 'x': "),
        ("x: !!set {a, b}", 4, "invalid default for flag 'x': "),
        ("x:\n      choices: [{a: 1}]", 5, "invalid choice for flag 'x': a choice mapping needs a 'value'"),
        ("x:\n      choices: [1, [2, {a: 1}]]", 5, "invalid choice for flag 'x': a list may not contain a mapping"),
        ("x:\n      description: [1]", 5, "description of flag 'x' must be a string"),
        ("x:\n      arg-name: [1]", 5, "arg-name of flag 'x' must be a string"),
        ("x:\n      required: [1]", 5, "required of flag 'x' must be yes or no"),
        ("x:\n      min: abc", 5, "min of flag 'x' must be a number"),
        ("x:\n      arg-switch: {a: 1}", 5, "arg-switch of flag 'x' must be a string, number or boolean"),
        ("null: 1", 4, "invalid flag name None"),
        ("x:\n      type: int\n      default: abc", 6, "default of flag 'x': invalid value abc for x: expected an integer"),
        ("x:\n      type: int\n      default: 1.5", 6, "default of flag 'x': invalid value 1.5 for x: expected an integer"),
        ("x:\n      type: boolean\n      default: maybe", 6, "default of flag 'x': invalid value maybe for x: expected a boolean"),
        ("x:\n      default: 1\n      choices: [2, 3]", 5, "default of flag 'x': invalid value 1 for x: supported values are 2, 3"),
    ],
)
def test_bad_flag_definitions(cli, guild_home, project, flag, line, message):
    gf = write_guildfile(project, f"train:\n  main: train\n  flags:\n    {flag}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), f"guild: {gf}:{line}: {message}")
    assert no_runs(guild_home)


@pytest.mark.parametrize(
    "flag",
    [
        "x: {type: float, default: 1}",
        "x: {type: boolean, default: 0}",
        "x: {type: path, default: 5}",
        "x: {type: float, default: 'loguniform[1e-5:1e-1]'}",
        "x: {type: int, default: 2, choices: [1, 2]}",
        "x: {default: null, choices: [1, 2]}",
        "x: {type: string, default: 5}",
        "x: {default: [1, 2], choices: [1, 2, 3]}",
        "x: .inf",
        "5: 1",
    ],
)
def test_good_flag_definitions_load(project, flag):
    gf = write_guildfile(project, f"train:\n  main: train\n  flags:\n    {flag}\n")
    assert len(load_guildfile(gf)["train"]["flags"]) == 1


def test_supported_flag_default_shapes(cli, guild_home, project):
    """Nested lists and mappings are values, as in Guild AI: recorded as
    they are and passed as Guild AI passes them."""
    project.write(
        "guild.yml",
        """
        train:
          main: train
          flags-dest: args
          flags:
            nested: [1, [2, 3]]
            mapping:
              default: {a: 1, b: [2, 3]}
            choice:
              default: 1
              choices:
                - value: 1
                  description: one
                - 2
        """,
    )
    project.write("train.py", "import sys\nprint(sys.argv[1:])\n")
    help_op = cli("run", "train", "--help-op")
    assert help_op.exit_code == 0, help_op.stderr
    assert "default is {a: 1, b: [2, 3]}" in help_op.output
    assert "Choices: 1, 2" in help_op.output
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr
    # A list default in guild.yml is a batch over its items, as Guild AI
    # runs it: one trial with nested=1, one with nested=[2, 3].
    # Arguments are encoded as Guild AI encodes them for argparse: a
    # mapping as Python writes it, a list as its items.
    assert """['--choice', '1', '--mapping', "{'a': 1, 'b': [2, 3]}", '--nested', '1']""" in result.output
    assert """['--choice', '1', '--mapping', "{'a': 1, 'b': [2, 3]}", '--nested', '2 3']""" in result.output
    runs = json.loads(cli("runs", "--json").output)
    from guild_core.run import Run

    trials = [Run.for_dir(r["run_dir"]) for r in runs if r["operation"] == "train"]
    assert sorted((t.get("flags") for t in trials), key=repr) == [
        {"nested": 1, "mapping": {"a": 1, "b": [2, 3]}, "choice": 1},
        {"nested": [2, 3], "mapping": {"a": 1, "b": [2, 3]}, "choice": 1},
    ]


# ---------------------------------------------------------------------
# 4. output-scalars
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, line, message",
    [
        ("5", 3, "invalid output-scalars 5: expected a mapping (TAG: REGEX), a list, a regex or no"),
        ("yes", 3, "invalid output-scalars True: expected a mapping (TAG: REGEX), a list, a regex or no"),
        ("\n    loss: '(unclosed'", 4, "invalid output-scalars pattern '(unclosed': missing ), unterminated subpattern"),
        ("\n    loss: 5", 4, "invalid output-scalars pattern for 'loss': 5"),
        ("['(a)(b']", 3, "invalid output-scalars pattern '(a)(b': missing ), unterminated subpattern"),
        ("\n    - loss: '[x'", 4, "invalid output-scalars pattern '[x': unterminated character set"),
        ("[5]", 3, "invalid output-scalars item: 5"),
        ("'(bad'", 3, "invalid output-scalars pattern '(bad': missing )"),
    ],
)
def test_bad_output_scalars(cli, guild_home, project, value, line, message):
    gf = write_guildfile(project, f"train:\n  main: train\n  output-scalars: {value}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), f"guild: {gf}:{line}: {message}")
    assert no_runs(guild_home)


@pytest.mark.parametrize(
    "value",
    ["no", "null", "'^loss=(\\value)$'", "{loss: 'loss=(\\value)'}", "[{loss: 'loss=(\\value)'}, '(\\key)=(\\value)']"],
)
def test_good_output_scalars(cli, guild_home, project, value):
    write_guildfile(project, f"train:\n  main: train\n  output-scalars: {value}\n")
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr


# ---------------------------------------------------------------------
# 5. flags-dest
# ---------------------------------------------------------------------


@pytest.mark.parametrize("dest", ["bogus", "'global:'", "dict", "'config:'", "5", "[args]", "Globals"])
def test_bad_flags_dest(cli, guild_home, project, dest):
    gf = write_guildfile(project, f"train:\n  main: train\n  flags-dest: {dest}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        line = assert_one_error(cli(*args), f"guild: {gf}:3: invalid flags-dest ")
        assert line.endswith(
            "(expected one of: args, globals, global:NAME, dict:NAME, "
            "namespace:NAME, args:NAME, config:PATH, none)"
        ), line
    assert no_runs(guild_home)


@pytest.mark.parametrize("dest", ["args", "globals", "global:params", "dict:p", "namespace:ns", "config:c.yml", "none", "args:click"])
def test_guild_flags_dest_forms_load(project, dest):
    gf = write_guildfile(project, f"train:\n  main: train\n  flags-dest: {dest}\n")
    assert load_guildfile(gf)["train"]["flags-dest"] == dest


# ---------------------------------------------------------------------
# 6. scalar-typed operation keys
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "attr, message",
    [
        ("default-max-trials: abc", "default-max-trials must be a positive integer"),
        ("default-max-trials: 0", "default-max-trials must be a positive integer"),
        ("default-max-trials: 2.5", "default-max-trials must be a positive integer"),
        ("default-max-trials: yes", "default-max-trials must be a positive integer"),
        ("objective: [1]", "objective must be a scalar name or a mapping with minimize or maximize"),
        ("objective: {best: loss}", "objective must be a scalar name or a mapping with minimize or maximize"),
        ("tags: 5", "tags must be a string or a list of strings"),
        ("tags: [[1]]", "tags must be a string or a list of strings"),
        ("requires: 5", "requires must be a mapping or a list of mappings"),
        ("requires: [5]", "requires must be a mapping or a list of mappings"),
        ("requires: prepare", "requires: undefined resource 'prepare'"),
        ("sourcecode: 5", "invalid sourcecode: 5"),
        ("sourcecode: [5]", "invalid sourcecode rule: 5"),
        ("optimizers: 5", "optimizers must be a mapping or a list of names"),
        ("default: 5", "default must be yes or no"),
        ("flags-import: 5", "flags-import must be yes, no, all or a list of flag names"),
        ("flags-import-skip: 5", "flags-import-skip must be a list of flag names"),
        ("flags-import: [[x]]", "flags-import must be yes, no, all or a list of flag names"),
    ],
)
def test_bad_operation_attributes(cli, guild_home, project, attr, message):
    gf = write_guildfile(project, f"train:\n  main: train\n  {attr}\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), f"guild: {gf}:3: {message}")
    assert no_runs(guild_home)


@pytest.mark.parametrize(
    "attr",
    [
        "default-max-trials: 5",
        "objective: loss",
        "objective: {maximize: acc}",
        "tags: one",
        "tags: [a, b]",
        "requires: []",
        "optimizers: [random]",
        "optimizers: {random: {}}",
        "default: yes",
        "flags-import: all",
        "flags-import: [lr]",
        "flags-import-skip: lr",
        "sourcecode: ['*.py']",
    ],
)
def test_good_operation_attributes(cli, guild_home, project, attr):
    write_guildfile(project, f"train:\n  main: train\n  {attr}\n")
    assert cli("operations").exit_code == 0
    result = cli("run", "train", "-y")
    assert result.exit_code == 0, result.stderr


def test_flags_import_skip_string_is_one_name(cli, guild_home, project):
    project.write("guild.yml", "train:\n  main: train\n  flags-import: all\n  flags-import-skip: lr\n")
    project.write(
        "train.py",
        "import argparse\np = argparse.ArgumentParser()\n"
        "p.add_argument('--lr', type=float, default=0.1)\n"
        "p.add_argument('--l', type=int, default=1)\np.parse_args()\n",
    )
    result = cli("run", "train", "--help-op")
    assert result.exit_code == 0, result.stderr
    # "lr" is skipped; "l" (one of its letters) is not.
    assert re.search(r"^\s+l\s+\(default is 1\)", result.output, re.M), result.output
    assert not re.search(r"^\s+lr\b", result.output, re.M), result.output


# ---------------------------------------------------------------------
# 7. filter nesting
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "not " * 3000 + "x=1",
        "(" * 5000 + "x=1" + ")" * 5000,
        "x in " + "[" * 5000 + "]" * 5000,
        "(" * 60 + "not " * 60 + "x=1" + ")" * 60,
    ],
)
def test_filter_nests_too_deeply(cli, guild_home, project, expr):
    # One run, so the filter would be evaluated if it were parsed late.
    project.write("train.py", TRAIN_PY)
    assert cli("run", "train.py", "-y").exit_code == 0
    result = cli("runs", "-F", expr)
    assert_one_error(result, f"guild: filter nests too deeply (more than {filterexpr.MAX_DEPTH} levels)")


def test_filter_depth_limit_is_parse_time():
    with pytest.raises(GuildError, match=r"^filter nests too deeply \(more than 100 levels\)$"):
        filterexpr.parse("not " * 101 + "x=1")
    with pytest.raises(GuildError, match="nests too deeply"):
        filterexpr.parse("(" * 101 + "x=1" + ")" * 101)
    with pytest.raises(GuildError, match="nests too deeply"):
        filterexpr.parse("x in " + "[" * 101 + "]" * 101)


def test_filter_depth_error_comes_before_any_run_is_read():
    from guild_core import select

    class Unreadable:
        def __getattr__(self, name):
            raise AssertionError("a run was read")

    with pytest.raises(GuildError, match="nests too deeply"):
        select.filter_runs([Unreadable()], select.RunFilter(expr="not " * 200 + "x=1"))


class _Values(filterexpr.RunValues):
    def __init__(self, flags):
        self.run = None
        self._flags = flags

    def attr(self, name):
        return None

    def flag(self, name):
        return self._flags.get(name)

    def scalar(self, key):
        return None


@pytest.mark.parametrize("depth", [50, 100])
def test_deep_legal_filters_work(depth):
    parens = filterexpr.parse("(" * depth + "x=1" + ")" * depth)
    assert parens(_Values({"x": 1})) and not parens(_Values({"x": 2}))
    nots = filterexpr.parse("not " * depth + "x=1")
    assert nots(_Values({"x": 1})) is (depth % 2 == 0)
    mixed = filterexpr.parse("(not " * (depth // 2) + "x=1 or y=2" + ")" * (depth // 2))
    assert mixed(_Values({"x": 1})) is (depth // 2 % 2 == 0)
    lists = filterexpr.parse("x in " + "[" * depth + "1" + "]" * depth)
    assert not lists(_Values({"x": 1}))
    assert filterexpr.parse("x in " + "[" * depth + "]" * depth)(_Values({"x": 1})) is False


def test_deep_legal_filter_through_cli(cli, guild_home, project):
    project.write("train.py", TRAIN_PY)
    assert cli("run", "train.py", "-y").exit_code == 0
    result = cli("runs", "-F", "(" * 50 + "completed" + ")" * 50)
    assert result.exit_code == 0, result.stderr
    assert "train.py" in result.output


# ---------------------------------------------------------------------
# 8. empty value lists
# ---------------------------------------------------------------------


ECHO_PY = """
import argparse
p = argparse.ArgumentParser()
p.add_argument("--name", default="a")
p.add_argument("--x", type=int, default=1)
print(p.parse_args())
"""


@pytest.mark.parametrize(
    "args, flag",
    [
        (("name=[]",), "name"),
        (("x=1", "name=[]"), "name"),
        (("name=[1,2]", "x=[]"), "x"),
        (("x=[ ]",), "x"),
        (("--force-flags", "other=[]"), "other"),
    ],
)
def test_empty_value_list_is_an_error(cli, guild_home, project, args, flag):
    project.write("train.py", ECHO_PY)
    result = cli("run", "train.py", *args, "-y")
    assert_one_error(result, f"guild: flag '{flag}' has an empty list of values")
    assert no_runs(guild_home)


def test_empty_value_list_in_guildfile_op(cli, guild_home, project):
    project.write("guild.yml", "train:\n  main: train\n  flags:\n    name: a\n")
    project.write("train.py", ECHO_PY)
    for extra in ((), ("--print-trials",), ("--optimizer", "random")):
        result = cli("run", "train", "name=[]", "-y", *extra)
        assert_one_error(result, "guild: flag 'name' has an empty list of values")
    assert no_runs(guild_home)


def test_empty_list_is_the_value_of_a_list_valued_flag(cli, guild_home, project):
    """A flag whose default is a list the script assigns takes a list as
    its value, so an empty list is a value there, not an empty batch. (A
    list default in guild.yml is a batch, as in Guild AI: [] is none.)"""
    project.write("train.py", "names = ['a', 'b']\nprint('names=%s' % (names,))\n")
    result = cli("run", "train.py", "names=[]", "-y")
    assert result.exit_code == 0, result.stderr
    assert "names=[]" in result.output
    runs = json.loads(cli("runs", "--json").output)
    assert len(runs) == 1 and runs[0]["operation"] == "train.py"
    project.write("guild.yml", "train:\n  main: train\n  flags:\n    names: [a, b]\n")
    result = cli("run", "train", "names=[]", "-y")
    assert result.exit_code == 1 and "flag 'names' has an empty list of values" in result.stderr


# ---------------------------------------------------------------------
# Malformed guild.yml files through every command that reads them
# ---------------------------------------------------------------------

LAUGHS = "\n".join(
    ["- config: lol", '  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["- operations:", "    train:", "      main: train", "      description: *a8"]
)

# (guild.yml text, line named in the error, part of the message)
MALFORMED = [
    ("operations: 5\n", 1, "operation 'operations' must be a mapping"),
    ("hello\n", 1, "expected a mapping of operations"),
    ("42\n", 1, "expected a mapping of operations"),
    ("- model: m\n  operations: [train]\n", 2, "operations must be a mapping"),
    ("- model: m\n  operations: 0\n", 2, "operations must be a mapping"),
    ("- model: [1]\n  operations:\n    train: {main: train}\n", 1, "model must be a string"),
    ("- model: m\n- 5\n", 2, "expected a mapping, got 5"),
    ("train:\n  main: train\n  flags: [1, 2]\n", 3, "flags must be a mapping"),
    ("train:\n  main: train\n  flags:\n    x:\n      choices: [{a: 1}]\n", 5, "a choice mapping needs a 'value'"),
    ("train:\n  main: train\n  sourcecode: 5\n", 3, "invalid sourcecode: 5"),
    ("train:\n  main: train\n  requires: 5\n", 3, "requires must be a mapping or a list of mappings"),
    ("null:\n  main: train\n", 1, "invalid operation name None"),
    ("train:\n  main: train\n  env: [1, 2]\n", 3, "env must be a mapping"),
    ("train:\n  main: train\n  env: {[1]: a}\n", 3, "invalid key [1]"),
    ("train:\n  main: \"train --msg 'oops\"\n", 2, "invalid main: no closing quotation"),
    ("train:\n  main: train\n  flags:\n    x: [1, {a: 2}]\n", 4, "a list may not contain a mapping"),
    ("train:\n  main: train\n  output-scalars: 5\n", 3, "invalid output-scalars 5"),
    ("train:\n  main: train\n  output-scalars:\n    loss: '(unclosed'\n", 4, "unterminated subpattern"),
    ("train:\n  main: train\n  flags-dest: bogus\n", 3, "invalid flags-dest 'bogus'"),
    ("train:\n  main: train\n  default-max-trials: abc\n", 3, "default-max-trials must be a positive integer"),
    ("train:\n  main: train\n  objective: [1]\n", 3, "objective must be"),
    ("train:\n  main: train\n  tags: 5\n", 3, "tags must be"),
    ("train:\n  main: train\n  flags-import: 5\n", 3, "flags-import must be"),
    ("train:\n  main: train\n  flags:\n    x:\n      description: [1]\n", 5, "must be a string"),
    ("train:\n  main: '  '\n", 2, "main is empty"),
    ("train:\n  exec: ''\n", 2, "exec is empty"),
    ("train:\n  main: train\n  main: other\n", 3, "duplicate key 'main' (first on line 2)"),
    ("train:\n  main: train\ntrain:\n  main: other\n", 3, "duplicate key 'train' (first on line 1)"),
    ("x: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nests too deeply"),
    ("train:\n  main: train\n  flags:\n    x: " + "[" * 500 + "]" * 500 + "\n", 4, "nests too deeply"),
    (LAUGHS, 7, "guild.yml expands to too much data (more than 200,000 values through aliases)"),
    ("a: &a [*a]\n", 1, "recursive alias (a value that contains itself)"),
    ("train: {main: train\n", 2, "expected ',' or '}'"),
    ("train:\n  main: train\n  flags:\n    x: !!python/object:os.system ls\n", 4, "could not determine a constructor"),
]


@pytest.mark.parametrize("text, line, message", MALFORMED, ids=[f"case{i}" for i in range(len(MALFORMED))])
def test_malformed_guildfiles(cli, guild_home, project, text, line, message):
    project.write("train.py", TRAIN_PY)
    gf = project.path / "guild.yml"
    gf.write_text(text)
    where = f"guild: {gf}:{line}: "
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), where, message)
    assert no_runs(guild_home)


def test_not_utf8_guildfile(cli, guild_home, project):
    project.write("train.py", TRAIN_PY)
    gf = project.path / "guild.yml"
    gf.write_bytes(b"train:\n  description: caf\xe9\n")
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(cli(*args), f"guild: {gf}:2: cannot read: not UTF-8 text")
    assert no_runs(guild_home)


@pytest.mark.parametrize("case", [0, 14, 16, 19, 30])
def test_malformed_guildfiles_as_a_user_runs_them(sh, guild_home, project, case):
    """The same, through a real ``guild`` process (the billion-laughs file
    among them: it must fail fast, not exhaust memory)."""
    text, line, message = MALFORMED[case]
    project.write("train.py", TRAIN_PY)
    gf = project.path / "guild.yml"
    gf.write_text(text)
    for args in (("operations",), ("run", "train", "--help-op"), ("run", "train", "-y")):
        assert_one_error(sh(*args, timeout=30), f"guild: {gf}:{line}: ", message)
    assert no_runs(guild_home)


def test_merge_keys_and_anchors_still_load(project):
    gf = write_guildfile(
        project,
        """
        - config: base
          flags: &flags
            lr: 0.1
          op: &op
            main: train
            description: base op
        - model: m
          operations:
            train:
              <<: *op
              description: own
              flags: *flags
        """,
    )
    ops = load_guildfile(gf)
    assert ops["m:train"]["description"] == "own"
    assert ops["m:train"]["main"] == "train"
    assert ops["m:train"]["flags"] == {"lr": 0.1}


def test_load_errors_are_opdef_errors(project):
    gf = write_guildfile(project, "train:\n  main: train\n  env: [1]\n")
    with pytest.raises(OpDefError, match=re.escape(f"{gf}:3: env must be a mapping")):
        load_guildfile(gf)


# ---------------------------------------------------------------------
# Command-line values: sequences and nesting
# ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg, message",
    [
        ("x=linspace[0:1:abc]", "invalid linspace[0:1:abc]: COUNT must be an integer"),
        ("x=linspace[0:1:1.5]", "invalid linspace[0:1:1.5]: COUNT must be an integer"),
        ("x=range[1:inf]", "invalid range[1:inf]: 'inf' is not a finite number"),
        ("x=range[nan:1]", "invalid range[nan:1]: 'nan' is not a finite number"),
        ("x=range[1:5:inf]", "invalid range[1:5:inf]: 'inf' is not a finite number"),
        ("x=linspace[-inf:inf:3]", "invalid linspace[-inf:inf:3]: '-inf' is not a finite number"),
        ("x=range[1e400:1e401]", "invalid range[1e400:1e401]: '1e400' is not a finite number"),
        ("x=logspace[0:400:3]", "invalid logspace[0:400:3]: its values are too large for a float"),
        ("x=range[1:1e9]", "invalid range[1:1e9]: more than 100,000 values (use uniform[LOW:HIGH] to search a range)"),
        ("x=range[1:2:1e-400]", "invalid range[1:2:1e-400]: more than 100,000 values"),
        ("x=linspace[0:1:1000000000]", "invalid linspace[0:1:1000000000]: more than 100,000 values"),
        ("x=" + "[" * 5000 + "]" * 5000, "value of flag 'x' nests too deeply (more than 100 levels)"),
        ("x=" + "{a: " * 300 + "1" + "}" * 300, "value of flag 'x' nests too deeply (more than 100 levels)"),
    ],
    ids=lambda v: v[:40],
)
def test_bad_command_line_values(cli, guild_home, project, arg, message):
    project.write("train.py", ECHO_PY)
    for extra in ((), ("--print-trials",)):
        result = cli("run", "train.py", arg, "-y", *extra)
        assert_one_error(result, f"guild: {message}")
    assert no_runs(guild_home)


def test_sequence_limit_is_inclusive(cli, guild_home, project):
    project.write("train.py", ECHO_PY)
    result = cli("run", "train.py", "x=range[1:100000]", "--print-trials")
    assert result.exit_code == 0, result.stderr
    assert result.output.splitlines()[-1].split()[0] == "100000"


def test_deep_legal_value(cli, guild_home, project):
    project.write("train.py", "import sys\nprint(sys.argv[1:])\n")
    project.write("guild.yml", "train:\n  main: train\n  flags-dest: args\n  flags:\n    x: 1\n")
    value = "[" * 100 + "]" * 100
    result = cli("run", "train", f"x={value}", "-y")
    assert result.exit_code == 0, result.stderr
    # A batch of one trial, whose value is the list 99 levels deep,
    # passed as its one item (as Guild AI passes a list to argparse).
    assert "['--x', \"'" + "[" * 98 + "]" * 98 + "'\"]" in result.output
