"""guild.yml's full format, as Guild AI 0.9 expands it: models, config,
extends, params, $include, top-level include, operation-defaults and
named resources. Expected operations and flags are Guild AI's for the
same files (`guild operations`, `guild run OP --help-op`,
`--print-cmd`)."""

from __future__ import annotations

import json
import os

import pytest

from guild_core.opdef import load_guildfile

TRAIN_PY = """
import argparse
p = argparse.ArgumentParser()
for name in ("kind", "lr", "epochs", "seed", "batch", "a", "b", "c"):
    p.add_argument("--" + name)
p.add_argument("--test", action="store_true")
print(p.parse_known_args())
"""


@pytest.fixture
def proj(project):
    project.write("train.py", TRAIN_PY)
    return project


def operations(cli) -> list[str]:
    result = cli("operations")
    assert result.exit_code == 0, result.stderr
    return [line.split()[0] for line in result.output.splitlines()]


def flags(cli, op: str) -> list[str]:
    result = cli("run", op, "--help-op")
    assert result.exit_code == 0, result.stderr
    out = result.output.splitlines()
    return [" ".join(line.split()) for line in out[out.index("Flags:") + 1:]] if "Flags:" in out else []


def one_error(result, where: str, message: str) -> None:
    assert result.exit_code == 1, (result.output, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"guild: {where}"), lines[0]
    assert message in lines[0], lines[0]


def no_runs(home) -> bool:
    return not (home / "runs").exists() or not list((home / "runs").iterdir())


BASE = """
- config: base
  description: A {{kind}} model
  params:
    kind: plain
    lr: 0.1
  operations:
    train:
      main: train --kind {{kind}}
      description: Train a {{kind}} model
      flags:
        lr:
          default: '{{lr}}'
          description: Learning rate
        epochs: 2
- config: shared-flags
  flags:
    seed: 1
    batch: {default: 32, description: Batch size}
"""


def test_extends_params_and_flag_includes(cli, proj):
    proj.write("guild.yml", BASE + """
- model: cnn
  extends: base
  params:
    kind: CNN
  operations:
    train:
      flags:
        lr: 0.01
        $include: shared-flags#seed
    evaluate: train --test
""")
    assert operations(cli) == ["cnn:evaluate", "cnn:train"]
    assert flags(cli, "cnn:train") == [
        "epochs (default is 2)", "lr Learning rate (default is 0.01)", "seed (default is 1)",
    ]
    result = cli("run", "cnn:train", "--print-cmd")
    assert result.output.split()[-8:] == ["train", "--kind", "CNN", "--epochs", "2", "--lr", "0.01", "--seed", "1"][-8:]
    assert "Train a CNN model" in cli("operations").output


def test_param_values_keep_their_type(proj):
    gf = proj.write("guild.yml", """
- model: m
  params:
    n: 10.0
  description: Value of n is {{n}}
  operations:
    o:
      main: train
      flags:
        n: '{{n}}'
        n_str: n is {{n}}
""")
    op = load_guildfile(gf)["m:o"]
    assert op["flags"] == {"n": 10.0, "n_str": "n is 10.0"}


def test_parent_params_are_defaults_and_refer_to_each_other(proj):
    gf = proj.write("guild.yml", """
- config: c1
  params:
    p1: 1
    version: 1
- config: c2
  extends: c1
  params:
    p2: '{{p1}} 2'
- model: m
  extends: c2
  params:
    p3: '{{p2}} 3'
  operations:
    op:
      main: train
      description: Model {{p3}} v{{version}} {{undefined}}
""")
    assert load_guildfile(gf)["m:op"]["description"] == "Model 1 2 3 v1 {{undefined}}"


def test_multiple_inheritance_first_parent_wins(proj):
    gf = proj.write("guild.yml", """
- config: a
  params: {foo: 1}
  operations:
    a_op: {main: train}
- config: b
  params: {foo: 2}
  operations:
    b_op: {main: train}
- model: m
  extends: [a, b]
  operations:
    op:
      main: train
      description: foo is {{foo}}
- model: n
  extends: [b, a]
  operations:
    op:
      main: train
      description: foo is {{foo}}
""")
    ops = load_guildfile(gf)
    assert ops["m:op"]["description"] == "foo is 1"
    assert ops["n:op"]["description"] == "foo is 2"
    assert sorted(ops) == ["m:a_op", "m:b_op", "m:op", "n:a_op", "n:b_op", "n:op"]


