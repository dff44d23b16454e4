"""The filter language of ``-F/--filter`` and of ``select:`` expressions.

    operation = train and (acc > 0.9 or loss < 0.3)
    batch-size not in [400, 800]
    label contains best and status in [completed, terminated]

Grammar, loosest first (``and`` binds tighter than ``or``)::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | test
    test     := NAME CMP term              CMP: = != <> < <= > >= or a plugin's
              | NAME ["not"] "in" list
              | NAME ["not"] "contains" term
              | NAME "is" ["not"] (undefined | term)
              | NAME                       status word, true/false, or truthy
    term     := number | 'string' | "string" | bare-word | true | false
              | undefined | list
    list     := "[" [term ("," term)*] "]"

A NAME is read, in order, from a plugin's value names (see the
``guild_register_filter_extensions`` hook), then the run's attributes,
flags and scalars (last value); ``attr:``, ``flag:`` and ``scalar:``
prefixes choose one. A name the run does not have is undefined (None),
which no comparison matches except ``is undefined`` and ``!=``.

A bare status word (``completed``, ``error``, ``running``,
``terminated``, ``pending``, ``staged``) tests the run's status, so
``label contains red and completed`` reads as it sounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import GuildError
from .runvalues import RunValues

STATUS_WORDS = ("completed", "error", "running", "terminated", "pending", "staged")

KEYWORDS = ("and", "or", "not", "in", "is", "undefined", "contains", "true", "false")

_BUILTIN_OPS = ("<>", "!=", "<=", ">=", "=", "<", ">")

_NUMBER_P = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

# How deeply "(", "not" and "[" may nest, together. The parser and the
# predicates it builds recurse once or a few times a level, so this keeps
# both far from Python's recursion limit; no hand-written filter comes
# near it.
MAX_DEPTH = 100


class FilterSyntaxError(GuildError):
    """A filter expression that does not parse; `pos` is 0-based."""

    def __init__(self, msg: str, pos: int):
        super().__init__(f"syntax error in filter at position {pos}: {msg}")
        self.pos = pos


@dataclass(frozen=True)
class Token:
    kind: str  # "(" ")" "[" "]" "," "op" "str" "num" "word" "kw" "end"
    text: str
    value: Any
    pos: int


class Extensions:
    """Value names and operators added by plugins.

    `values` maps a name, possibly with ``*`` wildcards, to
    ``fn(run, *parts)`` (the text matched by each ``*``); `operators`
    maps a symbol or word to ``fn(value, target) -> bool``; `checks`
    maps an operator to ``check(target)``, called when parsing.
    """

    def __init__(
        self,
        values: dict[str, Callable[..., Any]] | None = None,
        operators: dict[str, Callable[[Any, Any], bool]] | None = None,
        checks: dict[str, Callable[[Any], None]] | None = None,
    ):
        self.values = dict(values or {})
        self.operators = dict(operators or {})
        self.checks = dict(checks or {})
        self._patterns = [
            (_wildcard(name), fn)
            for name, fn in self.values.items()
            if "*" in name
        ]

    def value_getter(self, name: str) -> Callable[[Any], Any] | None:
        fn = self.values.get(name)
        if fn is not None:
            return lambda run: fn(run)
        for pattern, fn in self._patterns:
            m = pattern.match(name)
            if m:
                parts = m.groups()
                return lambda run, fn=fn, parts=parts: fn(run, *parts)
        return None


def _wildcard(name: str) -> re.Pattern:
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in name.split("*")) + "$")


NO_EXTENSIONS = Extensions()


# ---------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------


def tokenize(text: str, ext: Extensions = NO_EXTENSIONS) -> list[Token]:
    symbols = [s for s in ext.operators if not s.isalpha()]
    ops = sorted(set(_BUILTIN_OPS) | set(symbols), key=len, reverse=True)
    word_ops = {s.lower() for s in ext.operators if s.isalpha()}
    stop = set(" \t\r\n,()[]<>=!") | {s[0] for s in symbols}
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "()[],":
            tokens.append(Token(c, c, c, i))
            i += 1
            continue
        op = next((s for s in ops if text.startswith(s, i)), None)
        if op is not None:
            tokens.append(Token("op", op, op, i))
            i += len(op)
            continue
        if c in "'\"":
            value, end = _read_string(text, i)
            tokens.append(Token("str", text[i:end], value, i))
            i = end
            continue
        start = i
        while i < n and text[i] not in stop:
            i += 1
        if i == start:
            raise FilterSyntaxError(f"unexpected character {c!r}", start)
        word = text[start:i]
        lower = word.lower()
        if _NUMBER_P.match(word):
            tokens.append(Token("num", word, _number(word), start))
        elif lower in word_ops:
            tokens.append(Token("op", word, lower, start))
        elif lower in KEYWORDS:
            tokens.append(Token("kw", word, lower, start))
        else:
            tokens.append(Token("word", word, word, start))
    tokens.append(Token("end", "", None, n))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    """Quoted as in YAML (Guild AI decodes them so): in single quotes a
    backslash is literal and ``''`` is a quote, so regular expressions
    need no doubling; in double quotes ``\\"`` and ``\\\\`` are escapes
    and any other backslash is kept."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if quote == "'" and c == "'" and text.startswith("''", i):
            out.append("'")
            i += 2
            continue
        if quote == '"' and c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
            continue
        if c == quote:
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise FilterSyntaxError("unterminated string", start)


