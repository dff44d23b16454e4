import glob
import itertools
import json
import math
import os
import re
import socket
import struct
import tarfile
import time
from pathlib import Path

import pytest

from guild_core import tfevents
from guild_core.tfevents import (
    EventWriter,
    crc32c,
    last_scalars,
    read_events,
    read_scalars,
)

FIXTURES = Path(__file__).parent / "fixtures"


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# Hand-rolled protobuf encoding, independent of the module's encoder, so
# the decoder is checked against bytes it didn't produce itself.


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def event(*fields, step=None, wall_time=None):
    out = b""
    if wall_time is not None:
        out += key(1, 1) + struct.pack("<d", wall_time)
    if step is not None:
        out += key(2, 0) + varint(step)
    return out + ld(5, b"".join(ld(1, v) for v in fields))


def simple(tag, value):
    return ld(1, tag.encode()) + key(2, 5) + struct.pack("<f", value)


def tensor_value(tag, tensor):
    return ld(1, tag.encode()) + ld(8, tensor)


def shape(*dims):
    return ld(2, b"".join(ld(2, key(1, 0) + varint(d)) for d in dims))


def frame(data):
    header = struct.pack("<Q", len(data))

    def masked(b):
        c = crc32c(b)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    return header + struct.pack("<I", masked(header)) + data + struct.pack("<I", masked(data))


def write_records(path, *events):
    path.write_bytes(b"".join(frame(e) for e in events))
    return path


def test_crc32c_known_vector():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283


def test_round_trip(tmp_path):
    records = [
        ("loss", 0.25, 0, 1700000000.5),
        ("acc", 0.03, 1, 1700000001.25),
        ("loss", -1.5, 2, 1700000002.0),
        ("big", 1e30, 2**40, 1700000003.0),
        ("tiny", -1e-30, 3, 1700000004.0),
        ("neg_step", 7.0, -1, 1700000005.0),
        ("unicodé/tag", 42, 5, 1700000006.0),
    ]
    with EventWriter(tmp_path) as w:
        for tag, value, step, wall_time in records:
            w.add_scalar(tag, value, step, wall_time=wall_time)
    expected = [(tag, f32(v), step, wt) for tag, v, step, wt in records]
    assert list(read_events(w.path)) == expected
    assert read_scalars(tmp_path) == expected
    assert read_scalars(tmp_path)[1][1] == 0.029999999329447746


def test_default_wall_time_and_special_values(tmp_path):
    with EventWriter(tmp_path) as w:
        w.add_scalar("nan", float("nan"), 1)
        w.add_scalar("inf", 1e40, 1)  # beyond float32
        w.add_scalar("-inf", -1e40, 1)
    (nan, inf, neg_inf) = read_scalars(tmp_path)
    assert math.isnan(nan[1])
    assert inf[1] == float("inf") and neg_inf[1] == float("-inf")
    assert abs(nan[3] - time.time()) < 60


def test_last_scalars_last_record_wins(tmp_path):
    with EventWriter(tmp_path) as w:
        w.add_scalar("loss", 0.5, 10)
        w.add_scalar("acc", 0.1, 10)
        w.add_scalar("loss", 0.4, 20)
        w.add_scalar("loss", 0.9, 5)  # lower step, still the last record
    assert last_scalars(tmp_path) == {"loss": (f32(0.9), 5), "acc": (f32(0.1), 10)}


def test_files_read_in_sorted_name_order(tmp_path):
    write_records(tmp_path / "events.out.tfevents.2.h.1.0", event(simple("x", 2.0), step=2))
    write_records(tmp_path / "events.out.tfevents.1.h.1.0", event(simple("x", 1.0), step=1))
    write_records(tmp_path / "events.out.tfevents.3.h.1.0", event(simple("x", 3.0), step=0))
    (tmp_path / "other.tfevents.4").write_bytes(frame(event(simple("x", 4.0))))
    sub = tmp_path / "sub"
    sub.mkdir()
    write_records(sub / "events.out.tfevents.5.h.1.0", event(simple("x", 5.0)))
    (tmp_path / "events.out.tfevents.6.dir").mkdir()
    assert [r[1] for r in read_scalars(tmp_path)] == [1.0, 2.0, 3.0]
    assert last_scalars(tmp_path) == {"x": (3.0, 0)}