def test_a_chain_of_models_overrides_flags_attribute_by_attribute(cli, proj):
    proj.write("guild.yml", """
- model: a
  operations:
    train:
      main: train
      flags:
        a: {description: a in a, default: 1}
        b: {description: b in a, default: 2}
        c: {description: c in a, default: 3}
- model: b
  extends: a
  operations:
    train:
      flags:
        b: {description: b in b, default: 22}
    eval: train --test
- model: c
  extends: b
  operations:
    train:
      flags:
        c: 33
""")
    assert operations(cli) == ["a:train", "b:eval", "b:train", "c:eval", "c:train"]
    assert flags(cli, "c:train") == [
        "a a in a (default is 1)", "b b in b (default is 22)", "c c in a (default is 33)",
    ]


def test_a_model_made_only_of_parents(cli, proj):
    proj.write("guild.yml", """
- config: trainable
  operations:
    train: {main: train}
- config: evaluatable
  operations:
    evaluate: train --test
- model: m
  description: Both
  extends: [trainable, evaluatable]
""")
    assert operations(cli) == ["m:evaluate", "m:train"]


def test_operation_includes_and_defaults(cli, proj):
    proj.write("guild.yml", """
- config: shared-ops
  operations:
    foo:
      main: train
      flags: {a: 1, b: 2.2}
    bar: train
- model: m
  operation-defaults:
    flags:
      c: 3
  operations:
    $include: shared-ops
    baz:
      main: train
      flags:
        b: yes
""")
    assert operations(cli) == ["m:bar", "m:baz", "m:foo"]
    assert flags(cli, "m:bar") == ["c (default is 3)"]
    assert flags(cli, "m:baz") == ["b (default is yes)"]
    assert flags(cli, "m:foo") == ["a (default is 1)", "b (default is 2.2)"]


def test_flag_includes_from_a_model_operation(proj):
    gf = proj.write("guild.yml", """
- model: m2
  operations:
    op:
      main: train
      flags: {m-1: 1111, m-2: 2222, m-3: 3333}
- config: c-flags
  flags: {c-1: 111, c-2: 222}
- model: m3
  operations:
    op:
      main: train
      flags:
        $include: [c-flags, 'm2:op#m-1,m-3']
        c-2: 0
""")
    assert load_guildfile(gf)["m3:op"]["flags"] == {"c-1": 111, "c-2": 0, "m-1": 1111, "m-3": 3333}


def test_top_level_include(cli, proj):
    proj.write("common.yml", """
- config: common
  operations:
    train: {main: train}
- include: more.yml
""")
    proj.write("more.yml", """
- model: extra
  operations:
    prepare: train
""")
    proj.write("guild.yml", """
- include: common.yml
- model: m
  extends: common
""")
    assert operations(cli) == ["extra:prepare", "m:train"]


def test_private_operations_are_not_listed(cli, proj):
    proj.write("guild.yml", "train:\n  main: train\n_helper:\n  main: train\n")
    assert operations(cli) == ["train"]
    assert cli("run", "_helper", "--help-op").exit_code == 0


def test_named_resources_in_requires(cli, guild_home, proj):
    proj.write("prepare.py", "open('data.txt', 'w').write('d')\n")
    proj.write("use.py", "import os; print('data:', open('data/data.txt').read())\n")
    proj.write("guild.yml", """
- model: m
  resources:
    prepared:
      target-path: data
      sources:
        - operation: prepare
          select: data\\.txt
  operations:
    prepare: prepare
    use:
      main: use
      requires: prepared
""")
    assert cli("run", "m:prepare", "-y").exit_code == 0
    result = cli("run", "m:use", "-y")
    assert result.exit_code == 0, result.stderr
    assert "data: d" in result.output
    assert "operation:prepare" in cli("run", "m:use", "--help-op").output


def test_inherited_resources(proj):
    gf = proj.write("guild.yml", """
- config: base
  resources:
    model:
      - operation: train
  operations:
    evaluate:
      main: train --test
      requires: model
- model: m
  extends: base
  operations:
    train: train
""")
    req = load_guildfile(gf)["m:evaluate"]["requires"]
    assert json.loads(json.dumps(req)) == [{"name": "model", "sources": [{"operation": "train"}]}]


# -- bad files: one line naming file, line and key; exit 1; no run ---------

