"""The filter language, table-driven: the seed's examples, precedence,
values, names and errors."""

from __future__ import annotations

import pytest

from guild_core import filterexpr
from guild_core.filterexpr import Extensions, FilterSyntaxError


class FakeRun:
    """What the parser reads through RunValues, without a run directory."""

    def __init__(self, attrs=None, flags=None, scalars=None):
        self.attrs = attrs or {}
        self.flags = flags or {}
        self.scalars = scalars or {}


class FakeValues(filterexpr.RunValues):
    def __init__(self, run: FakeRun):
        self.run = run

    def attr(self, name):
        return self.run.attrs.get(name)

    def flag(self, name):
        return self.run.flags.get(name)

    def scalar(self, key):
        return self.run.scalars.get(key)


TRAIN_GOOD = FakeRun(
    {"operation": "train", "status": "completed", "label": "Best model", "tags": ["a", "b"]},
    {"batch-size": 100, "lr": 0.01, "label": "flag-label", "opt": "adam", "debug": False},
    {"acc": 0.95, "loss": 0.2},
)
TRAIN_BAD = FakeRun(
    {"operation": "train", "status": "error", "label": "first try"},
    {"batch-size": 200, "lr": 0.1},
    {"acc": 0.5, "loss": 0.9},
)
TEST_RUN = FakeRun(
    {"operation": "test", "status": "terminated", "label": ""},
    {"batch-size": 400},
    {"acc": 0.97},
)
DEPLOY = FakeRun({"operation": "deploy", "status": "completed", "label": "best deploy"})
RUNS = {"good": TRAIN_GOOD, "bad": TRAIN_BAD, "test": TEST_RUN, "deploy": DEPLOY}


def matching(expr: str, ext: Extensions = filterexpr.NO_EXTENSIONS) -> list[str]:
    pred = filterexpr.parse(expr, ext)
    return [name for name, run in RUNS.items() if pred(FakeValues(run))]


@pytest.mark.parametrize(
    "expr, expected",
    [
        # The seed's examples, in order.
        ("batch-size = 10 and loss < 0.8", []),
        ("batch-size = 100 and loss < 0.8", ["good"]),
        ("operation = train and acc > 0.9", ["good"]),
        ("operation = train and (acc > 0.9 or loss < 0.3)", ["good"]),
        ("batch-size = 100 or batch-size = 200", ["good", "bad"]),
        ("batch-size in [100,200]", ["good", "bad"]),
        ("batch-size not in [400,800]", ["good", "bad", "deploy"]),
        ("batch-size is undefined", ["deploy"]),
        ("batch-size is not undefined", ["good", "bad", "test"]),
        ("label contains best and operation not in [test,deploy]", ["good"]),
        ("status in [error,terminated]", ["bad", "test"]),
        # Comparisons.
        ("acc >= 0.95", ["good", "test"]),
        ("acc <= 0.5", ["bad"]),
        ("acc != 0.5", ["good", "test", "deploy"]),
        ("acc <> 0.5", ["good", "test", "deploy"]),
        ("lr=0.1", ["bad"]),
        ("lr<0.1", ["good"]),
        ("lr = 1e-2", ["good"]),
        # Strings: bare, single- and double-quoted; contains is case-insensitive.
        ("label = 'first try'", ["bad"]),
        ('label = "first try"', ["bad"]),
        ("label contains BEST", ["good", "deploy"]),
        ("label not contains best", ["bad", "test"]),
        ("opt = adam", ["good"]),
        # Lists: contains on a list value is membership.
        ("tags contains a", ["good"]),
        ("status in [completed]", ["good", "deploy"]),
        ("operation in []", []),
        # Booleans.
        ("debug = false", ["good"]),
        # A boolean equals yes/no words as guild.yml reads them.
        ("debug = no", ["good"]),
        ("debug = yes", []),
        ("opt = no", []),
        # Prefixes disambiguate; unprefixed reads attr, then flag, then scalar.
        ("label = flag-label", []),
        ("flag:label = flag-label", ["good"]),
        ("attr:label = 'first try'", ["bad"]),
        ("scalar:acc > 0.9", ["good", "test"]),
        ("flag:acc is undefined", ["good", "bad", "test", "deploy"]),
        # Unknown names are undefined, never an error.
        ("nosuch = 1", []),
        ("nosuch is undefined", ["good", "bad", "test", "deploy"]),
        ("nosuch < 1", []),
        # Bare status words and truthiness.
        ("completed", ["good", "deploy"]),
        ("label contains best and completed", ["good", "deploy"]),
        ("not error", ["good", "test", "deploy"]),
        ("label", ["good", "bad", "deploy"]),
        # Keywords are case-insensitive.
        ("operation = train AND NOT acc > 0.9", ["bad"]),
    ],
)
def test_expressions(expr, expected):
    assert matching(expr) == expected


