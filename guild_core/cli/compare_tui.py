"""The interactive ``guild compare``: Guild AI's tabview, on curses.

Imported only when ``guild compare`` runs on a terminal with no output
option. What the rows and columns are, and how a column sorts, is
`guild_core.compare`'s (`shown`, `sort_order`, `run_detail`); this
module draws them and reads keys.

The screen is Guild AI's: the current cell's position, heading and full
text on the first line, a rule, the headings, then the rows, the current
cell in reverse video. Columns are as wide as their widest cell, at most
20 (headings count up to 12), with a 2-space gap; longer text ends in
``…``. Pop-ups (help, a run's details, warnings) take the bottom half.

curses runs inside `curses.wrapper`, so the terminal is restored however
the view ends: ``q``, an error, Ctrl-C or SIGTERM. An error reaches the
user as one ``guild:`` line, after the terminal is restored.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import textwrap
import unicodedata
from collections import Counter
from typing import Callable

from guild_core import compare as cmp
from guild_core.errors import GuildError

from .common import printable

HEADER_LINES = 3  # location, rule, headings
MIN_ROWS, MIN_COLS = 6, 20
HEADING_WIDTH, CELL_WIDTH, MAX_WIDTH = 12, 20, 250
NO_RUNS = "no runs"

# (keys, what they do), as Guild AI's help lists them (its own keys,
# then tabview's), less what guild has no use for.
HELP = [
    ("F1 or ?", "Show this help"),
    ("s", "Sort by current column (ascending)"),
    ("S", "Sort by current column (descending)"),
    ("1", "Sort numerically by current column (ascending)"),
    ("! or 2", "Sort numerically by current column (descending)"),
    ("a", "Reset sort order"),
    ("A", "Reset sort order (reversed)"),
    ("r", "Reload data (resets sort order)"),
    ("m", "Mark run"),
    ("u", "Unmark run"),
    ("Cursor keys or h,j,k,l", "Move highlighted cell"),
    ("Q or q", "Quit"),
    ("Home, 0, ^, C-a", "Move to start of the current line"),
    ("End, $, C-e", "Move to end of the current line"),
    ("[num]|", "Move to column <num> (defaults to first column)"),
    ("PgUp/PgDn or K/J", "Move a page up or down"),
    ("H,L", "Page left or right"),
    ("g", "Move to top of current column"),
    ("[num]G", "Move to line <num> (defaults to last line)"),
    ("Insert", "Memorize current position"),
    ("Delete or '", "Move to last memorized position"),
    ("Enter", "View the current run's details"),
    ("/", "Specify a search term"),
    ("n", "Move to next search result"),
    ("p", "Move to previous search result"),
    ("< >", "Decrease / increase column width (all columns)"),
    (", .", "Decrease / increase column width (current column)"),
    ("- +", "Decrease / increase column gap"),
    ("`", "Show warnings (from reading the runs)"),
    ("[num]c", "Toggle variable column width mode or set width to [num]"),
    ("[num]C", "Maximize current column or set width to [num]"),
    ("[num][", "Skip to [num]th change in column value (up)"),
    ("[num]]", "Skip to [num]th change in column value (down)"),
    ("[num]{", "Skip to [num]th change in row value (left)"),
    ("[num]}", "Skip to [num]th change in row value (right)"),
    ("C-l", "Redraw the screen"),
]
HELP_KEY_WIDTH = 25


class _Terminated(BaseException):
    """SIGTERM, raised where the view is, so curses restores the
    terminal on the way out."""


def _terminate(_signum, _frame):
    raise _Terminated()


def show(load: Callable[[], cmp.Shown]) -> int:
    """Show what `load()` returns until the user quits; `load` is called
    again for each refresh. Returns the exit status: 0, or 130 after
    Ctrl-C and 143 after SIGTERM. Errors raise GuildError, the terminal
    already restored."""
    try:
        import curses
    except ImportError:
        raise GuildError(
            "the interactive compare needs Python's curses module: use --table, --csv or --json"
        ) from None
    logs: list[str] = []
    try:
        data = _load(load, logs)  # before curses: an error is a plain guild: line
    except BaseException:
        _echo(logs)
        raise
    # curses would take these over the terminal's real size.
    os.environ.pop("LINES", None)
    os.environ.pop("COLUMNS", None)
    saved = signal.signal(signal.SIGTERM, _terminate)
    try:
        curses.wrapper(lambda scr: Viewer(scr, data, load, logs).run())
    except KeyboardInterrupt:
        return 130
    except _Terminated:
        return 143
    except GuildError:
        raise
    except curses.error as e:
        raise GuildError(f"cannot show the interactive compare ({e or 'curses error'}): use --table") from None
    except Exception as e:
        # A bug too is one line, not a traceback after the screen.
        raise GuildError(f"the interactive compare failed: {type(e).__name__}: {e}") from None
    finally:
        signal.signal(signal.SIGTERM, saved)
        # What the last reading of the runs warned about, now that the
        # screen is the user's again.
        _echo(logs)
    return 0


def _echo(logs: list[str]) -> None:
    for line in logs:
        sys.stderr.write(line + "\n")


def _load(load: Callable[[], cmp.Shown], logs: list[str]) -> cmp.Shown:
    """`load()`, its warnings (written to stderr) kept in `logs`
    instead of drawn over the screen."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return load()
    finally:
        logs[:] = buf.getvalue().splitlines()


