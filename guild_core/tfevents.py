"""TensorBoard event files: write and read scalar summaries.

Everything is done by hand with the standard library -- record framing,
CRC32C and the few protobuf messages involved -- so logging and reading
scalars needs neither TensorFlow nor protobuf, and importing this module
costs next to nothing.

Record framing: ``uint64 length``, ``uint32 masked_crc(length bytes)``,
``data``, ``uint32 masked_crc(data)``, all little-endian. ``data`` is an
``Event`` protobuf.
"""

from __future__ import annotations

import itertools
import os
import struct
import time

FILE_VERSION = "brain.Event:2"
FILE_PREFIX = "events.out.tfevents."

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF

# TensorFlow's per-process file counter; next() on a count is atomic under
# the GIL, so writers made on different threads still get distinct names.
_file_counter = itertools.count()

_crc_table: list[int] | None = None


def _make_crc_table() -> list[int]:
    # Built on first use, not at import, to keep the import free.
    global _crc_table
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    _crc_table = table
    return table


def crc32c(data: bytes, crc: int = 0) -> int:
    """Return the CRC32C (Castagnoli) of ``data``, continuing from ``crc``."""
    table = _crc_table or _make_crc_table()
    crc ^= _U32
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U32


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & _U32


# ---------------------------------------------------------------------------
# Writing


def _varint(n: int) -> bytes:
    # Negative int64 values go out as their 64-bit two's complement
    # (10 bytes), as protobuf does.
    n &= _U64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(key: int, payload: bytes) -> bytes:
    return bytes((key,)) + _varint(len(payload)) + payload


def _float32(value: float) -> bytes:
    try:
        return struct.pack("<f", value)
    except OverflowError:
        # Beyond float32 range: store infinity as a float32 cast would,
        # rather than fail the caller's run over a logged metric.
        return struct.pack("<f", float("inf") if value > 0 else float("-inf"))


def _encode_event(
    wall_time: float,
    step: int = 0,
    file_version: str | None = None,
    summary: bytes | None = None,
) -> bytes:
    out = b"\x09" + struct.pack("<d", wall_time)
    if step:
        out += b"\x10" + _varint(step)
    if file_version is not None:
        out += _len_field(0x1A, file_version.encode("utf-8"))
    if summary is not None:
        out += _len_field(0x2A, summary)
    return out


def _scalar_summary(tag: str, value: float) -> bytes:
    summary_value = _len_field(0x0A, tag.encode("utf-8")) + b"\x15" + _float32(value)
    return _len_field(0x0A, summary_value)


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", _masked_crc(header))
        + data
        + struct.pack("<I", _masked_crc(data))
    )


class EventWriter:
    """Write scalars to a new TensorBoard event file in ``logdir``.

    The file is created by the first ``add_scalar`` (so a run that logs
    nothing gets no empty event file); ``path`` is None until then. Each
    scalar is flushed at once so readers see it while the run is live.
    """

    def __init__(self, logdir: str | os.PathLike, filename_suffix: str = ""):
        self.logdir = os.fspath(logdir)
        self.filename_suffix = filename_suffix
        self.path: str | None = None
        self._file = None
        self._closed = False

    def _open(self):
        from .util import hostname

        os.makedirs(self.logdir, exist_ok=True)
        host, pid = hostname(), os.getpid()
        while True:
            name = (
                f"{FILE_PREFIX}{int(time.time())}.{host}.{pid}."
                f"{next(_file_counter)}{self.filename_suffix}"
            )
            path = os.path.join(self.logdir, name)
            try:
                f = open(path, "xb")
            except FileExistsError:
                continue
            break
        f.write(_record(_encode_event(time.time(), file_version=FILE_VERSION)))
        self.path = path
        self._file = f
        return f

    def add_scalar(
        self, tag: str, value: float, step: int, wall_time: float | None = None
    ) -> None:
        """Append ``tag`` = ``value`` (stored as float32) at ``step``."""
        if self._closed:
            raise ValueError("EventWriter is closed")
        f = self._file or self._open()
        if wall_time is None:
            wall_time = time.time()
        summary = _scalar_summary(tag, float(value))
        f.write(_record(_encode_event(float(wall_time), int(step), summary=summary)))
        f.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Reading

# A record whose CRC checks out but whose data isn't a well-formed Event
# raises one of these while decoding; such a record is skipped.
_DECODE_ERRORS = (ValueError, IndexError, struct.error, RecursionError)

# DataType values Guild AI 0.9 reads scalars from (it ignores tensors of
# other types): dtype -> (struct format, size, value field, unpacked wire type)
_FLOAT_DTYPES = {
    1: ("<f", 4, 5, 5),  # DT_FLOAT: float_val
    2: ("<d", 8, 6, 1),  # DT_DOUBLE: double_val
}


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _int64(n: int) -> int:
    n &= _U64
    return n - (1 << 64) if n >> 63 else n


