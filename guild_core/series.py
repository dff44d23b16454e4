"""A scalar's points, for the view's charts: read fast, kept, thinned.

`tfevents.scan_events` decodes every record of every tag and checks two
CRCs per record in Python, about 11 µs a point: 11 s for a run that
logged a million values. Here one tag is read: a record that ends with
what guild's `EventWriter` writes for that tag (the summary's tail is
the same bytes for every value of a tag) is read in place, a record
that does not name the tag at all is skipped without decoding, and
only the rest goes through the general decoder. Records are framed and
bounded by their lengths; their CRCs are not checked (a chart is not
where a damaged file is diagnosed: `guild runs info` and the index read
every record checked).

What was read is kept per event file (by size and time) and, when the
file only grew, read on from where the last read ended: a live chart
polling a run reads only what it logged since.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections import OrderedDict

from guild_core import tfevents

# Event files kept (per file and tag): about 16 bytes a point.
_MAX_KEPT = 64
_kept: "OrderedDict[tuple[str, str], _Read]" = OrderedDict()
_lock = threading.Lock()


class _Read:
    __slots__ = ("size", "mtime", "end", "tail", "steps", "values")


def _varint(n: int) -> bytes:
    return tfevents._varint(n)


def _plain_tail(tag: str) -> bytes:
    """The bytes `EventWriter` writes between an event's step and the
    value's four bytes, for `tag`."""
    tagb = tag.encode("utf-8")
    inner = b"\x0a" + _varint(len(tagb)) + tagb + b"\x15"
    value_len = len(inner) + 4
    summary = b"\x0a" + _varint(value_len)
    summary_len = len(summary) + value_len
    return b"\x2a" + _varint(summary_len) + summary + inner


def _scan(path: str, tag: str, start: int):
    """`tag`'s steps and values (numpy arrays) in the records of `path`
    from byte `start`, and ``(end, tail)`` as `tfevents.scan_events`."""
    import numpy as np

    with open(path, "rb") as f:
        if start:
            f.seek(start)
        buf = f.read()
    fast = _scan_plain(buf, tag)
    if fast is not None:
        steps, values, end = fast
        return steps, values, start + end, buf[end - 4 : end]
    steps, values = [], []
    end, tail = _scan_records(buf, tag, start, steps, values)
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64), end, tail


def _scan_plain(buf: bytes, tag: str):
    """``(steps, values, end)`` when every record of `tag` in `buf` is
    what `EventWriter` writes (found with numpy, a few hundred ms for a
    million); None when some is not, or when there is none."""
    import numpy as np

    tagb = tag.encode("utf-8")
    field = b"\x0a" + _varint(len(tagb)) + tagb
    total = buf.count(field)
    if not total:
        return None
    plain = _plain_tail(tag)
    plen = len(plain)
    a = np.frombuffer(buf, dtype=np.uint8)
    n = len(a)
    cand = np.flatnonzero(a[: max(0, n - plen - 4)] == plain[0])
    for j in range(1, plen):
        cand = cand[a[cand + j] == plain[j]]
    if len(cand) != total:
        return None
    stop = cand + plen + 4  # each record's data ends here
    body = np.empty(len(cand), dtype=np.int64)
    nsteps = np.zeros(len(cand), dtype=np.int64)
    todo = np.arange(len(cand))
    # The step is 0 to 10 varint bytes (none for step 0) before the
    # tail; the record's length header, 12 bytes before its data, says
    # which.
    for k in range(11):
        if not len(todo):
            break
        b = cand[todo] - 9 - (k + 1 if k else 0)
        inside = b >= 12
        todo, b = todo[inside], b[inside]
        hdr = a[(b - 12)[:, None] + np.arange(8)[None, :]].copy().view("<u8").reshape(-1)
        good = (hdr == (stop[todo] - b).astype(np.uint64)) & (a[b] == 0x09)
        if k:
            good &= a[b + 9] == 0x10
        body[todo[good]] = b[good]
        nsteps[todo[good]] = k
        todo = todo[~good]
    if len(todo):
        return None
    step = np.zeros(len(cand), dtype=np.uint64)
    for k in range(1, 11):
        rows = np.flatnonzero(nsteps == k)
        if not len(rows):
            continue
        raw = a[(body[rows] + 10)[:, None] + np.arange(k)[None, :]].astype(np.uint64)
        shifts = (np.arange(k, dtype=np.uint64) * np.uint64(7))[None, :]
        step[rows] = np.bitwise_or.reduce((raw & np.uint64(0x7F)) << shifts, axis=1)
    idx = (cand + plen)[:, None] + np.arange(4)[None, :]
    vals = a[idx].copy().view("<f4").reshape(-1).astype(np.float64)
    return step.view(np.int64), vals, int(stop[-1]) + 4


