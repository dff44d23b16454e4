"""The fast attribute encoder writes exactly what PyYAML writes."""

from __future__ import annotations

import random

import pytest
import yaml

from guild_core import yamlutil

WORDS = [
    "a", "train.py", "/home/user/project", "${python_exe}", "-um", "y", "n", "yes",
    "no", "null", "", "0.1", "1", "x=0.1 y=2", "with space", "a: b", "#x", "train.py+",
    "é", "true", "On", "~", "UPPER_CASE", "a/b-c_d.e", "1e-05", "${flag_args}",
    "key:", "trailing ", "x{y}", "-", "--x", "FLAG_X",
    "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]", "Linux vm 6.1 #1 SMP x86_64 ",
    "it's", "a, b", "[x]", "{a}", "? q", "- item", ":x", "a #b", "a#b", "x: y", "2026-01-02",
    "0x1F", "1:30", ".inf", "-.5", "+1", "1_000", "0o7", "=", "<<", "@at", "%p", "`b`", "!t",
    "&a", "*a", "|", ">", "a|b", "q\"x", " lead", "~", "x" * 90, "tab\there", "new\nline",
    "ünï", "a  b", "a' b", "-1x", ".hidden", "1.2.3", "1e5", "0.1.2", "- ", "a:b", "a,b",
]
SCALARS = WORDS + [0, 1, -3, 2**40, 0.1, 1e-05, 1.5e20, -0.25, float("inf"), True, False, None, 3.0]


def rand_value(rng, depth=0):
    kind = rng.random()
    if depth < 2 and kind < 0.3:
        return {rng.choice(WORDS[:20]) or "k": rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 2 and kind < 0.5:
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return rng.choice(SCALARS)


def pyyaml(val):
    return yamlutil._pyyaml_encode(val, False)


@pytest.mark.parametrize("val", SCALARS)
def test_scalars_match_pyyaml(val):
    assert yamlutil.encode(val) == pyyaml(val)
    assert yaml.safe_load(yamlutil.encode(val)) == val


def test_random_structures_match_pyyaml():
    rng = random.Random(1)
    for _ in range(3000):
        val = rand_value(rng)
        assert yamlutil.encode(val) == pyyaml(val), val


def test_strict_y_and_n_are_quoted():
    assert yamlutil.encode({"y": 2, "x": "n"}) == "x: 'n'\n'y': 2"


def _loaded(text):
    """What PyYAML reads from `text`, or an exception's type."""
    try:
        return ("ok", yaml.load(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return ("error", None)


def _texts():
    rng = random.Random(2)
    for val in SCALARS:
        yield yamlutil.encode(val) + "\n"
        yield pyyaml(val) + "\n...\n"  # Guild AI's scalar documents
    for _ in range(3000):
        yield yamlutil.encode(rand_value(rng)) + "\n"
    # Hand-written files the fast reader must hand to PyYAML, or read as
    # PyYAML does.
    for word in WORDS:
        yield word + "\n"
        yield f"k: {word}\n"
        yield f"- {word}\n"
        yield f"'{word}'\n"
    yield from [
        "b: 1\na: 2\n", "a: 1\na: 2\n", "a: 1\n  b: 2\n", "1: x\n", "a: b: c\n", "a:  x\n",
        "- a\n-  b\n", "x\n...\n", "x\n\n", "", "\n", "{a: 1}\n", "[1, 2]\n", "'it''s'\n",
        "a: 'x'\n", "k: ''\n", "k: {}\n", "k: []\n", "0.10\n", "1.0e5\n", "-0\n", "007\n",
    ]


def test_fast_decode_reads_as_pyyaml_or_declines():
    fast = 0
    for text in _texts():
        val = yamlutil.fast_decode(text)
        if val is yamlutil.NOT_FAST:
            continue
        fast += 1
        kind, expected = _loaded(text)
        assert kind == "ok" and val == expected and type(val) is type(expected), repr(text)
        if isinstance(val, dict):
            assert list(val) == list(expected), repr(text)
    # Most of what guild and Guild AI write takes the fast path.
    assert fast > 2000