def _next_field(buf: bytes, pos: int, end: int):
    """Return (field, wire type, value, next pos) for the field at ``pos``.

    ``value`` is the integer for varints, else the (start, stop) span of
    the field's bytes.
    """
    key, pos = _read_varint(buf, pos, end)
    field, wire = key >> 3, key & 7
    if field == 0:
        raise ValueError("invalid field number 0")
    if wire == 0:
        value, pos = _read_varint(buf, pos, end)
        return field, wire, value, pos
    if wire == 4:
        return field, wire, None, pos
    start = pos
    if wire == 1:
        pos += 8
    elif wire == 5:
        pos += 4
    elif wire == 2:
        size, start = _read_varint(buf, pos, end)
        pos = start + size
    elif wire == 3:
        # Deprecated group: skip nested fields up to its matching end.
        while True:
            inner, inner_wire, _, pos = _next_field(buf, pos, end)
            if inner_wire == 4:
                if inner != field:
                    raise ValueError("mismatched end group")
                break
    else:
        raise ValueError(f"invalid wire type {wire}")
    if pos > end:
        raise ValueError("field overruns its message")
    return field, wire, (start, pos), pos


def _fields(buf: bytes, pos: int, end: int):
    while pos < end:
        field, wire, value, pos = _next_field(buf, pos, end)
        if wire == 4:
            raise ValueError("unexpected end group")
        yield field, wire, value


def _decode_event(buf: bytes) -> tuple[float, int, list[tuple[str, float]]]:
    wall_time, step, values = 0.0, 0, []
    for field, wire, value in _fields(buf, 0, len(buf)):
        if field == 1 and wire == 1:
            wall_time = struct.unpack_from("<d", buf, value[0])[0]
        elif field == 2 and wire == 0:
            step = _int64(value)
        elif field == 5 and wire == 2:
            # Repeated occurrences of a message field merge, so each
            # Summary's values add to the list.
            for f, w, span in _fields(buf, *value):
                if f == 1 and w == 2:
                    scalar = _decode_summary_value(buf, *span)
                    if scalar is not None:
                        values.append(scalar)
    return wall_time, step, values


def _decode_summary_value(buf: bytes, pos: int, end: int):
    tag, kind, simple, tensor = "", None, 0.0, None
    for field, wire, value in _fields(buf, pos, end):
        if field == 1 and wire == 2:
            tag = buf[value[0] : value[1]].decode("utf-8", "replace")
        elif field == 2 and wire == 5:
            kind, simple = 2, struct.unpack_from("<f", buf, value[0])[0]
        elif field == 8 and wire == 2:
            kind, tensor = 8, value
        elif 3 <= field <= 6:
            # Image, histogram, audio...: members of the same oneof as
            # simple_value and tensor, so the last one present wins.
            kind = field
    if kind == 2:
        return tag, simple
    if kind == 8:
        scalar = _tensor_scalar(buf, *tensor)
        if scalar is not None:
            return tag, scalar
    return None


def _tensor_scalar(buf: bytes, pos: int, end: int) -> float | None:
    # Like Guild AI: only float tensors holding exactly one element count.
    dtype, elements, content, lists = 0, 1, None, []
    for field, wire, value in _fields(buf, pos, end):
        if field == 1 and wire == 0:
            dtype = value
        elif field == 2 and wire == 2:
            for f, w, dim in _fields(buf, *value):
                if f == 2 and w == 2:
                    for df, dw, size in _fields(buf, *dim):
                        if df == 1 and dw == 0:
                            elements *= _int64(size)
        elif field == 4 and wire == 2:
            content = value
        elif field in (5, 6):
            lists.append((field, wire, value))
    spec = _FLOAT_DTYPES.get(dtype)
    if spec is None or elements != 1:
        return None
    fmt, size, value_field, unpacked_wire = spec
    # As in TensorFlow, non-empty tensor_content takes precedence.
    if content is not None and content[1] > content[0]:
        start, stop = content
        return struct.unpack_from(fmt, buf, start)[0] if stop - start == size else None
    numbers = []
    for field, wire, (start, stop) in lists:
        if field != value_field:
            continue
        if wire == 2:
            numbers.extend(n for (n,) in struct.iter_unpack(fmt, buf[start:stop]))
        elif wire == unpacked_wire:
            numbers.append(struct.unpack_from(fmt, buf, start)[0])
    return numbers[0] if len(numbers) == 1 else None