BAD = [
    ("- model: m\n  extends: nope\n", 2, "undefined model or config 'nope'"),
    ("- model: a\n  extends: a\n", 2, "cycle in 'extends' (a -> a)"),
    ("- model: a\n  extends: b\n- model: b\n  extends: a\n", 2, "cycle in 'extends' (b -> a -> b)"),
    ("- include: missing.yml\n", 1, "cannot find include 'missing.yml'"),
    ("- include: guild.yml\n", 1, "cycle in 'include'"),
    ("- model: m\n  operations:\n    op:\n      main: train\n      flags:\n        $include: nope\n", 6,
     "invalid include reference 'nope': cannot find target"),
    ("- model: m\n  operations:\n    op:\n      main: train\n      requires: nope\n", 5,
     "requires: undefined resource 'nope'"),
    ("- model: m\n  extends: 5\n", 2, "extends must be a name or a list of names"),
    ("- model: m\n  operations: {}\n- model: m\n  operations: {}\n", 3, "duplicate model 'm'"),
    ("- description: what\n", 1, "missing type (one of: model, config, include, package)"),
    ("- model: m\n  config: c\n", 2, "more than one type (model, config)"),
    ("- model: m\n  operation-defaults: 5\n  operations:\n    op: train\n", 2,
     "operation-defaults must be a mapping"),
]


