"""nsqd_sync.wire: frames, commands, message encoding, MPUB bodies and names."""
from __future__ import annotations

import struct

import pytest

from nsqd_sync import wire


# ---------------------------------------------------------------- frames

def test_frame_layout_is_size_type_data_big_endian():
    assert wire.frame(wire.FRAME_TYPE_ERROR, b"E_INVALID x") == struct.pack(">ii", 15, 1) + b"E_INVALID x"
    assert wire.response_frame(b"OK") == b"\x00\x00\x00\x06\x00\x00\x00\x00OK"
    assert wire.error_frame(b"E") == b"\x00\x00\x00\x05\x00\x00\x00\x01E"
    assert wire.OK_FRAME == wire.response_frame(b"OK")
    assert wire.HEARTBEAT_FRAME == wire.response_frame(b"_heartbeat_")
    assert wire.CLOSE_WAIT_FRAME == wire.response_frame(b"CLOSE_WAIT")


def test_constants():
    assert wire.MAGIC_V1 == b"  V1" and wire.MAGIC_V2 == b"  V2"
    assert (wire.FRAME_TYPE_RESPONSE, wire.FRAME_TYPE_ERROR, wire.FRAME_TYPE_MESSAGE) == (0, 1, 2)
    assert wire.MSG_HEADER_LENGTH == 26


@pytest.mark.parametrize("n", [0, 1, 26, 1000])
def test_message_frame_header(n):
    assert wire.message_frame_header(n) == struct.pack(">ii", n + 4, 2)


def test_frame_reader_handles_any_split():
    frames = [(0, b"OK"), (1, b"E_INVALID bad"), (2, b"x" * 300), (0, b"")]
    stream = b"".join(wire.frame(t, d) for t, d in frames)
    for chunk in (1, 2, 3, 7, 8, 9, 64, len(stream)):
        reader = wire.FrameReader()
        got = []
        for i in range(0, len(stream), chunk):
            got.extend(reader.feed(stream[i:i + chunk]))
        assert got == frames, chunk
        assert reader.feed(b"") == []


def test_frame_reader_keeps_a_partial_frame():
    reader = wire.FrameReader()
    data = wire.frame(0, b"hello")
    assert reader.feed(data[:-1]) == []
    assert reader.feed(data[-1:]) == [(0, b"hello")]


@pytest.mark.parametrize("size", [-4, -1, 0, 3, -2**31])
def test_frame_reader_rejects_sizes_below_four(size):
    reader = wire.FrameReader()
    good = wire.frame(0, b"OK")
    with pytest.raises(wire.FrameError):
        reader.feed(good + struct.pack(">ii", size, 0) + b"rest")
    with pytest.raises(wire.FrameError):
        wire.read_frame_header(struct.pack(">ii", size, 0))


def test_frame_reader_returns_frames_before_a_bad_header_on_the_next_feed():
    reader = wire.FrameReader()
    assert reader.feed(wire.frame(0, b"OK") + struct.pack(">i", -4)) == [(0, b"OK")]  # header incomplete
    with pytest.raises(wire.FrameError):
        reader.feed(struct.pack(">i", 0))


def test_smallest_frame_has_size_four():
    assert wire.iter_frames(struct.pack(">ii", 4, 0)) == [(0, b"")]
    assert wire.read_frame_header(struct.pack(">ii", 4, 1)) == (0, 1)


def test_iter_frames():
    data = wire.OK_FRAME + wire.HEARTBEAT_FRAME
    assert list(wire.iter_frames(data)) == [(0, b"OK"), (0, b"_heartbeat_")]


# ---------------------------------------------------------------- messages

def test_encode_decode_message_round_trip():
    mid = b"0123456789abcdef"
    data = wire.encode_message(1_700_000_000_123_456_789, 3, mid, b"body\n\x00")
    assert len(data) == 26 + 6
    assert data[:8] == struct.pack(">q", 1_700_000_000_123_456_789)
    assert data[8:10] == b"\x00\x03"
    assert wire.decode_message(data) == (1_700_000_000_123_456_789, 3, mid, b"body\n\x00")
    assert wire.message_id(data) == mid
    assert wire.message_attempts(data) == 3


