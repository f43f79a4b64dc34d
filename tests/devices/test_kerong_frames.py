"""Kerong KR-CU16 frame codec and incremental parser (pure functions, no I/O)."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.drivers.kerong import (
    CMD_STATUS,
    CMD_STATUS_REPLY,
    CMD_UNLOCK,
    MAX_FRAME_LEN,
    STX,
    Frame,
    FrameParser,
    checksum,
    decode_status,
    encode_command,
    encode_status_reply,
)

STATUS_B0 = bytes.fromhex("02 00 30 03 35")
UNLOCK_B0_L1 = bytes.fromhex("02 00 31 03 36")


def feed_all(parser: FrameParser, *chunks: bytes) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(parser.feed(chunk))
    return frames


# -- encoding ---------------------------------------------------------------------------------


def test_checksum_is_low_byte_of_sum():
    assert checksum(b"") == 0
    assert checksum(bytes.fromhex("02 00 30 03")) == 0x35
    assert checksum(bytes([0xFF, 0xFF, 0x03])) == 0x01


def test_encode_status_command_board0():
    assert encode_command(0, 0, CMD_STATUS) == STATUS_B0


def test_encode_unlock_lock1_board0():
    assert encode_command(0, 0, CMD_UNLOCK) == UNLOCK_B0_L1


def test_encode_command_addr_packs_board_and_lock_index():
    frame = encode_command(3, 11, CMD_UNLOCK)
    assert frame[:4] == bytes([0x02, 0x3B, 0x31, 0x03])
    assert frame[4] == (0x02 + 0x3B + 0x31 + 0x03) & 0xFF
    assert encode_command(15, 15, CMD_STATUS) == bytes([0x02, 0xFF, 0x30, 0x03, 0x34])


@pytest.mark.parametrize(("board", "lock_index"), [(16, 0), (-1, 0), (0, 16), (0, -1)])
def test_encode_command_rejects_out_of_range(board, lock_index):
    with pytest.raises(ValueError, match="0-15"):
        encode_command(board, lock_index, CMD_STATUS)


def test_encode_status_reply_layout():
    # locks 1 and 9 closed, lock 16 holds an item.
    reply = encode_status_reply(0x12, hooks=0x0101, irs=0x8000)
    assert reply[:8] == bytes([0x02, 0x12, 0x35, 0x01, 0x01, 0x00, 0x80, 0x03])
    assert reply[8] == checksum(reply[:8])
    assert len(reply) == 9


def test_encode_status_reply_all_closed_empty():
    assert encode_status_reply(0x00, 0xFFFF, 0x0000) == bytes.fromhex("02 00 35 ff ff 00 00 03 38")


def test_decode_status_applies_polarity():
    frame = FrameParser().feed(encode_status_reply(0x20, hooks=0b101, irs=0b10))[0]
    normal = decode_status(frame)
    assert normal.board == 2
    assert normal.door_closed[:4] == (True, False, True, False)
    assert normal.present[:3] == (False, True, False)
    inverted = decode_status(frame, invert_hook=True)
    assert inverted.door_closed[:4] == (False, True, False, True)
    assert inverted.present == normal.present


# -- parser -----------------------------------------------------------------------------------


def test_parser_returns_command_and_status_frames():
    reply = encode_status_reply(0x00, 0xFFFF, 0x0001)
    frames = FrameParser().feed(STATUS_B0 + reply + UNLOCK_B0_L1)
    assert [f.raw for f in frames] == [STATUS_B0, reply, UNLOCK_B0_L1]
    assert frames[0] == Frame(addr=0, cmd=CMD_STATUS, payload=b"", raw=STATUS_B0)
    assert frames[1].cmd == CMD_STATUS_REPLY
    assert frames[1].payload == bytes([0xFF, 0xFF, 0x01, 0x00])


def test_parser_frame_split_byte_by_byte():
    reply = encode_status_reply(0x35, 0x1234, 0x00FF)
    parser = FrameParser()
    frames = feed_all(parser, *(bytes([b]) for b in reply))
    assert [f.raw for f in frames] == [reply]
    assert frames[0].board == 3
    assert frames[0].lock_index == 5
    assert parser.buffered == 0
    assert parser.discarded == 0


def test_parser_keeps_partial_frame_across_feeds():
    parser = FrameParser()
    assert parser.feed(UNLOCK_B0_L1[:2]) == []
    assert parser.buffered == 2
    assert parser.feed(UNLOCK_B0_L1[2:] + STATUS_B0[:4]) == [
        Frame(addr=0, cmd=CMD_UNLOCK, payload=b"", raw=UNLOCK_B0_L1)
    ]
    assert [f.raw for f in parser.feed(STATUS_B0[4:])] == [STATUS_B0]


def test_parser_skips_garbage_before_and_between_frames():
    parser = FrameParser()
    frames = parser.feed(b"\xff\x00noise" + STATUS_B0 + b"\x03\x03" + UNLOCK_B0_L1 + b"tail")
    assert [f.raw for f in frames] == [STATUS_B0, UNLOCK_B0_L1]
    assert parser.discarded == len(b"\xff\x00noise") + 2 + len(b"tail")
    assert parser.buffered == 0


def test_parser_drops_bad_sum_and_resyncs_on_next_frame():
    bad = encode_status_reply(0x00, 0x0000, 0x0000)[:-1] + b"\x00"
    good = encode_status_reply(0x00, 0xFFFF, 0x0000)
    parser = FrameParser()
    assert [f.raw for f in parser.feed(bad + good)] == [good]
    assert parser.discarded == len(bad)


def test_parser_drops_bad_etx():
    bad = bytearray(STATUS_B0)
    bad[3] = 0x04
    bad[4] = checksum(bytes(bad[:4]))
    parser = FrameParser()
    assert [f.raw for f in parser.feed(bytes(bad) + UNLOCK_B0_L1)] == [UNLOCK_B0_L1]


def test_parser_resync_finds_frame_inside_rejected_candidate():
    # A truncated status frame whose 9-byte window swallows the start of a real frame: the
    # parser must restart right after the bad STX, not after the whole window.
    parser = FrameParser()
    frames = parser.feed(b"\x02\x00\x35\xff" + UNLOCK_B0_L1)
    assert [f.raw for f in frames] == [UNLOCK_B0_L1]
    assert parser.discarded == 4


def test_parser_unknown_cmd_is_not_a_frame_start():
    parser = FrameParser()
    fake = bytes([0x02, 0x00, 0x99, 0x03, checksum(bytes([0x02, 0x00, 0x99, 0x03]))])
    assert [f.raw for f in parser.feed(fake + STATUS_B0)] == [STATUS_B0]
    assert parser.discarded == len(fake)


def test_parser_waits_for_cmd_byte_before_deciding():
    parser = FrameParser()
    assert parser.feed(b"\x02") == []
    assert parser.feed(b"\x00") == []
    assert parser.buffered == 2
    assert [f.raw for f in parser.feed(STATUS_B0[2:])] == [STATUS_B0]


def test_parser_addr_and_payload_may_contain_stx_and_etx():
    reply = encode_status_reply(0x02, hooks=0x0302, irs=0x0203)
    assert [f.raw for f in FrameParser().feed(b"\x03" + reply)] == [reply]


def test_parser_reset_drops_partial_frame():
    parser = FrameParser()
    parser.feed(STATUS_B0[:3])
    parser.reset()
    assert parser.buffered == 0
    assert parser.feed(STATUS_B0[3:]) == []


# -- property-based ---------------------------------------------------------------------------

valid_frames = st.one_of(
    st.builds(
        encode_command,
        st.integers(0, 15),
        st.integers(0, 15),
        st.sampled_from([CMD_STATUS, CMD_UNLOCK]),
    ),
    st.builds(
        encode_status_reply,
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
    ),
)
# Without STX no run of garbage can start a frame, so the only frames in the stream are ours.
garbage = st.binary(max_size=20).map(lambda b: b.replace(bytes([STX]), b""))


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(garbage, valid_frames), max_size=8), garbage, st.data())
def test_parser_returns_exactly_the_valid_frames_in_order(pairs, trailing, data):
    stream = b"".join(g + f for g, f in pairs) + trailing
    parser = FrameParser()
    frames = feed_all(parser, *data.draw(chunked(stream)))
    assert [f.raw for f in frames] == [f for _, f in pairs]
    assert parser.discarded == sum(len(g) for g, _ in pairs) + len(trailing)
    assert parser.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=16))
def test_parser_never_raises_and_buffer_stays_bounded(chunks):
    parser = FrameParser()
    total = 0
    for chunk in chunks:
        for frame in parser.feed(chunk):
            assert len(frame.raw) in (5, 9)
            total += len(frame.raw)
        assert parser.buffered < MAX_FRAME_LEN
    assert total + parser.discarded + parser.buffered == sum(len(c) for c in chunks)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), valid_frames)
def test_parser_resyncs_after_any_noise_that_ends_without_stx(noise, frame):
    # Whatever precedes it, a frame after STX-free filler at least MAX_FRAME_LEN long is found:
    # any pending candidate is rejected once the filler fills its window.
    parser = FrameParser()
    parser.feed(noise + b"\x00" * MAX_FRAME_LEN)
    assert [f.raw for f in parser.feed(frame)] == [frame]
