"""``guild help``: a project's models, operations and flags.

The operations come from guild.yml as every command reads it
(`opdef.load_models`) and their flags as ``guild run`` resolves them,
imported flags included (`opdef.resolve`'s detector); dependencies that
take a run (``NAME=RUN``) are listed as flags, as Guild AI lists them.
The layout is Guild AI's: sections, then each model's operations, each
flag with its default and choices, on click's help formatter (console),
or as Markdown or reStructuredText.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from click.formatting import HelpFormatter, iter_rows, measure_table, term_len, wrap_text

from guild_core import flags as flagslib
from guild_core.errors import GuildError

from .common import flag_detector, plugin_manager, printable


# ---------------------------------------------------------------------
# What is shown
# ---------------------------------------------------------------------


class Flag:
    def __init__(self, name: str, description: str = "", default: Any = None, required: bool = False, null_label: str | None = None, choices: list[tuple[Any, str]] | None = None):
        self.name = name
        self.description = description
        self.default = default
        self.required = required
        self.null_label = null_label
        # (shown value, description) of each choice.
        self.choices = choices or []


class Operation:
    def __init__(self, name: str, description: str, flags: list[Flag]):
        self.name = name
        self.description = description
        self.flags = flags


class Model:
    def __init__(self, name: str, description: str, references: list[str], operations: list[Operation]):
        self.name = name
        self.description = description
        self.references = references
        self.operations = operations


def project_models(gf: Path) -> list[Model]:
    """The models of guild file `gf` as `guild help` shows them: models
    by name (private ones, ``_name``, last), their operations and flags
    by name."""
    from guild_core import opdef as opdeflib

    ops, infos = opdeflib.load_models(gf)
    detect = flag_detector(plugin_manager())
    models = []
    for info in infos:
        shown = [_operation(gf, ops, name, detect) for name in sorted(info.operations, key=lambda n: n.rpartition(":")[2])]
        models.append(Model(info.name, info.description, info.references, shown))
    models.sort(key=lambda m: "\xff" + m.name if m.name.startswith("_") else m.name)
    return models


def _operation(gf: Path, ops: dict, name: str, detect) -> Operation:
    from guild_core import opdef as opdeflib

    data = ops[name]
    try:
        flagdefs = opdeflib.operation(gf, ops, name, detect).flagdefs
    except GuildError:
        # A missing module or config file: `guild run` says so; help
        # still shows what guild.yml defines.
        flagdefs = {}
        for fname, fdata in (data.get("flags") or {}).items():
            flagdefs[str(fname)] = opdeflib.guildfile_flagdef(str(fname), fdata)
    raw_flags = data.get("flags") if isinstance(data.get("flags"), dict) else {}
    flags = [_flag(fd, raw_flags.get(n)) for n, fd in sorted(flagdefs.items())]
    flags += _dependency_flags(data.get("requires"), {f.name: f for f in flags})
    desc = str(data.get("description") or "").strip()
    return Operation(name.rpartition(":")[2], desc, flags)


def _flag(fd, raw: Any) -> Flag:
    choices = []
    raw_choices = raw.get("choices") if isinstance(raw, dict) else None
    if isinstance(raw_choices, list):
        for c in raw_choices:
            if isinstance(c, dict):
                shown = c.get("alias") if c.get("alias") is not None else c.get("value")
                choices.append((shown, str(c.get("description") or "").strip()))
            else:
                choices.append((c, ""))
    elif fd.choices:
        choices = [(c, "") for c in fd.choices]
    return Flag(fd.name, (fd.description or "").strip(), fd.default, fd.required, fd.null_label, choices)


def _dependency_flags(requires: Any, defined: dict[str, Flag]) -> list[Flag]:
    """Dependencies given on the command line as flags, after the
    operation's own: those that take runs (``NAME=RUN``, unless
    ``flag-name: no``) and files with a ``flag-name`` (``NAME=PATH``,
    the path its default, also for a flag of that name guild.yml
    defines without one)."""
    if not requires:
        return []
    from guild_core import deps as depslib
    from guild_core.registry import Registry

    try:
        deps = depslib.dependencies(requires, set(Registry(plugin_manager()).resolvers()))
    except GuildError:
        return []
    flags = []
    for dep in deps:
        flag_name = dep.spec.get("flag-name")
        if flag_name is False or flag_name == "no":
            continue
        if dep.resource:
            if not flag_name:
                continue
            flag = Flag(str(flag_name), default=dep.spec.get(dep.kind))
        else:
            flag = Flag(dep.flag or str(flag_name or dep.spec.get("name") or dep.uri))
        own = defined.get(flag.name)
        if own is None:
            defined[flag.name] = flag
            flags.append(flag)
        elif own.default is None:
            own.default = flag.default
    return flags


def format_flag(val: Any) -> str:
    """A flag value as help shows it: encoded as on the command line,
    quoted when it is a string that has spaces or would read back as
    something else (``'1'``)."""
    encoded = flagslib.encode_value(val)
    if isinstance(val, str) and encoded[:1] not in ("'", '"'):
        if " " in encoded or flagslib.decode_auto(encoded) != val or encoded == "":
            return repr(encoded)
    return encoded


# ---------------------------------------------------------------------
# Formatters
# ---------------------------------------------------------------------


class _Formatter(HelpFormatter):
    """Click's help formatter with definition lists whose terms keep
    their column and whose text keeps its paragraphs."""

    def write_dl(self, rows, col_max=30, col_spacing=2, preserve_paragraphs=False):
        rows = list(rows)
        widths = measure_table(rows)
        first_col = min(widths[0], col_max) + col_spacing
        for first, second in iter_rows(rows, len(widths)):
            self.write(f"{'':>{self.current_indent}}{first}")
            if not second:
                self.write("\n")
                continue
            if term_len(first) <= first_col - col_spacing:
                self.write(" " * (first_col - term_len(first)))
            else:
                self.write("\n" + " " * (first_col + self.current_indent))
            lines = wrap_text(second, max(self.width - first_col - 2, 10), preserve_paragraphs=preserve_paragraphs).splitlines()
            if not lines:
                self.write("\n")
                continue
            self.write(f"{lines[0]}\n")
            for line in lines[1:]:
                self.write(f"{'':>{first_col + self.current_indent}}{line}\n")
            if len(lines) > 1:
                self.write("\n")  # a long entry stands apart from the next

    def write_description(self, text: str) -> None:
        for i, par in enumerate(text.split("\n")):
            if i > 0:
                self.write_paragraph()
            self.write_text(printable(par))


class ConsoleFormatter(_Formatter):
    _in_section = False

    def start_section(self, title: str) -> None:
        if self._in_section:
            self.dedent()
            self.dedent()
            self.write_paragraph()
        self.write_text(click.style(title, bold=True))
        self.write_paragraph()
        self.indent()
        self.indent()
        self._in_section = True

    def write_heading(self, heading: str) -> None:
        self.write_text(click.style(heading, bold=True))

    def write_subheading(self, text: str) -> None:
        self.write_text(f"{text}:")


class MarkdownFormatter(_Formatter):
    def __init__(self, heading_level: int = 1):
        super().__init__()
        self._in_section = False
        self.level = heading_level

    def start_section(self, title: str) -> None:
        if self._in_section:
            self.dedent()
            self.write_paragraph()
        self.write_text(self._heading(title))
        self.write_paragraph()
        self.indent()
        self._in_section = True

    def _heading(self, text: str) -> str:
        if self.level <= 6:
            return f"{'#' * self.level} {text}"
        return f"<h{self.level}>{text}</h{self.level}>"

    def write_heading(self, heading: str) -> None:
        self.write_text(self._heading(heading))

    def write_subheading(self, text: str) -> None:
        self.write_heading(text)

    def write_description(self, text: str) -> None:
        for i, par in enumerate(printable(p) for p in text.split("\n")):
            if i == 0:
                self.write_text(f"*{par}*" if par else "")
            else:
                self.write_paragraph()
                self.write_text(par)

    def write_dl(self, rows, col_max=None, col_spacing=None, preserve_paragraphs=False):
        self.write_text("<dl>")
        for name, desc in rows:
            self.write_text(f"<dt>{name}</dt>")
            self.write_text(f"<dd>{desc}</dd>")
        self.write_text("</dl>")

    # Headings nest instead of indenting.
    def indent(self) -> None:
        self.level += 1

    def dedent(self) -> None:
        self.level -= 1


class RstFormatter(_Formatter):
    _in_section = False
    _heading_chars = "#=^-`"
    _level = 0

    def start_section(self, title: str) -> None:
        if self._in_section:
            self.dedent()
            self.write_paragraph()
        self.write_heading(title)
        self.write_paragraph()
        self.indent()
        self._in_section = True

    def write_heading(self, heading: str) -> None:
        self.write_text(heading)
        self.write_text(self._heading_chars[min(self._level, len(self._heading_chars) - 1)] * len(heading))

    def write_subheading(self, text: str) -> None:
        self.write_heading(text)

    def write_description(self, text: str) -> None:
        for i, par in enumerate(printable(p) for p in text.split("\n")):
            if i == 0:
                self.write_text(f"*{par}*" if par else "")
            else:
                self.write_paragraph()
                self.write_text(par)

    def write_dl(self, rows, col_max=None, col_spacing=None, preserve_paragraphs=False):
        for i, (name, desc) in enumerate(rows):
            if i > 0:
                self.write_paragraph()
            self.write_text(f"**{name}**" if name else "")
            super().indent()
            self.write_text(f"*{desc}*" if desc else "")
            super().dedent()

    def indent(self) -> None:
        self._level += 1

    def dedent(self) -> None:
        self._level -= 1


# ---------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------


CONSOLE_OVERVIEW = """
These are the operations defined in {where}.