def _scan_records(buf: bytes, tag: str, start: int, steps: list, values: list) -> tuple[int, bytes]:
    """`_scan` record by record (any encoding of the tag's values)."""
    size = len(buf)
    tagb = tag.encode("utf-8")
    plain = _plain_tail(tag)
    plen = len(plain)
    unpack = struct.unpack_from
    find = buf.find
    startswith = buf.startswith
    pos = 0
    while pos + 12 <= size:
        length = unpack("<Q", buf, pos)[0]
        body = pos + 12
        stop = body + length
        if stop + 4 > size:
            break
        pos = stop + 4
        k = stop - 4 - plen
        if k == body + 9 and buf[body] == 0x09 and startswith(plain, k):
            steps.append(0)
            values.append(unpack("<f", buf, stop - 4)[0])
            continue
        if find(tagb, body, stop) < 0:
            continue
        data = buf[body:stop]
        try:
            event = tfevents._plain_event(data) or tfevents._decode_event(data)
        except tfevents._DECODE_ERRORS:
            continue
        _wall, step, vals = event
        for t, v in vals:
            if t == tag:
                steps.append(step)
                values.append(v)
    return start + pos, buf[pos - 4 : pos] if pos else b""


def _event_files(guild_dir: str) -> list[str]:
    try:
        names = sorted(os.listdir(guild_dir))
    except OSError:
        return []
    return [os.path.join(guild_dir, n) for n in names if n.startswith(tfevents.FILE_PREFIX)]


def _file_points(path: str, tag: str):
    import numpy as np

    try:
        st = os.stat(path)
    except OSError:
        return _empty()
    key = (path, tag)
    with _lock:
        kept = _kept.get(key)
        if kept is not None:
            _kept.move_to_end(key)
            if (kept.size, kept.mtime) == (st.st_size, st.st_mtime_ns):
                return kept.steps, kept.values
    # Only appended to since: read on from the last whole record.
    grown = kept is not None and kept.tail and st.st_size >= kept.end and _same_tail(path, kept)
    start = kept.end if grown else 0
    try:
        steps, values, end, tail = _scan(path, tag, start)
    except OSError:
        return _empty()
    read = _Read()
    if grown:
        steps = np.concatenate([kept.steps, steps])
        values = np.concatenate([kept.values, values])
        tail = tail or kept.tail
        end = max(end, kept.end)
    read.steps, read.values, read.end, read.tail = steps, values, end, tail
    read.size, read.mtime = st.st_size, st.st_mtime_ns
    with _lock:
        _kept[key] = read
        while len(_kept) > _MAX_KEPT:
            _kept.popitem(last=False)
    return steps, values


def _empty():
    import numpy as np

    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def _same_tail(path: str, kept: _Read) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(kept.end - 4)
            return f.read(4) == kept.tail
    except OSError:
        return False


def points(guild_dir: str, tag: str):
    """Every (step, value) `tag` has under `guild_dir`, in file and
    record order, as two numpy arrays."""
    import numpy as np

    parts = [_file_points(path, tag) for path in _event_files(guild_dir)]
    if not parts:
        return _empty()
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def thinned(steps, values, max_points: int) -> tuple[list[int], list[float]]:
    """At most `max_points` of the points, in step order: the series cut
    into ``max_points // 2`` buckets of consecutive points, each giving
    its lowest and its highest value (in step order), so no spike is
    lost; the first and last points are always kept."""
    import numpy as np

    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    n = len(s)
    if n > 1 and np.any(s[1:] < s[:-1]):
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
    if n <= max_points:
        return s.tolist(), v.tolist()
    buckets = max(1, max_points // 2)
    # NaN and infinities are kept out of the min and max by stand-ins.
    finite = np.isfinite(v)
    lo = np.where(finite, v, np.inf)
    hi = np.where(finite, v, -np.inf)
    bounds = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts = bounds[:-1]
    sizes = np.diff(bounds)
    keep = set()
    # Buckets of one size at a time (linspace makes at most two).
    for w in sorted(set(sizes.tolist())):
        rows = starts[sizes == w]
        idx = rows[:, None] + np.arange(w)[None, :]
        keep.update((rows + lo[idx].argmin(axis=1)).tolist())
        keep.update((rows + hi[idx].argmax(axis=1)).tolist())
    keep.update((0, n - 1))
    chosen = sorted(keep)
    if len(chosen) > max_points:
        # The first and last points pushed it over: drop inner ones evenly.
        inner = chosen[1:-1]
        step = len(inner) / (max_points - 2)
        chosen = [chosen[0]] + [inner[int(i * step)] for i in range(max_points - 2)] + [chosen[-1]]
    sel = np.asarray(chosen, dtype=np.int64)
    return s[sel].tolist(), v[sel].tolist()


def smoothed(values: list[float], weight: float) -> list[float | None]:
    """TensorBoard's smoothing: an exponential moving average, debiased
    for its start; a value that is not finite is passed over."""
    out: list[float | None] = []
    last = 0.0
    count = 0
    for val in values:
        if val is None or not math.isfinite(val):
            out.append(None)
            continue
        last = last * weight + (1 - weight) * val
        count += 1
        debias = 1 - weight**count
        out.append(last / debias if debias else val)
    return out
