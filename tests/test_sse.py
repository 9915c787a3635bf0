"""SSE decoding (incremental, UTF-8 safe, all line endings) and framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.sse import SSEDecoder, SSEEvent, encode


def decode_all(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)]
    return events + decoder.flush()


def test_openai_style_data_only_events() -> None:
    events = decode_all(b'data: {"a":1}\n\ndata: [DONE]\n\n')
    assert events == [SSEEvent(None, '{"a":1}'), SSEEvent(None, "[DONE]")]


def test_anthropic_style_named_events() -> None:
    events = decode_all(b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {}\n\n')
    assert events == [SSEEvent("message_start", '{"type":"message_start"}'), SSEEvent("ping", "{}")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    raw = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + eol
    assert decode_all(raw) == [SSEEvent("a", "1"), SSEEvent(None, "2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A CR at the end of one read and its LF at the start of the next must not make a blank line.
    assert decode_all(b"data: 1\r", b"\ndata: 2\r\n\r\n") == [SSEEvent(None, "1\n2")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert decode_all(b"data: first\ndata: second\ndata:\n\n") == [SSEEvent(None, "first\nsecond\n")]


def test_comments_are_reported_in_order() -> None:
    events = decode_all(b": keep-alive\n\ndata: x\n\n:OPENROUTER PROCESSING\n\n")
    assert events == [
        SSEEvent(None, "keep-alive", comment=True),
        SSEEvent(None, "x"),
        SSEEvent(None, "OPENROUTER PROCESSING", comment=True),
    ]


def test_field_value_keeps_all_but_one_leading_space() -> None:
    assert decode_all(b"data:  two spaces\n\ndata:none\n\n") == [SSEEvent(None, " two spaces"), SSEEvent(None, "none")]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    assert decode_all(b"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n") == [SSEEvent(None, "x")]


def test_blank_lines_without_fields_dispatch_nothing() -> None:
    assert decode_all(b"\n\n\r\n\n") == []


def test_leading_bom_is_ignored() -> None:
    assert decode_all(b"\xef\xbb\xbfdata: x\n\n") == [SSEEvent(None, "x")]


def test_utf8_character_split_across_chunks() -> None:
    raw = 'data: {"text":"héllo 世界 🚀"}\n\n'.encode()
    cut = raw.index("🚀".encode()) + 2  # inside the 4-byte emoji
    for split in (raw.index("é".encode()) + 1, raw.index("世".encode()) + 1, cut):
        assert decode_all(raw[:split], raw[split:]) == [SSEEvent(None, '{"text":"héllo 世界 🚀"}')]


def test_byte_at_a_time() -> None:
    raw = 'event: e\r\ndata: añb\r\n\r\n: c\r\n'.encode()
    assert decode_all(*[raw[i : i + 1] for i in range(len(raw))]) == [
        SSEEvent("e", "añb"),
        SSEEvent(None, "c", comment=True),
    ]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode_all(b"data: a\xffb\n\n") == [SSEEvent(None, "a\ufffdb")]


def test_flush_delivers_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.flush() == [SSEEvent(None, "[DONE]")]
    assert decoder.flush() == []


def test_encode_named_and_unnamed() -> None:
    assert encode("ping", b'{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode(None, "[DONE]") == b"data: [DONE]\n\n"


def test_encode_splits_multi_line_data() -> None:
    assert encode(None, "a\nb\r\nc") == b"data: a\ndata: b\ndata: c\n\n"


_fields = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)


@given(
    events=st.lists(
        st.tuples(st.none() | _fields.filter(lambda s: s != ""), st.text(max_size=40).map(lambda s: s.replace("\r", ""))),
        max_size=6,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_encode_decode_round_trip_under_any_chunking(events: list[tuple[str | None, str]], cuts: list[int]) -> None:
    raw = b"".join(encode(name, data) for name, data in events)
    points = sorted({min(c, len(raw)) for c in cuts})
    pieces = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode_all(*pieces) == [SSEEvent(name, data) for name, data in events]