def char_width(ch: str) -> int:
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    return sum(char_width(ch) for ch in text)


class Viewer:
    """The table on a curses screen, and its keys."""

    def __init__(self, scr, data: cmp.Shown, load: Callable[[], cmp.Shown], logs: list[str]):
        import curses

        self.curses = curses
        self.scr = scr
        self.load = load
        self.logs = logs
        self.encoding = getattr(scr, "encoding", None) or "utf-8"
        self.trunc = "…" if self._encodable("…") else ">"
        self.gap = 2
        self.width_mode = "max"
        self.count = ""
        self.memo: tuple[int, int] | None = None
        self.needle = ""
        self.cy = self.cx = self.top = self.left = 0
        self.prompt_text: str | None = None
        self.running = True
        self._set_data(data)
        self.keys = self._keys()
        try:
            curses.curs_set(0)
        except curses.error:
            pass
        if hasattr(curses, "set_escdelay"):
            curses.set_escdelay(25)

    # -- data ---------------------------------------------------------

    def _set_data(self, data: cmp.Shown) -> None:
        self.data = data
        self.header = data.header if data.runs else [NO_RUNS]
        self.order = list(range(len(data.runs)))
        self.widths = self._start_widths()
        self.cy = max(0, min(self.cy, self.nrows - 1))
        self.cx = max(0, min(self.cx, self.ncols - 1))

    @property
    def nrows(self) -> int:
        return len(self.order)

    @property
    def ncols(self) -> int:
        return len(self.header)

    def cell(self, r: int, c: int) -> str:
        if r >= self.nrows:
            return ""
        row = self.data.cells[self.order[r]]
        return row[c] if c < len(row) else ""

    def _column(self, c: int) -> list[str]:
        return [self.cell(r, c) for r in range(self.nrows)]

    def _start_widths(self) -> list[int]:
        # Guild AI's: the widest cell up to 20, the heading counting up to 12.
        return [
            max(1, min(text_width(h), HEADING_WIDTH), *(min(text_width(v), CELL_WIDTH) for v in self._column(c)))
            for c, h in enumerate(self.header)
        ]

    def _max_width(self, c: int) -> int:
        cells = [self.header[c], *self._column(c)]
        return max(1, min(MAX_WIDTH, max(text_width(v) for v in cells)))

    def _mode_width(self, c: int) -> int:
        # tabview's: the most common width, unless the widest is close to it.
        lens = [text_width(v) for v in [self.header[c], *self._column(c)]]
        common = Counter(lens).most_common()
        mode = common[0][0] or (common[1][0] if len(common) > 1 else 0)
        widest = max(lens) or 1
        diff = abs(mode - widest)
        floor = max(1, self.gap)
        if diff > self.gap * 2 and diff / widest > 0.1:
            return max(floor, mode)
        return max(floor, min(widest, MAX_WIDTH))

    # -- keys ---------------------------------------------------------

    def _keys(self) -> dict:
        c = self.curses
        keys = {
            "?": self.help,
            c.KEY_F1: self.help,
            "s": lambda: self.sort(reverse=False),
            "S": lambda: self.sort(reverse=True),
            "1": lambda: self.sort(reverse=False, numeric=True),
            "!": lambda: self.sort(reverse=True, numeric=True),
            "2": lambda: self.sort(reverse=True, numeric=True),
            "a": lambda: self.reset_order(reverse=False),
            "A": lambda: self.reset_order(reverse=True),
            "r": self.reload,
            "m": lambda: self.mark(True),
            "u": lambda: self.mark(False),
            "q": self.quit,
            "Q": self.quit,
            "|": lambda: self.goto_col(self.take_count(1)),
            "g": lambda: self.goto_row(1),
            "G": lambda: self.goto_row(self.take_count(self.nrows)),
            "J": self.page_down,
            "K": self.page_up,
            "H": self.page_left,
            "L": self.page_right,
            "'": self.recall,
            "\n": self.details,
            "\r": self.details,
            "/": self.search,
            "n": lambda: self.find(reverse=False),
            "p": lambda: self.find(reverse=True),
            "<": lambda: self.resize_columns(range(self.ncols), -1),
            ">": lambda: self.resize_columns(range(self.ncols), 1),
            ",": lambda: self.resize_columns([self.cx], -1),
            ".": lambda: self.resize_columns([self.cx], 1),
            "-": lambda: self.set_gap(self.gap - 1),
            "+": lambda: self.set_gap(self.gap + 1),
            "`": self.show_logs,
            "c": self.toggle_widths,
            "C": self.fit_column,
            "[": lambda: self.skip_change(-1, 0),
            "]": lambda: self.skip_change(1, 0),
            "{": lambda: self.skip_change(0, -1),
            "}": lambda: self.skip_change(0, 1),
            "\x0c": self.scr.clear,  # C-l
            c.KEY_PPAGE: self.page_up,
            c.KEY_NPAGE: self.page_down,
            c.KEY_IC: self.memorize,
            c.KEY_DC: self.recall,
            c.KEY_ENTER: self.details,
        }
        for names, fn in (
            (("j", c.KEY_DOWN), lambda: self.move(self.take_count(1), 0)),
            (("k", c.KEY_UP), lambda: self.move(-self.take_count(1), 0)),
            (("h", c.KEY_LEFT), lambda: self.move(0, -self.take_count(1))),
            (("l", c.KEY_RIGHT), lambda: self.move(0, self.take_count(1))),
            (("0", "^", "\x01", c.KEY_HOME), lambda: self.goto_col(1)),
            (("$", "\x05", c.KEY_END), lambda: self.goto_col(self.ncols)),
        ):
            for name in names:
                keys[name] = fn
        return keys

    def run(self) -> None:
        while self.running:
            self.draw()
            self.handle(self.scr.get_wch())

    def handle(self, key) -> None:
        if key == self.curses.KEY_RESIZE:
            return
        # A count before a command: digits, where 0, 1 and 2 are
        # commands of their own unless a count has begun.
        if isinstance(key, str) and key in "0123456789" and (self.count or key not in self.keys):
            self.count += key
            return
        fn = self.keys.get(key)
        if fn is not None:
            fn()
        self.count = ""

    def take_count(self, default: int) -> int:
        n = int(self.count) if self.count else default
        self.count = ""
        return n

    def quit(self) -> None:
        self.running = False

    # -- moving -------------------------------------------------------

    def body_height(self) -> int:
        h, _w = self.scr.getmaxyx()
        return max(1, h - HEADER_LINES - (1 if self.prompt_text is not None else 0))

    def goto(self, r: int, c: int) -> None:
        self.cy = max(0, min(r, self.nrows - 1))
        self.cx = max(0, min(c, self.ncols - 1))

    def move(self, dr: int, dc: int) -> None:
        self.goto(self.cy + dr, self.cx + dc)

    def goto_row(self, n: int) -> None:
        self.goto(n - 1, self.cx)

    def goto_col(self, n: int) -> None:
        self.goto(self.cy, n - 1)

    def page_down(self) -> None:
        shift = self.body_height() * self.take_count(1)
        if self.top + shift <= self.nrows - 1:
            self.top += shift
            self.goto(self.cy + shift, self.cx)
        else:
            self.goto(self.nrows - 1, self.cx)

    def page_up(self) -> None:
        shift = self.body_height() * self.take_count(1)
        if self.top == 0:
            self.goto(0, self.cx)
        else:
            d = min(self.top, shift)
            self.top -= d
            self.goto(self.cy - d, self.cx)

    def _fully_visible(self, start: int, step: int) -> int:
        """How many whole columns fit from column `start` on, going
        right (`step` 1) or left (-1); at least 1."""
        _h, w = self.scr.getmaxyx()
        used = n = 0
        c = start
        while 0 <= c < self.ncols and used + self.widths[c] <= w:
            used += self.widths[c] + self.gap
            n += 1
            c += step
        return max(1, n)

    def page_right(self) -> None:
        for _ in range(self.take_count(1)):
            k = self._fully_visible(self.left, 1)
            if self.left + k <= self.ncols - 1:
                self.left += k
                self.goto(self.cy, self.cx + k)
            else:
                self.goto(self.cy, self.ncols - 1)
                break

    def page_left(self) -> None:
        for _ in range(self.take_count(1)):
            if self.left == 0:
                self.goto(self.cy, 0)
                break
            k = self._fully_visible(self.left - 1, -1)
            d = min(self.left, k)
            self.left -= d
            self.goto(self.cy, self.cx - d)

    def memorize(self) -> None:
        self.memo = (self.cy, self.cx)

    def recall(self) -> None:
        if self.memo is not None:
            self.goto(*self.memo)

    def skip_change(self, dr: int, dc: int) -> None:
        for _ in range(self.take_count(1)):
            val = self.cell(self.cy, self.cx)
            r, c = self.cy + dr, self.cx + dc
            while 0 <= r < self.nrows and 0 <= c < self.ncols and self.cell(r, c) == val:
                r, c = r + dr, c + dc
            self.goto(r, c)

    # -- sorting, reloading, marking ------------------------------------

    def sort(self, reverse: bool, numeric: bool = False) -> None:
        keys = [self.data.rows[i][self.cx] for i in self.order] if self.data.runs else []
        self.order = [self.order[i] for i in cmp.sort_order(keys, reverse, numeric)]

    def reset_order(self, reverse: bool) -> None:
        self.order = list(range(len(self.data.runs)))
        if reverse:
            self.order.reverse()

    def reload(self) -> None:
        self.status("Refreshing data...")
        try:
            data = _load(self.load, self.logs)
        except (GuildError, OSError) as e:
            self.text_box([printable(e)], "Cannot refresh")
            return
        self._set_data(data)

    def current_run(self):
        return self.data.runs[self.order[self.cy]] if self.data.runs else None

    def mark(self, flag: bool) -> None:
        run = self.current_run()
        if run is None:
            return
        try:
            if flag:
                run.write_attr("marked", True)
            else:
                run.del_attr("marked")
        except (GuildError, OSError) as e:
            self.text_box(
                [printable(e), "", "Press 'q' to close this, then 'r' to refresh the list."],
                f"Run {run.short_id}",
            )
            return
        i = self.order[self.cy]
        self.data.refresh_row(i, escape=printable)
        if "operation" in self.header:
            c = self.header.index("operation")
            self.widths[c] = max(self.widths[c], text_width(self.data.cells[i][c]))

    # -- widths -------------------------------------------------------

    def resize_columns(self, cols, sign: int) -> None:
        for c in cols:
            w = self.widths[c]
            self.widths[c] = max(1, w + sign * max(1, int(w * 0.2)))

    def set_gap(self, gap: int) -> None:
        self.gap = max(0, gap)

    def toggle_widths(self) -> None:
        if self.count:
            _h, w = self.scr.getmaxyx()
            width = max(1, min(self.take_count(1), w))
            self.widths = [width] * self.ncols
            return
        self.width_mode = "mode" if self.width_mode == "max" else "max"
        pick = self._mode_width if self.width_mode == "mode" else self._max_width
        self.widths = [pick(c) for c in range(self.ncols)]

    def fit_column(self) -> None:
        if self.count:
            self.widths[self.cx] = max(1, self.take_count(1))
        else:
            self.widths[self.cx] = self._max_width(self.cx)

    # -- searching ----------------------------------------------------

    def search(self) -> None:
        text = self.prompt("Search: ")
        if text:
            self.needle = text.lower()
            self.find(reverse=False, here=True)

    def find(self, reverse: bool, here: bool = False) -> None:
        """Move to the next (previous) cell containing the search text,
        in reading order, wrapping around; `here` counts the current
        cell first."""
        if not self.needle or not self.nrows:
            return
        total = self.nrows * self.ncols
        start = self.cy * self.ncols + self.cx
        step = -1 if reverse else 1
        first = 0 if here else 1
        for i in range(first, first + total):
            r, c = divmod((start + step * i) % total, self.ncols)
            if self.needle in self.cell(r, c).lower():
                self.goto(r, c)
                return

    def prompt(self, label: str) -> str | None:
        """A line typed on the last screen line; None if cancelled (Esc)."""
        curses = self.curses
        self.prompt_text = ""
        try:
            curses.curs_set(1)
        except curses.error:
            pass
        try:
            while True:
                self.draw(prompt=label)
                key = self.scr.get_wch()
                if key in ("\n", "\r", curses.KEY_ENTER):
                    return self.prompt_text
                if key == "\x1b":
                    return None
                if key in ("\x7f", "\x08", curses.KEY_BACKSPACE):
                    self.prompt_text = self.prompt_text[:-1]
                elif isinstance(key, str) and key.isprintable():
                    self.prompt_text += key
        finally:
            self.prompt_text = None
            try:
                curses.curs_set(0)
            except curses.error:
                pass

    # -- pop-ups ------------------------------------------------------

    def help(self) -> None:
        lines = [keys.ljust(HELP_KEY_WIDTH) + text for keys, text in HELP]
        self.text_box(lines, "Key bindings")

    def details(self) -> None:
        run = self.current_run()
        if run is None:
            self.text_box(
                ["", "Press 'r' in the main screen to refresh the list."],
                "There are no matching runs currently",
            )
            return
        from guild_core.run import Run

        title = f"Run {run.short_id}"
        if not run.path.is_dir():
            self.text_box(["This run no longer exists."], title)
            return
        self.text_box([printable(line) for line in cmp.run_detail(Run.for_dir(run.path))], title)

    def show_logs(self) -> None:
        self.text_box([printable(line) for line in self.logs], "Logs")

    def text_box(self, lines: list[str], title: str) -> None:
        """`lines` in a box over the bottom half of the screen; j/k and
        the arrows scroll, q, Enter or Esc closes it."""
        curses = self.curses
        skip = 0
        while True:
            h, w = self.scr.getmaxyx()
            box_h = h // 2
            if box_h < 4 or w < 4:
                return
            wrapped = [
                part
                for line in lines
                for part in (textwrap.wrap(line, w - 3, subsequent_indent=" ") or [""])
            ]
            shown = box_h - 3
            skip = max(0, min(skip, len(wrapped) - shown))
            win = curses.newwin(box_h, w, h - box_h, 0)
            win.erase()
            win.box()
            self._put(win, 1, 1, self._fit(title, w - 3), curses.A_STANDOUT)
            for i, line in enumerate(wrapped[skip : skip + shown]):
                self._put(win, 2 + i, 1, self._fit(line, w - 2).rstrip())
            win.refresh()
            key = self.scr.get_wch()
            if key in ("j", curses.KEY_DOWN):
                skip += 1
            elif key in ("k", curses.KEY_UP):
                skip -= 1
            elif key in ("q", "Q", "\n", "\r", "\x1b", curses.KEY_ENTER, curses.KEY_RESIZE):
                break
        self.scr.touchwin()

    def status(self, text: str) -> None:
        _h, w = self.scr.getmaxyx()
        self.scr.move(0, 0)
        self.scr.clrtoeol()
        self._put(self.scr, 0, 0, self._fit(f" {text}", w - 1), self.curses.A_REVERSE)
        self.scr.refresh()

    # -- drawing ------------------------------------------------------

    def _encodable(self, text: str) -> bool:
        try:
            text.encode(self.encoding)
            return True
        except (UnicodeError, LookupError):
            return False

    def _fit(self, text: str, width: int) -> str:
        """`text` in exactly `width` cells: padded, or cut with the
        truncation mark."""
        if width < 1:
            return ""
        out: list[str] = []
        used = 0
        for ch in text:
            cw = char_width(ch)
            if used + cw > width:
                break
            out.append(ch)
            used += cw
        if len(out) < len(text):
            while out and used + len(self.trunc) > width:
                used -= char_width(out.pop())
            return "".join(out) + " " * max(0, width - used - len(self.trunc)) + self.trunc[:width]
        return "".join(out) + " " * (width - used)

    def _put(self, win, y: int, x: int, text: str, attr: int = 0) -> None:
        if not self._encodable(text):
            text = text.encode(self.encoding, "replace").decode(self.encoding)
        try:
            win.addstr(y, x, text, attr)
        except self.curses.error:
            # Writing the bottom-right cell moves the cursor off the
            # screen, which curses reports after drawing it.
            pass

    def _scroll(self, w: int) -> None:
        bh = self.body_height()
        if self.cy < self.top:
            self.top = self.cy
        elif self.cy >= self.top + bh:
            self.top = self.cy - bh + 1
        if self.cx < self.left:
            self.left = self.cx
        while self.left < self.cx and self._x_of(self.cx) + self.widths[self.cx] > w:
            self.left += 1

    def _x_of(self, c: int) -> int:
        return sum(self.widths[self.left : c]) + (c - self.left) * self.gap

    def _visible_columns(self, w: int):
        """(column, x, width) of each column on screen; the last may be
        cut short."""
        x = 0
        for c in range(self.left, self.ncols):
            if x >= w:
                break
            cw = min(self.widths[c], w - x)
            if cw < self.widths[c] and cw <= len(self.trunc):
                break
            yield c, x, cw
            x += self.widths[c] + self.gap

    def location(self, w: int) -> str:
        """``(ROW,COL) HEADING``, padded to the widest it could be (up
        to 30% of the screen), as tabview shows it."""
        widest = f"({self.nrows},{self.ncols}) " + max(self.header, key=len)
        width = max(1, min(int(w * 0.3), len(widest)))
        loc = f"({self.cy + 1 if self.nrows else 0},{self.cx + 1}) {self.header[self.cx]}"
        if len(loc) > width:
            return loc[: width - 1] + self.trunc
        return loc.ljust(width)

    def draw(self, prompt: str | None = None) -> None:
        curses = self.curses
        scr = self.scr
        h, w = scr.getmaxyx()
        scr.erase()
        if h < MIN_ROWS or w < MIN_COLS:
            self._put(scr, 0, 0, "Terminal too small"[: max(0, w - 1)])
            scr.refresh()
            return
        self._scroll(w)
        info = f" {self.location(w)}"
        self._put(scr, 0, 0, info, curses.A_REVERSE)
        rest = w - len(info) - 2
        if rest > 0:
            self._put(scr, 0, len(info), "  " + self._fit(self.cell(self.cy, self.cx), rest).rstrip())
        scr.hline(1, 0, curses.ACS_HLINE, w)
        bh = self.body_height()
        for c, x, cw in self._visible_columns(w):
            self._put(scr, 2, x, self._fit(self.header[c], cw), curses.A_BOLD)
            for r in range(self.top, min(self.nrows, self.top + bh)):
                attr = curses.A_REVERSE if (r, c) == (self.cy, self.cx) else curses.A_NORMAL
                self._put(scr, HEADER_LINES + r - self.top, x, self._fit(self.cell(r, c), cw), attr)
        if prompt is not None:
            line = self._fit(prompt + (self.prompt_text or ""), w - 1)
            self._put(scr, h - 1, 0, line)
            scr.move(h - 1, min(w - 1, text_width(prompt + (self.prompt_text or ""))))
        scr.refresh()
