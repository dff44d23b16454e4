"""``guild runs label``, ``tag``, ``mark`` and ``comment``: what a user
writes about runs. Each changes one attribute file per run, atomically."""

from __future__ import annotations

import re

import click

from guild_core import flags as flagslib
from guild_core import util
from guild_core.errors import GuildError, RunGone
from guild_core.run import Run

from .common import printable
from .runselect import confirm_runs, filter_options, selected_runs


def _each(selected: list[Run], change) -> list[Run]:
    """Apply `change(run)` to each run; a run another command deleted or
    moved meanwhile is skipped with one line (its attribute is never
    written back as a ghost run). Returns the runs changed."""
    done = []
    for run in selected:
        try:
            change(run)
        except RunGone:
            click.echo(f"WARNING: run {run.short_id} is gone: another command deleted or moved it", err=True)
            continue
        done.append(run)
    return done


def _runs_or_latest(rf, runs) -> list[Run]:
    # With no RUN these commands apply to the latest filtered run, as in
    # Guild AI; `:` names them all.
    return selected_runs(rf, runs) if runs else selected_runs(rf, ())[:1]


def _exclusive(**opts) -> None:
    given = [name for name, val in opts.items() if val]
    if len(given) > 1:
        names = " and ".join(f"--{n.replace('_', '-')}" for n in given)
        raise click.UsageError(f"{names} cannot be used together")


# -- label -------------------------------------------------------------


def format_label(template: str, run: Run) -> str:
    """`template` with the run's flags, ``${default_label}`` and
    ``${label}`` (its current label) filled in."""
    return flagslib.format_label(template, run.get("flags") or {}, {"label": run.get("label") or ""})


def _remove_parts(parts, label: str) -> str:
    for part in parts:
        pieces = re.split(rf"(?:^|\s){re.escape(part)}(?:$|\s)", label)
        label = " ".join(p.strip() for p in pieces if p.strip())
    return label