def _number(word: str) -> int | float:
    try:
        return int(word)
    except ValueError:
        return float(word)


# ---------------------------------------------------------------------
# Parser: expressions compile to predicates over a RunValues
# ---------------------------------------------------------------------

Predicate = Callable[[RunValues], bool]


def parse(text: str, ext: Extensions = NO_EXTENSIONS) -> Predicate:
    """Compile `text` to ``predicate(RunValues) -> bool``.

    The predicate's `hint` attribute (see `hint_of`) says what of it a
    run index may answer without the run: the run index skips runs it
    proves cannot match (`guild_core.index.pushdown`)."""
    return _Parser(tokenize(text, ext), ext).parse()


# Hints: what a predicate needs a run to have to be true, as a tree a
# run index can test without reading the run:
#   ("value", NAME, OP, NUMBER)   NAME read as an attribute, flag or
#                                 scalar (in that order) compares OP
#   ("scalar", TAG, OP, NUMBER)   the last value of scalar TAG does
#   ("and", [HINT...]), ("or", [HINT...])
# None: anything (no hint). A hint is necessary, not sufficient: the
# predicate still decides every run the hint lets through.
_PUSHED_OPS = ("<", "<=", ">", ">=", "=")


def hint_of(pred: Predicate):
    return getattr(pred, "hint", None)


def _hinted(pred: Predicate, hint) -> Predicate:
    if hint is not None:
        pred.hint = hint
    return pred