def test_decode_message_rejects_short_data():
    with pytest.raises(ValueError):
        wire.decode_message(b"x" * 25)


def test_empty_body_decodes():
    data = wire.encode_message(1, 0, b"f" * 16, b"")
    assert wire.decode_message(data) == (1, 0, b"f" * 16, b"")


@pytest.mark.parametrize("n,packed", [(0, b"\x00\x00"), (1, b"\x00\x01"), (255, b"\x00\xff"),
                                      (256, b"\x01\x00"), (65535, b"\xff\xff"), (70000, b"\xff\xff")])
def test_pack_attempts_saturates(n, packed):
    assert wire.pack_attempts(n) == packed


def test_with_attempts_replaces_only_the_attempts():
    data = wire.encode_message(42, 1, b"a" * 16, b"payload")
    out = wire.with_attempts(data, 300)
    assert wire.decode_message(out) == (42, 300, b"a" * 16, b"payload")
    assert wire.decode_message(data)[1] == 1


# ---------------------------------------------------------------- commands

def test_command_encoding():
    assert wire.command(b"NOP") == b"NOP\n"
    assert wire.command(b"SUB", b"t", b"c") == b"SUB t c\n"
    assert wire.command(b"PUB", b"t", body=b"hi") == b"PUB t\n\x00\x00\x00\x02hi"
    assert wire.command(b"IDENTIFY", body=b"{}") == b"IDENTIFY\n\x00\x00\x00\x02{}"
    assert wire.command(b"DPUB", b"t", b"100", body=b"") == b"DPUB t 100\n\x00\x00\x00\x00"


def test_mpub_body_layout_and_round_trip():
    bodies = [b"a", b"", b"ccc"]
    body = wire.mpub_body(bodies)
    assert body == struct.pack(">i", 3) + b"\x00\x00\x00\x01a" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x03ccc"
    ok = [b"one", b"two\n", bytes(range(256))]
    assert wire.split_mpub_body(wire.mpub_body(ok)) == ok


@pytest.mark.parametrize("body,error", [
    (b"", "MPUB failed to read message count"),
    (b"\x00\x00\x01", "MPUB failed to read message count"),
    (struct.pack(">i", 0), "MPUB invalid message count 0"),
    (struct.pack(">i", -2), "MPUB invalid message count -2"),
    (struct.pack(">i", 1), "MPUB failed to read message(0) body size"),
    (struct.pack(">ii", 2, 1) + b"a", "MPUB failed to read message(1) body size"),
    (struct.pack(">ii", 1, 0), "MPUB invalid message(0) body size 0"),
    (struct.pack(">ii", 1, -5), "MPUB invalid message(0) body size -5"),
    (struct.pack(">ii", 1, 10) + b"short", "MPUB failed to read message body"),
])
def test_split_mpub_body_errors_carry_nsq_text(body, error):
    with pytest.raises(ValueError) as info:
        wire.split_mpub_body(body)
    assert str(info.value) == error


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("name", [
    "t", "a" * 64, "with.dots", "with-dash_and_underscore", "UPPER123",
    "t#ephemeral", "a" * 54 + "#ephemeral",
])
def test_valid_names(name):
    assert wire.is_valid_topic_name(name)
    assert wire.is_valid_channel_name(name)


@pytest.mark.parametrize("name", [
    "", "a" * 65, "a" * 55 + "#ephemeral", "#ephemeral", "a b", "a!b", "a/b", "a:b", "t\u00e9",
    "t#eph", "t#ephemeral#ephemeral", "a#b", "\n", "tab\t",
])
def test_invalid_names(name):
    assert not wire.is_valid_name(name)


def test_is_ephemeral():
    assert wire.is_ephemeral("x#ephemeral")
    assert not wire.is_ephemeral("x")
    assert not wire.is_ephemeral("ephemeral")