@click.command("label")
@click.argument("runs", nargs=-1)
@click.option("-s", "--set", "set_", metavar="VAL", help="Set the label (may use ${flag} references).")
@click.option("-a", "--append", metavar="VAL", help="Append VAL to the label.")
@click.option("-p", "--prepend", metavar="VAL", help="Prepend VAL to the label.")
@click.option("-rm", "--remove", metavar="VAL", multiple=True, help="Remove VAL, a word, from the label (repeatable).")
@click.option("-c", "--clear", is_flag=True, help="Clear the label.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options(remote="meta")
def label(runs, set_, append, prepend, remove, clear, yes, rf):
    """Set, change or clear run labels (default: the latest run)."""
    _exclusive(set=set_, append=append, prepend=prepend, remove=remove, clear=clear)
    if not any((set_, append, prepend, remove, clear)):
        raise click.UsageError("specify one of --set, --append, --prepend, --remove or --clear")
    selected = _runs_or_latest(rf, runs)
    if not selected:
        click.echo("No runs to modify.", err=True)
        return
    if set_:
        preview = f"You are about to label the following runs with '{printable(set_)}':"
    elif prepend:
        preview = f"You are about to prepend '{printable(prepend)}' to the label of the following runs:"
    elif append:
        preview = f"You are about to append '{printable(append)}' to the label of the following runs:"
    elif remove:
        preview = f"You are about to remove '{printable(' '.join(remove))}' from the label of the following runs:"
    else:
        preview = "You are about to clear the label of the following runs:"
    confirm_runs(selected, preview, "Continue?", yes)

    def change(run):
        old = run.get("label") or ""
        if clear:
            run.del_attr("label")
            return
        if set_:
            set_label(run, set_)
            return
        if prepend:
            new = f"{format_label(prepend, run)} {old}"
        elif append:
            new = f"{old} {format_label(append, run)}"
        else:
            new = _remove_parts(remove, old)
        run.write_attr("label", new.strip())

    done = _each(selected, change)
    if clear:
        click.echo(f"Cleared label for {len(done)} run(s)", err=True)
    else:
        click.echo(f"Labeled {len(done)} run(s)", err=True)


# -- tags --------------------------------------------------------------


def change_tags(run: Run, add=(), delete=(), clear: bool = False, sync_labels: bool = False) -> None:
    """Add and delete tags of `run` (all of them first with `clear`);
    with `sync_labels`, its label shows added tags and drops deleted
    ones. Used by `guild tag` and by `guild view`."""
    old = list(run.get("tags") or [])
    dropped = set(old) if clear else set(delete)
    new = sorted((set(old) - dropped) | set(add))
    run.write_attr("tags", new)
    if sync_labels:
        label_ = _remove_parts(sorted(dropped), run.get("label") or "")
        words = label_.split()
        prefix = [t for t in add if t not in words]
        run.write_attr("label", " ".join(prefix + ([label_] if label_ else [])))


def set_label(run: Run, template: str) -> None:
    """`guild label --set TEMPLATE` for one run (an empty label clears
    it, as `--clear`). Used by `guild label` and by `guild view`."""
    if not template:
        run.del_attr("label")
        return
    run.write_attr("label", format_label(template, run).strip())


def set_mark(run: Run, marked: bool) -> None:
    """`guild mark` (or `--clear`) for one run."""
    if marked:
        run.write_attr("marked", True)
    else:
        run.del_attr("marked")


@click.command("tag")
@click.argument("runs", nargs=-1)
@click.option("-a", "--add", metavar="TAG", multiple=True, help="Add TAG (repeatable).")
@click.option("-d", "--delete", metavar="TAG", multiple=True, help="Delete TAG (repeatable).")
@click.option("-c", "--clear", is_flag=True, help="Delete all tags first.")
@click.option("-s", "--sync-labels", is_flag=True, help="Update labels to show added and drop deleted tags.")
@click.option("--list-all", is_flag=True, help="List every tag the runs use (default: all runs that pass the filters), one per line.")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options(remote="meta")
def tag(runs, add, delete, clear, sync_labels, list_all, yes, rf):
    """Add or delete run tags (default: the latest run), or list them."""
    if list_all:
        if add or delete or clear:
            raise click.UsageError("--list-all cannot be used with --add, --delete or --clear")
        used = sorted({str(t) for run in selected_runs(rf, runs) for t in run.get("tags") or []})
        for name in used:
            click.echo(printable(name))
        return
    if not (add or delete or clear):
        raise click.UsageError("specify --add, --delete, --clear or --list-all")
    selected = _runs_or_latest(rf, runs)
    if not selected:
        click.echo("No runs to modify.", err=True)
        return
    confirm_runs(selected, "You are about to modify tags for the following runs:", "Continue?", yes)

    done = _each(selected, lambda run: change_tags(run, add, delete, clear, sync_labels))
    click.echo(f"Modified tags for {len(done)} run(s)", err=True)


# -- marks -------------------------------------------------------------


@click.command("mark")
@click.argument("runs", nargs=-1)
@click.option("-c", "--clear", is_flag=True, help="Unmark the runs (default: all marked runs).")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options(remote="meta")
def mark(runs, clear, yes, rf):
    """Mark runs (default: the latest run).

    A marked run is what an operation's dependency on its operation
    resolves to, before the latest completed run."""
    if clear:
        selected = [r for r in selected_runs(rf, runs) if r.get("marked")]
        if not selected:
            click.echo("No runs to unmark.", err=True)
            return
        confirm_runs(selected, "You are about to unmark the following runs:", "Continue?", yes)
        done = _each(selected, lambda run: set_mark(run, False))
        click.echo(f"Unmarked {len(done)} run(s)", err=True)
        return
    selected = _runs_or_latest(rf, runs)
    if not selected:
        click.echo("No runs to mark.", err=True)
        return
    confirm_runs(selected, "You are about to mark the following runs:", "Continue?", yes)
    done = _each(selected, lambda run: set_mark(run, True))
    click.echo(f"Marked {len(done)} run(s)", err=True)


# -- comments ----------------------------------------------------------


@click.command("comment")
@click.argument("runs", nargs=-1)
@click.option("-l", "--list", "list_", is_flag=True, help="List the runs' comments.")
@click.option("-a", "--add", metavar="COMMENT", help="Add COMMENT.")
@click.option("-m", "--message", metavar="COMMENT", help="Add COMMENT (same as --add).")
@click.option("-e", "--edit", is_flag=True, help="Type the comment in an editor.")
@click.option("-d", "--delete", metavar="INDEX", type=click.IntRange(min=1), help="Delete comment INDEX (see --list).")
@click.option("-c", "--clear", is_flag=True, help="Delete all comments.")
@click.option("-u", "--user", metavar="USER", help="Comment as USER or USER@HOST (default: you).")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt.")
@filter_options(remote="meta")
def comment(runs, list_, add, message, edit, delete, clear, user, yes, rf):
    """Add, list or delete run comments (default: the latest run)."""
    if add and message:
        raise click.UsageError("--add and --message cannot be used together")
    text = add or message
    _exclusive(list=list_, add=text, delete=delete, clear=clear)
    selected = _runs_or_latest(rf, runs)
    if not selected:
        click.echo("No runs to modify.", err=True)
        return
    if list_:
        _list_comments(selected)
        return
    if delete:
        confirm_runs(selected, f"You are about to delete comment {delete} from the following runs:", "Continue?", yes)

        def drop(run):
            comments = list(run.get("comments") or [])
            if delete <= len(comments):
                del comments[delete - 1]
                run.write_attr("comments", comments)

        done = _each(selected, drop)
        click.echo(f"Deleted comment for {len(done)} run(s)", err=True)
        return
    if clear:
        confirm_runs(
            selected, "WARNING: You are about to delete ALL comments from the following runs:", "Continue?", yes, False
        )
        done = _each(selected, lambda run: run.del_attr("comments"))
        click.echo(f"Deleted all comments for {len(done)} run(s)", err=True)
        return
    edited = False
    if not text or edit:
        text = click.edit(text or "", extension=".GUILD_COMMENT")
        edited = True
    text = (text or "").strip()
    if not text:
        raise GuildError("aborting due to an empty comment")
    if not edited:
        confirm_runs(selected, "You are about to add a comment to the following runs:", "Continue?", yes)
    who, _, host = (user or util.username()).partition("@")
    entry = {"body": text, "user": who, "host": host or util.hostname(), "time": util.now_micros()}
    done = _each(selected, lambda run: run.write_attr("comments", list(run.get("comments") or []) + [entry]))
    click.echo(f"Added comment to {len(done)} run(s)", err=True)


def _list_comments(runs: list[Run]) -> None:
    from .runselect import format_preview

    for run, line in zip(runs, format_preview(runs)):
        click.echo(line.strip())
        comments = run.get("comments") or []
        if not comments:
            click.echo("  <no comments>")
        for line in comment_lines(comments, indexed=True):
            click.echo(line)


def comment_lines(comments, indexed: bool) -> list[str]:
    """A run's comments as ``comment --list`` and ``runs --comments``
    show them: who and when (with its index), a blank line, the body
    indented, a blank line."""
    lines = []
    for i, c in enumerate(comments or [], 1):
        if not isinstance(c, dict):
            continue
        who = c.get("user") or ""
        if c.get("host"):
            who += f"@{c['host']}"
        index = f"[{i}] " if indexed else ""
        lines += [f"  {index}{printable(who)} {util.format_timestamp(c.get('time'))}", ""]
        lines += [f"    {printable(body_line)}" for body_line in str(c.get("body") or "").splitlines()]
        lines.append("")
    return lines