class _Parser:
    def __init__(self, tokens: list[Token], ext: Extensions):
        self.tokens = tokens
        self.i = 0
        self.ext = ext
        self.depth = 0

    def _enter(self) -> None:
        """One more level of nesting; refused past `MAX_DEPTH`, before the
        recursion gets anywhere near Python's limit."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise GuildError(f"filter nests too deeply (more than {MAX_DEPTH} levels)")

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_kw(self, *words: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value in words

    def _fail(self, tok: Token | None = None):
        tok = tok or self.tok
        if tok.kind == "end":
            raise FilterSyntaxError("unexpected end of expression", tok.pos)
        raise FilterSyntaxError(f"unexpected token {tok.text!r}", tok.pos)

    def parse(self) -> Predicate:
        if self.tok.kind == "end":
            raise FilterSyntaxError("empty expression", 0)
        pred = self._or()
        if self.tok.kind != "end":
            self._fail()
        return pred

    def _or(self) -> Predicate:
        preds = [self._and()]
        while self._is_kw("or"):
            self._next()
            preds.append(self._and())
        if len(preds) == 1:
            return preds[0]
        hints = [hint_of(p) for p in preds]
        return _hinted(
            lambda rv: any(p(rv) for p in preds),
            None if None in hints else ("or", hints),
        )

    def _and(self) -> Predicate:
        preds = [self._not()]
        while self._is_kw("and"):
            self._next()
            preds.append(self._not())
        if len(preds) == 1:
            return preds[0]
        hints = [h for h in map(hint_of, preds) if h is not None]
        return _hinted(lambda rv: all(p(rv) for p in preds), ("and", hints) if hints else None)

    def _not(self) -> Predicate:
        if self._is_kw("not"):
            self._next()
            self._enter()
            inner = self._not()
            self.depth -= 1
            return lambda rv: not inner(rv)
        if self.tok.kind == "(":
            self._next()
            self._enter()
            inner = self._or()
            if self.tok.kind != ")":
                self._fail()
            self._next()
            self.depth -= 1
            return inner
        return self._test()

    def _test(self) -> Predicate:
        tok = self.tok
        if tok.kind == "kw" and tok.value in ("true", "false"):
            self._next()
            const = tok.value == "true"
            return lambda rv: const
        if tok.kind not in ("word", "num", "str"):
            self._fail()
        self._next()
        name = str(tok.value)
        get = _getter(name, self.ext)
        nxt = self.tok
        if nxt.kind == "op":
            self._next()
            target = self._term()
            return _hinted(
                _compare(get, nxt.value, target, self.ext),
                _compare_hint(name, nxt.value, target, self.ext),
            )
        if nxt.kind == "kw" and nxt.value in ("in", "contains", "is", "not"):
            return self._keyword_test(get)
        if tok.kind != "word":
            self._fail(nxt)
        return _bare(name, get)

    def _keyword_test(self, get) -> Predicate:
        negate = False
        if self._is_kw("not"):
            self._next()
            negate = True
            if not self._is_kw("in", "contains"):
                self._fail()
        kw = self._next().value
        if kw == "is":
            if self._is_kw("not"):
                self._next()
                negate = True
            target = self._term()
            test = lambda rv: _equal(get(rv), target)  # noqa: E731
        elif kw == "in":
            target = self._term()
            items = target if isinstance(target, list) else [target]
            test = lambda rv: any(_equal(get(rv), item) for item in items)  # noqa: E731
        else:
            target = self._term()
            test = lambda rv: _contains(get(rv), target)  # noqa: E731
        if negate:
            return lambda rv: not test(rv)
        return test

    def _term(self) -> Any:
        tok = self._next()
        if tok.kind in ("num", "str", "word"):
            return tok.value
        if tok.kind == "kw" and tok.value in ("true", "false"):
            return tok.value == "true"
        if tok.kind == "kw" and tok.value == "undefined":
            return None
        if tok.kind == "[":
            self._enter()
            items: list[Any] = []
            if self.tok.kind == "]":
                self._next()
                self.depth -= 1
                return items
            while True:
                items.append(self._term())
                sep = self._next()
                if sep.kind == "]":
                    self.depth -= 1
                    return items
                if sep.kind != ",":
                    self._fail(sep)
        self._fail(tok)


def _compare_hint(name: str, op: str, target: Any, ext: Extensions):
    """The hint of ``NAME OP TARGET``: for a plain comparison with a
    number of a name the run's own files hold (not a plugin's value, a
    computed attribute or a prefixed scalar)."""
    from .runvalues import _COMPUTED

    if op not in _PUSHED_OPS or isinstance(target, bool) or not isinstance(target, (int, float)):
        return None
    if abs(target) > 2**53 or target != target:
        return None
    if ext.value_getter(name) is not None:
        return None
    if name.startswith("scalar:"):
        tag = name[7:]
        return None if "#" in tag else ("scalar", tag, op, target)
    if ":" in name or "#" in name or "/" in name or name.startswith("."):
        return None
    if name in _COMPUTED or name in ("flags", "attrs"):
        return None
    return ("value", name, op, target)


def _compare(get, op: str, target: Any, ext: Extensions) -> Predicate:
    if op == "=":
        return lambda rv: _equal(get(rv), target)
    if op in ("!=", "<>"):
        return lambda rv: not _equal(get(rv), target)
    if op in _ORDER:
        cmp = _ORDER[op]

        def ordered(rv):
            val = get(rv)
            if val is None or target is None:
                return False
            try:
                return bool(cmp(val, target))
            except TypeError:
                return False

        return ordered
    sym = op if op in ext.operators else next(s for s in ext.operators if s.lower() == op)
    fn = ext.operators[sym]
    check = ext.checks.get(sym)
    if check is not None:
        check(target)

    def extended(rv):
        try:
            return bool(fn(get(rv), target))
        except (TypeError, ValueError):
            return False

    return extended


_ORDER = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


# Words a boolean value equals, as guild.yml and flag values read them
# (`pruned = yes`, `marked = no`).
_BOOL_WORDS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}


def _equal(val: Any, target: Any) -> bool:
    if isinstance(val, bool) and isinstance(target, str) and target.lower() in _BOOL_WORDS:
        return val is _BOOL_WORDS[target.lower()]
    if isinstance(val, bool) or isinstance(target, bool):
        return val is target or (type(val) is type(target) and val == target)
    if isinstance(val, str) and isinstance(target, str):
        return val == target
    try:
        return bool(val == target)
    except (TypeError, ValueError):
        return False


def _contains(val: Any, target: Any) -> bool:
    if val is None or (isinstance(val, str) and not val):
        return False
    if isinstance(val, (list, tuple)):
        return any(_equal(item, target) for item in val)
    return str(target).lower() in str(val).lower()


def _bare(name: str, get) -> Predicate:
    if name.lower() in STATUS_WORDS:
        word = name.lower()
        return lambda rv: rv.attr("status") == word
    return lambda rv: bool(get(rv))


# ---------------------------------------------------------------------
# Values of a run
# ---------------------------------------------------------------------


def _getter(name: str, ext: Extensions) -> Callable[[RunValues], Any]:
    ext_get = ext.value_getter(name)
    if ext_get is not None:
        return lambda rv: ext_get(rv.run)
    if name.startswith("attr:"):
        attr = name[5:]
        return lambda rv: rv.attr(attr)
    if name.startswith("flag:"):
        flag = name[5:]
        return lambda rv: rv.flag(flag)
    if name.startswith("scalar:"):
        key = name[7:]
        return lambda rv: rv.scalar(key)

    def any_kind(rv):
        val = rv.attr(name)
        if val is None:
            val = rv.flag(name)
        if val is None:
            val = rv.scalar(name)
        return val

    return any_kind