def test_missing_dir(tmp_path):
    assert read_scalars(tmp_path / "missing") == []
    assert last_scalars(tmp_path / "missing") == {}


def test_writer_file_name_and_version_record(tmp_path):
    w = EventWriter(tmp_path / "logs", filename_suffix=".v2")
    assert w.path is None
    w.add_scalar("x", 1.0, 0)
    name = os.path.basename(w.path)
    pattern = r"events\.out\.tfevents\.\d+\.%s\.%d\.\d+\.v2" % (
        re.escape(socket.gethostname()),
        os.getpid(),
    )
    assert re.fullmatch(pattern, name)
    w.close()
    data = Path(w.path).read_bytes()
    (length,) = struct.unpack_from("<Q", data)
    first = data[12 : 12 + length]
    assert first.startswith(b"\x09")  # wall_time
    assert first.endswith(ld(3, b"brain.Event:2"))
    assert list(read_events(w.path)) and len(os.listdir(tmp_path / "logs")) == 1


def test_writer_does_not_overwrite(tmp_path, monkeypatch):
    monkeypatch.setattr(tfevents, "_file_counter", itertools.count(5))
    monkeypatch.setattr(tfevents.time, "time", lambda: 1700000000.0)
    prefix = f"events.out.tfevents.1700000000.{socket.gethostname()}.{os.getpid()}."
    blocker = tmp_path / (prefix + "5")
    blocker.write_bytes(b"keep")
    with EventWriter(tmp_path) as w1, EventWriter(tmp_path) as w2:
        w1.add_scalar("a", 1.0, 0)
        w2.add_scalar("b", 2.0, 0)
    assert blocker.read_bytes() == b"keep"
    assert os.path.basename(w1.path) == prefix + "6"
    assert os.path.basename(w2.path) == prefix + "7"
    # The blocker isn't an event file: reading it stops at once.
    assert last_scalars(tmp_path) == {"a": (1.0, 0), "b": (2.0, 0)}


def test_writer_is_lazy_and_closes(tmp_path):
    with EventWriter(tmp_path / "logs") as w:
        pass
    assert not (tmp_path / "logs").exists()
    with pytest.raises(ValueError):
        w.add_scalar("x", 1.0, 0)
    w.close()  # idempotent


def test_live_reader_sees_flushed_scalars(tmp_path):
    w = EventWriter(tmp_path)
    w.add_scalar("x", 1.0, 1)
    assert last_scalars(tmp_path) == {"x": (1.0, 1)}
    w.add_scalar("x", 2.0, 2)
    w.flush()
    assert last_scalars(tmp_path) == {"x": (2.0, 2)}
    w.close()


def _three_scalar_file(tmp_path):
    with EventWriter(tmp_path) as w:
        for step in range(3):
            w.add_scalar("x", float(step), step, wall_time=1.0)
    data = Path(w.path).read_bytes()
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 12 + struct.unpack_from("<Q", data, pos)[0] + 4
    assert pos == len(data) and len(offsets) == 4  # version + 3 scalars
    return Path(w.path), data, offsets[-1]


@pytest.mark.parametrize("cut", [1, 8, 11, 12, 13, -5, -4, -1])
def test_truncated_last_record(tmp_path, cut):
    path, data, last = _three_scalar_file(tmp_path)
    end = last + cut if cut > 0 else len(data) + cut
    path.write_bytes(data[:end])
    assert [(r[1], r[2]) for r in read_events(path)] == [(0.0, 0), (1.0, 1)]