@pytest.mark.parametrize(
    "expr, expected",
    [
        # and binds tighter than or (Guild AI 0.9 reads this as false).
        ("false and true or true", True),
        ("true or true and false", True),
        ("(true or true) and false", False),
        ("true or false and false", True),
        ("false or false and true", False),
        ("not false and false", False),
        ("not (false and false)", True),
        ("not not true", True),
        ("false and false or true and true", True),
    ],
)
def test_precedence(expr, expected):
    assert filterexpr.parse(expr)(FakeValues(FakeRun())) is expected


@pytest.mark.parametrize(
    "expr, message",
    [
        ("acc = (0.9)", "syntax error in filter at position 6: unexpected token '('"),
        ("acc >", "syntax error in filter at position 5: unexpected end of expression"),
        ("acc > 1 and", "syntax error in filter at position 11: unexpected end of expression"),
        ("(acc > 1", "syntax error in filter at position 8: unexpected end of expression"),
        ("acc > 1)", "syntax error in filter at position 7: unexpected token ')'"),
        ("acc in [1, 2", "syntax error in filter at position 12: unexpected end of expression"),
        ("label = 'open", "syntax error in filter at position 8: unterminated string"),
        ("acc not > 1", "syntax error in filter at position 8: unexpected token '>'"),
        ("", "syntax error in filter at position 0: empty expression"),
        ("and", "syntax error in filter at position 0: unexpected token 'and'"),
        ("acc 1", "syntax error in filter at position 4: unexpected token '1'"),
    ],
)
def test_syntax_errors(expr, message):
    with pytest.raises(FilterSyntaxError) as e:
        filterexpr.parse(expr)
    assert str(e.value) == message


def test_extension_values_and_operators():
    import re

    ext = Extensions(
        values={
            "scalar:*.twice": lambda run, key: (run.scalars.get(key) or 0) * 2,
            "oplen": lambda run: len(run.attrs.get("operation", "")),
        },
        operators={"~": lambda val, pat: bool(re.search(pat, str(val or ""))), "like": lambda v, t: v == t},
    )
    assert matching("scalar:acc.twice > 1.8", ext) == ["good", "test"]
    assert matching("oplen = 4", ext) == ["test"]
    assert matching("label ~ '^[Bb]est'", ext) == ["good", "deploy"]
    assert matching("label~^first", ext) == ["bad"]
    assert matching("operation LIKE deploy", ext) == ["deploy"]
    # Without the extension, `~` is not an operator.
    with pytest.raises(FilterSyntaxError):
        filterexpr.parse("label ~ x")


# -- hints: what a run index may answer in SQL ----------------------------


@pytest.mark.parametrize(
    "expr, hint",
    [
        ("loss < 0.5", ("value", "loss", "<", 0.5)),
        ("scalar:loss >= 2", ("scalar", "loss", ">=", 2)),
        ("loss < 0.5 and acc > 0.9", ("and", [("value", "loss", "<", 0.5), ("value", "acc", ">", 0.9)])),
        # One side says nothing: "and" keeps the other, "or" says nothing.
        ("loss < 0.5 and label contains x", ("and", [("value", "loss", "<", 0.5)])),
        ("loss < 0.5 or label contains x", None),
        ("(loss < 0.5 or acc = 1) and x > 2", ("and", [("or", [("value", "loss", "<", 0.5), ("value", "acc", "=", 1)]), ("value", "x", ">", 2)])),
        # Not pushed: negation, !=, strings, booleans, computed
        # attributes, prefixes, a plugin's names.
        ("not loss < 0.5", None),
        ("loss != 0.5", None),
        ("loss < 'a'", None),
        ("loss = true", None),
        ("status = 1", None),
        ("flag:lr < 1", None),
        ("attr:x < 1", None),
        (".guild#loss < 1", None),
        ("duration < 10", None),
    ],
)
def test_hints(expr, hint):
    ext = filterexpr.Extensions(values={"duration": lambda run: 1})
    assert filterexpr.hint_of(filterexpr.parse(expr, ext)) == hint