def read_events(path: str | os.PathLike):
    """Yield ``(tag, value, step, wall_time)`` for each scalar in an event file.

    Reading stops quietly at a truncated record (the writer may still be
    at work) or at a CRC mismatch.
    """
    yield from scan_events(path)[0]


def scan_events(path: str | os.PathLike, start: int = 0) -> tuple[list, int, bytes]:
    """``(scalars, end, tail)``: `read_events`'s scalars of the records
    from byte `start` (the end of a record read before), the offset
    where the last whole record read ends, from which a later scan of
    the grown file goes on, and that record's last four bytes (its CRC:
    b"" when no record was read), by which that later scan knows the
    file was only appended to."""
    # One read: the file as it is now (a writer may append meanwhile;
    # what it appends is read next time).
    with open(path, "rb") as f:
        if start:
            f.seek(start)
        buf = f.read()
    size = len(buf)
    unpack = struct.unpack_from
    scalars = []
    pos = 0
    while pos + 12 <= size:
        length, header_crc = unpack("<QI", buf, pos)
        if _masked_crc(buf[pos : pos + 8]) != header_crc:
            break
        body = pos + 12
        stop = body + length
        if stop + 4 > size:
            break
        data = buf[body:stop]
        if _masked_crc(data) != unpack("<I", buf, stop)[0]:
            break
        pos = stop + 4
        try:
            event = _plain_event(data) or _decode_event(data)
        except _DECODE_ERRORS:
            continue
        wall_time, step, values = event
        for tag, value in values:
            scalars.append((tag, value, step, wall_time))
    return scalars, start + pos, buf[pos - 4 : pos] if pos else b""


def _plain_event(buf: bytes):
    """`_decode_event` for what scalar logging writes (wall time, step,
    file version, summaries of tagged simple values), or None for
    anything else, which the general decoder reads: most of reading a
    run's scalars is decoding its events."""
    unpack = struct.unpack_from
    end = len(buf)
    pos = 0
    wall_time, step, values = 0.0, 0, []
    while pos < end:
        key = buf[pos]
        if key == 0x09:  # 1: wall_time, double
            if pos + 9 > end:
                return None
            wall_time = unpack("<d", buf, pos + 1)[0]
            pos += 9
        elif key == 0x10:  # 2: step, varint
            step, pos = _read_varint(buf, pos + 1, end)
            step = _int64(step)
        elif key == 0x1A or key == 0x2A:  # 3: file_version, 5: summary
            size, start = _read_varint(buf, pos + 1, end)
            pos = start + size
            if pos > end:
                return None
            if key == 0x2A and not _plain_summary(buf, start, pos, values):
                return None
        else:
            return None
    return wall_time, step, values


def _plain_summary(buf: bytes, pos: int, end: int, values: list) -> bool:
    unpack = struct.unpack_from
    while pos < end:
        if buf[pos] != 0x0A:  # 1: value
            return False
        size, vpos = _read_varint(buf, pos + 1, end)
        pos = vpos + size
        if pos > end:
            return False
        tag, simple = "", None
        while vpos < pos:
            key = buf[vpos]
            if key == 0x0A:  # 1: tag
                tsize, tstart = _read_varint(buf, vpos + 1, pos)
                vpos = tstart + tsize
                if vpos > pos:
                    return False
                tag = buf[tstart:vpos].decode("utf-8", "replace")
            elif key == 0x15:  # 2: simple_value, float
                if vpos + 5 > pos:
                    return False
                simple = unpack("<f", buf, vpos + 1)[0]
                vpos += 5
            else:
                return False
        if simple is None:
            return False
        values.append((tag, simple))
    return True


def read_scalars(dirpath: str | os.PathLike) -> list[tuple[str, float, int, float]]:
    """Return ``(tag, value, step, wall_time)`` for all event files in ``dirpath``.

    Only files named ``events.out.tfevents.*`` directly in ``dirpath`` are
    read, in sorted name order. A missing directory has no scalars.
    """
    try:
        names = sorted(os.listdir(dirpath))
    except (FileNotFoundError, NotADirectoryError):
        return []
    scalars = []
    for name in names:
        if not name.startswith(FILE_PREFIX):
            continue
        path = os.path.join(dirpath, name)
        if not os.path.isfile(path):
            continue
        try:
            scalars.extend(read_events(path))
        except FileNotFoundError:
            # Deleted between listing and opening.
            continue
    return scalars


def last_scalars(dirpath: str | os.PathLike) -> dict[str, tuple[float, int]]:
    """Return ``{tag: (value, step)}`` from each tag's last record in ``dirpath``.

    Last in file and record order, not highest step -- as Guild AI reports.
    """
    last = {}
    for tag, value, step, _wall_time in read_scalars(dirpath):
        last[tag] = (value, step)
    return last