Start one with 'guild run OPERATION'. An operation that belongs to a
named model is MODEL:OPERATION. 'guild operations' lists them all.

Give flag values as FLAG=VALUE arguments to 'guild run'; each
operation's flags are listed below.

'guild run --help' shows the options of the run command, and 'guild
--help' the other commands.
"""

MARKDOWN_OVERVIEW = """
The models and operations of this project are listed below. Each runs
with Guild AI or a compatible runner such as guild:

\b
    guild run [MODEL:]OPERATION [FLAG=VALUE...]

MODEL is one of the models below; an operation of no model (a base
operation) is run by its name alone. Each operation lists the flags it
takes.
"""


def write_help(models: list[Model], out: _Formatter, title_case=lambda s: s) -> None:
    anon = [m for m in models if not m.name]
    named = [m for m in models if m.name]
    if anon and anon[0].operations:
        out.start_section(title_case("Base Operations"))
        if anon[0].description:
            out.write_description(anon[0].description)
            out.write_paragraph()
        _write_operations(anon[0].operations, out)
    if named:
        out.start_section(title_case("Models"))
        for i, m in enumerate(named):
            if i > 0:
                out.write_paragraph()
            _write_model(m, out)


def _write_model(m: Model, out: _Formatter) -> None:
    out.write_heading(printable(m.name))
    out.indent()
    if m.description:
        out.write_paragraph()
        out.write_description(m.description)
    out.write_paragraph()
    out.write_subheading("Operations")
    out.write_paragraph()
    out.indent()
    if m.operations:
        _write_operations(m.operations, out)
    else:
        out.write_text("This model has no operations.")
    out.dedent()
    out.write_paragraph()
    if m.references:
        out.write_subheading("References")
        out.write_paragraph()
        out.indent()
        for ref in m.references:
            out.write_text(f"\b\n- {printable(ref)}")
        out.dedent()
    out.dedent()


def _write_operations(ops: list[Operation], out: _Formatter) -> None:
    first = True
    for op in ops:
        if op.name.startswith("_"):
            continue
        if not first:
            out.write_paragraph()
        first = False
        out.write_heading(printable(op.name))
        out.indent()
        if op.description:
            out.write_description(op.description)
        if op.flags:
            if op.description:
                out.write_paragraph()
            out.write_subheading("Flags")
            out.indent()
            out.write_dl(_flags_dl(op.flags), preserve_paragraphs=True)
            out.dedent()
        out.dedent()


def _flags_dl(flags: list[Flag]) -> list[tuple[str, str]]:
    width = max(len(f.name) for f in flags)
    return [(printable(f.name), _flag_desc(f, width)) for f in flags]


def _flag_desc(flag: Flag, name_width: int) -> str:
    lines = [printable(line) for line in flag.description.split("\n")]
    if flag.default is not None:
        note = f"(default is {format_flag(flag.default)})"
    elif flag.required:
        note = "(required)"
    elif flag.null_label:
        note = f"(default is {format_flag(flag.null_label)})"
    else:
        note = ""
    lines[0] = f"{lines[0]} {note}" if lines[0] and note else lines[0] or note
    if flag.choices:
        lines.append(_choices(flag.choices, name_width))
    return "\n\n".join(lines)


def _choices(choices: list[tuple[Any, str]], name_width: int) -> str:
    out = _Formatter()
    if any(desc for _, desc in choices):
        out.width -= name_width + 4
        out.write_heading("Choices")
        out.indent()
        rows = [(printable(flagslib.encode_value(val)), "\n\n".join(printable(line) for line in desc.split("\n"))) for val, desc in choices]
        out.write_dl(rows, preserve_paragraphs=True)
        out.dedent()
    else:
        out.width -= name_width + 4 + len("Choices:")
        listed = ", ".join(printable(flagslib.encode_value(val)) for val, _ in choices)
        out.write_dl([("Choices:", listed)])
    return "\n\b\n" + out.getvalue()


# ---------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------


def _guildfile(path: str | None) -> tuple[Path, str]:
    """The guild file for PATH (a project directory or a guild file) and
    how to name where it is."""
    from guild_core.opdef import find_guildfile

    target = Path(path).expanduser() if path else Path.cwd()
    if target.is_dir():
        gf = find_guildfile(target)
        if gf is None:
            where = "the current directory" if _is_cwd(target) else f"'{path}'"
            raise GuildError(
                f"{where} has no guild.yml",
                hint="Try 'guild help PATH' with a project directory or guild file.",
            )
        return gf, _where(target, path)
    if target.is_file():
        return target, _where(target.parent, path)
    raise GuildError(
        f"cannot find '{path}': not a project directory or guild file",
        hint="guild has no packages: give a project directory or a guild file.",
    )


def _is_cwd(path: Path) -> bool:
    return os.path.abspath(path) == os.getcwd()


def _where(project: Path, given: str | None) -> str:
    if _is_cwd(project):
        return "the current directory"
    rel = os.path.relpath(project)
    return f"'{rel if rel.startswith('.') else os.path.join('.', rel)}'"


@click.command("help")
@click.argument("path", metavar="[PATH]", required=False, type=click.Path())
@click.option("--package-description", is_flag=True, help="Write the help as reStructuredText, as a package description.")
@click.option("--markdown", is_flag=True, help="Write the help as Markdown.")
@click.option("--base-heading-level", type=click.IntRange(1, None), default=1, metavar="N", help="With --markdown, the level of the top heading (default 1).")
@click.option("--title", default="Guild AI Help", metavar="TEXT", help="With --markdown, the page title (default 'Guild AI Help').")
@click.option("-n", "--no-pager", is_flag=True, help="Print the help instead of showing it in a pager.")
def help_(path, package_description, markdown, base_heading_level, title, no_pager):
    """Show help for a project: its models, operations and flags.

    PATH is a project directory or a guild file (default: the current
    directory). Each operation is shown with its description and its
    flags: their descriptions, defaults and choices, including flags
    imported from the operation's script. --markdown and
    --package-description write the same help as Markdown or as
    reStructuredText, for a web page or a package's description.
    """
    if package_description and markdown:
        raise GuildError("--package-description and --markdown cannot both be used")
    gf, where = _guildfile(path)
    models = project_models(gf)
    if markdown:
        out = MarkdownFormatter(base_heading_level)
        if title:
            out.write_heading(title)
            out.indent()
            out.write_paragraph()
        out.start_section("Overview")
        out.write_text(MARKDOWN_OVERVIEW)
        write_help(models, out)
    elif package_description:
        out = RstFormatter()
        write_help(models, out)
    else:
        out = ConsoleFormatter()
        out.start_section("OVERVIEW")
        out.write_text(CONSOLE_OVERVIEW.format(where=printable(where)))
        write_help(models, out, title_case=str.upper)
    text = out.getvalue()
    if no_pager:
        click.echo(text)
    else:
        click.echo_via_pager(text)