def test_crc_mismatch_stops_file(tmp_path):
    path, data, last = _three_scalar_file(tmp_path)
    bad_data = bytearray(data)
    bad_data[last + 14] ^= 0x01
    path.write_bytes(bytes(bad_data))
    assert [r[2] for r in read_events(path)] == [0, 1]
    bad_len = bytearray(data)
    bad_len[last + 9] ^= 0x01  # length CRC
    path.write_bytes(bytes(bad_len))
    assert [r[2] for r in read_events(path)] == [0, 1]
    # A bad file doesn't stop the next one being read.
    write_records(tmp_path / "events.out.tfevents.9999999999.h.1.0", event(simple("y", 1.0)))
    assert last_scalars(tmp_path) == {"x": (1.0, 1), "y": (1.0, 0)}


def test_huge_length_with_valid_crc(tmp_path):
    header = struct.pack("<Q", 1 << 60)
    c = crc32c(header)
    masked = (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    path = tmp_path / "events.out.tfevents.1"
    path.write_bytes(frame(event(simple("x", 1.0))) + header + struct.pack("<I", masked))
    assert list(read_events(path)) == [("x", 1.0, 0, 0.0)]


def test_tensor_values_and_unknown_fields(tmp_path):
    unknown = (
        key(15, 0) + varint(2**63)
        + key(16, 1) + b"\x00" * 8
        + ld(17, b"junk")
        + key(18, 5) + b"\x00" * 4
        + key(19, 3) + key(1, 0) + varint(1) + ld(2, b"x") + key(19, 4)
    )
    path = write_records(
        tmp_path / "events.out.tfevents.1",
        # Summary with unknown fields everywhere; negative step.
        unknown
        + event(
            ld(7, b"node") + simple("a", 1.5) + unknown,
            step=-3,
            wall_time=12.5,
        )
        + unknown,
        event(
            # DT_FLOAT, packed float_val, shape []
            tensor_value("t_packed", key(1, 0) + varint(1) + shape() + ld(5, struct.pack("<f", 0.1))),
            # DT_FLOAT, unpacked float_val, shape [1, 1]
            tensor_value("t_unpacked", key(1, 0) + varint(1) + shape(1, 1) + key(5, 5) + struct.pack("<f", 2.5)),
            # DT_DOUBLE in tensor_content
            tensor_value("t_content", key(1, 0) + varint(2) + ld(4, struct.pack("<d", 0.1))),
            # DT_DOUBLE, packed double_val
            tensor_value("t_double", key(1, 0) + varint(2) + ld(6, struct.pack("<d", -3.25))),
            # Not scalars: several elements, int and string dtypes, an image.
            tensor_value("t_vec", key(1, 0) + varint(1) + shape(2) + ld(5, struct.pack("<ff", 1, 2))),
            tensor_value("t_int", key(1, 0) + varint(3) + key(7, 0) + varint(4)),
            tensor_value("t_str", key(1, 0) + varint(7) + ld(8, b"hello")),
            ld(1, b"img") + ld(4, b"\x08\x01"),
            step=7,
        ),
        b"\xff\xff",  # not a valid Event: skipped, reading carries on
        event(simple("after", 3.0), step=8),
    )
    assert list(read_events(path)) == [
        ("a", 1.5, -3, 12.5),
        ("t_packed", f32(0.1), 7, 0.0),
        ("t_unpacked", 2.5, 7, 0.0),
        ("t_content", 0.1, 7, 0.0),
        ("t_double", -3.25, 7, 0.0),
        ("after", 3.0, 8, 0.0),
    ]


def _extract(tar_path, dest):
    with tarfile.open(tar_path) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)


def test_reads_guildai_09_event_files(tmp_path):
    _extract(FIXTURES / "guildai-0.9-home.tar.gz", tmp_path)
    expected = json.loads((FIXTURES / "guildai-0.9-expected.json").read_text())
    checked = 0
    for run in expected["runs"]:
        events_dir = tmp_path / ".guild" / "runs" / run["id"] / ".guild"
        if not glob.glob(str(events_dir / "events.out.tfevents.*")):
            continue
        want = {
            tag: (value, step)
            for tag, (value, step) in run["scalars"].items()
            if "#" not in tag
        }
        assert last_scalars(events_dir) == want, run["id"]
        checked += 1
    assert checked >= 8