@pytest.mark.parametrize("text, line, message", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_models(cli, guild_home, proj, text, line, message):
    gf = proj.path / "guild.yml"
    gf.write_text(text)
    for args in (("operations",), ("run", "m:op", "-y")):
        one_error(cli(*args), f"{gf}:{line}: ", message)
    assert no_runs(guild_home)


def test_an_error_in_an_included_file_names_that_file(cli, guild_home, proj):
    inc = proj.write("inc.yml", "- model: m\n  operations:\n    op:\n      main: train\n      flags: [1]\n")
    proj.write("guild.yml", "- include: inc.yml\n")
    one_error(cli("run", "m:op", "-y"), f"{inc.resolve()}:5: ", "flags must be a mapping")


def test_bad_model_as_a_user_runs_it(sh, guild_home, proj):
    gf = proj.write("guild.yml", "- model: m\n  extends: nope\n")
    one_error(sh("run", "m:op", "-y"), f"{gf}:2: ", "undefined model or config 'nope'")
    assert no_runs(guild_home)


def test_step_flags_include_an_operations_flags(proj):
    gf = proj.write("guild.yml", """
op:
  main: train
  flags:
    foo: 123
    bar: 456
    baz: {default: 789, description: Baz}
steps:
  steps:
    - run: op
      flags:
        $include: ':op#bar,baz'
        bar: 1
""")
    assert load_guildfile(gf)["steps"]["steps"][0]["flags"] == {"bar": 1, "baz": 789}


def test_operation_defaults_are_inherited_and_yield_to_the_operation(proj):
    gf = proj.write("guild.yml", """
- config: base
  operation-defaults:
    flags-dest: args
    sourcecode: no
    flags:
      f1: 1
- model: m
  extends: base
  operations:
    op1: train
    op2:
      main: train
      sourcecode: ['*.py']
      flags: {}
""")
    ops = load_guildfile(gf)
    assert ops["m:op1"]["flags"] == {"f1": 1} and ops["m:op1"]["sourcecode"] is False
    assert ops["m:op1"]["flags-dest"] == "args"
    assert ops["m:op2"]["flags"] == {} and ops["m:op2"]["sourcecode"] == ["*.py"]


def test_deep_and_wide_inheritance_is_bounded(cli, guild_home, proj):
    # 30 levels, each extending both configs of the level below: without
    # memoizing parents this is 2**30 expansions.
    items = ["- config: c0a\n  operations:\n    op: {main: train}\n- config: c0b\n  params: {x: 1}\n"]
    for i in range(1, 30):
        items.append(f"- config: c{i}a\n  extends: [c{i-1}a, c{i-1}b]\n- config: c{i}b\n  extends: [c{i-1}b, c{i-1}a]\n")
    items.append("- model: m\n  extends: [c29a, c29b]\n")
    proj.write("guild.yml", "".join(items))
    assert operations(cli) == ["m:op"]
    chain = ["- config: c0\n  operations:\n    op: {main: train}\n"]
    chain += [f"- config: c{i}\n  extends: c{i-1}\n" for i in range(1, 150)]
    chain.append("- model: m\n  extends: c149\n")
    gf = proj.write("guild.yml", "".join(chain))
    one_error(cli("operations"), f"{gf}:", "extends nests too deeply (more than 100 levels)")


# -- the same files under Guild AI 0.9 (skipped unless GUILD_AI_EXE names
# its guild) ---------------------------------------------------------------

GUILD_AI = os.environ.get("GUILD_AI_EXE")

DIFFERENTIAL = {
    "extends-params-includes": BASE + """
- model: cnn
  extends: base
  params: {kind: CNN}
  operations:
    train:
      flags:
        lr: 0.01
        $include: shared-flags#seed
    evaluate: train --test
- model: rnn
  extends: [cnn, base]
  params: {lr: 0.5}
  operation-defaults:
    flags: {batch: 8}
  operations:
    train:
      flags:
        $include: shared-flags
    predict: train
    _hidden: train
""",
    "chain": """
- model: a
  operations:
    train:
      main: train
      flags:
        a: {description: a in a, default: 1}
        b: {description: b in a, default: 2}
- model: b
  extends: a
  operations:
    train:
      flags:
        b: 22
    eval: train --test
- config: shared-ops
  operations:
    prepare: {main: train, flags: {c: 3}}
- model: c
  extends: b
  operations:
    $include: shared-ops
    train:
      flags:
        $include: 'b:eval'
        c: {default: 33, description: c in c}
""",
}


def _flag_lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [" ".join(line.split()) for line in lines[lines.index("Flags:") + 1:]] if "Flags:" in lines else []


@pytest.mark.skipif(not GUILD_AI, reason="GUILD_AI_EXE does not name Guild AI 0.9's guild")
@pytest.mark.parametrize("name", sorted(DIFFERENTIAL))
def test_same_operations_and_flags_as_guild_ai(cli, proj, tmp_path, name):
    import subprocess

    proj.write("guild.yml", DIFFERENTIAL[name])
    home = tmp_path / "guild-ai-home"
    home.mkdir()
    env = dict(os.environ, GUILD_HOME=str(home))
    env.pop("PYTHONPATH", None)

    def guild_ai(*args):
        proc = subprocess.run([GUILD_AI, *args], cwd=proj.path, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    theirs = [line.split()[0] for line in guild_ai("operations").splitlines() if line.strip()]
    assert operations(cli) == theirs
    for op in theirs:
        assert flags(cli, op) == _flag_lines(guild_ai("run", op, "--help-op")), op


def test_extends_a_model_of_a_package(cli, proj, monkeypatch):
    # Guild AI's extend-pkg sample: the package's own extends are names
    # of the package's guild.yml.
    proj.write("lib/shared/guild.yml", """
- config: test-support
  operations:
    test:
      exec: test
- model: model
  extends: test-support
  operations:
    train:
      exec: train
      flags:
        $include: flags
- config: flags
  flags: {lr: 0.1}
""")
    proj.write("guild.yml", """
- model: a
  extends: shared/test-support
- model: b
  extends: shared/model
""")
    monkeypatch.syspath_prepend(str(proj.path / "lib"))
    assert operations(cli) == ["a:test", "b:test", "b:train"]
    assert flags(cli, "b:train") == ["lr (default is 0.1)"]
    proj.write("guild.yml", "- model: a\n  extends: nowhere/x\n")
    one_error(cli("operations"), f"{proj.path / 'guild.yml'}:2: ", "cannot find guild file for package 'nowhere'")


def test_test_sourcecode_and_private_operations(cli, project):
    project.write("guild.yml", "train:\n  main: train\n_helper:\n  main: train\n")
    project.write("train.py", "print(1)\n")
    project.write("data.bin", "\0\1\2")
    out = cli("run", "train", "--test-sourcecode")
    assert out.exit_code == 0 and "Rules:" in out.output and "train.py" in out.output
    assert cli("operations").output.split() == ["train"]
    assert "_helper" in cli("operations", "-a").output


def test_type_auto_flags(cli, project):
    project.write("guild.yml", "train:\n  main: train\n  flags:\n    x:\n      type: auto\n      default: 1\n")
    project.write("train.py", "x = 1\nprint('x=%r' % (x,))\n")
    result = cli("run", "train", "x=abc", "-y")
    assert result.exit_code == 0, result.stderr
    assert "x='abc'" in result.output
