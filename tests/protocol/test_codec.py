"""Canonical msgpack: one value, one byte string; untrusted bytes fail only with DecodeError."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from estafet.protocol import codec
from estafet.protocol.codec import Limits, decode, encode
from estafet.protocol.errors import DecodeError

SETTINGS = settings(max_examples=200, deadline=None)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)


def raw(obj: Any) -> bytes:
    """msgpack's own encoding, for building inputs by hand."""
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def fixmap(*pairs: tuple[bytes, bytes]) -> bytes:
    """A fixmap from already-encoded key and value bytes, in the order given."""
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


# --- encoding rules ----------------------------------------------------------------------


def test_map_keys_sorted_by_utf8_bytes_whatever_the_insertion_order() -> None:
    a = encode({"b": 1, "a": 2, "Z": 3, "é": 4, "aa": 5})
    b = encode({"é": 4, "aa": 5, "a": 2, "Z": 3, "b": 1})
    assert a == b
    assert list(decode(a)) == ["Z", "a", "aa", "b", "é"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\xcc\x80"),
        (256, b"\xcd\x01\x00"),
        (-1, b"\xff"),
        (-32, b"\xe0"),
        (-33, b"\xd0\xdf"),
        (2**64 - 1, b"\xcf" + b"\xff" * 8),
        (-(2**63), b"\xd3\x80" + b"\x00" * 7),
        ("a", b"\xa1a"),
        (b"a", b"\xc4\x01a"),
        (None, b"\xc0"),
        (True, b"\xc3"),
        ((1, 2), b"\x92\x01\x02"),
        ({"a": [1, b""]}, b"\x81\xa1a\x92\x01\xc4\x00"),
    ],
)
def test_encoding_is_msgpack_shortest_form(value: Any, expected: bytes) -> None:
    assert encode(value) == expected
    assert decode(expected) == (list(value) if isinstance(value, tuple) else value)


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        {"a": 0.0},
        [float("nan")],
        2**64,
        -(2**63) - 1,
        {1: "int key"},
        {b"k": "bin key"},
        {"nested": {(1, 2): 3}},
        {1, 2},
        bytearray(b"x"),
        object(),
        "\ud800",
        {"\ud800": 1},
    ],
    ids=repr,
)
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(DecodeError):
        encode(value)


@SETTINGS
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), st.integers(0, 9), max_size=10))
def test_insertion_order_never_matters(d: dict[str, int]) -> None:
    assert encode(d) == encode(dict(reversed(list(d.items()))))


# --- untrusted bytes ----------------------------------------------------------------------


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data  # whatever is accepted is canonical


@SETTINGS
@given(values, st.data())
def test_mutated_encodings_only_raise_decode_error(value: Any, data: st.DataObject) -> None:
    enc = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(enc) - 1))
        enc[i] = data.draw(st.integers(0, 255))
    try:
        got = decode(bytes(enc))
    except DecodeError:
        return
    assert encode(got) == bytes(enc)


@pytest.mark.parametrize("data", [b"", "text", 5, None], ids=repr)
def test_empty_or_non_bytes_input_is_refused(data: Any) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_bytearray_and_memoryview_inputs_are_accepted() -> None:
    assert decode(bytearray(b"\x01")) == 1
    assert decode(memoryview(b"\xa1a")) == "a"


# --- non-canonical encodings of the same content ----------------------------------------------

NON_CANONICAL = {
    "uint16 1": b"\xcd\x00\x01",
    "uint8 1": b"\xcc\x01",
    "uint32 1": b"\xce\x00\x00\x00\x01",
    "uint64 1": b"\xcf" + (1).to_bytes(8, "big"),
    "int8 5": b"\xd0\x05",
    "int8 -1": b"\xd0\xff",
    "int8 -32": b"\xd0\xe0",
    "int16 -33": b"\xd1\xff\xdf",
    "uint16 200": b"\xcd\x00\xc8",
    "str8 short": b"\xd9\x01a",
    "str16 short": b"\xda\x00\x01a",
    "bin16 short": b"\xc5\x00\x01a",
    "array16 short": b"\xdc\x00\x01\x01",
    "map16 short": b"\xde\x00\x01\xa1a\x01",
    "unsorted keys": fixmap((b"\xa1b", b"\x01"), (b"\xa1a", b"\x02")),
    "unsorted by bytes": fixmap((b"\xa1a", b"\x01"), (b"\xa1Z", b"\x02")),
    "duplicate keys": fixmap((b"\xa1a", b"\x01"), (b"\xa1a", b"\x01")),
    "duplicate keys, values differ": fixmap((b"\xa1a", b"\x01"), (b"\xa1a", b"\x02")),
    "int key": fixmap((b"\x01", b"\x01")),
    "bin key": fixmap((b"\xc4\x01a", b"\x01")),
    "nil key": fixmap((b"\xc0", b"\x01")),
    "array key": fixmap((b"\x91\x01", b"\x01")),
    "float32": b"\xca" + struct.pack(">f", 1.0),
    "float64": b"\xcb" + struct.pack(">d", 1.0),
    "nested float": b"\x91\xcb" + struct.pack(">d", 0.5),
    "fixext1": b"\xd4\x01\x00",
    "ext8 empty": b"\xc7\x00\x05",
    "ext8": b"\xc7\x01\x05\x00",
    "timestamp32": b"\xd6\xff" + (0).to_bytes(4, "big"),
    "trailing byte": b"\x01\x01",
    "truncated str": b"\xa3ab",
    "invalid utf-8": b"\xa2\xc3\x28",
    "surrogate in utf-8": b"\xa3\xed\xa0\x80",
    "reserved 0xc1": b"\xc1",
}


@pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
def test_non_canonical_encodings_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\xcc\x80", 128),
        (b"\xd0\xdf", -33),
        (b"\xd9\x20" + b"a" * 32, "a" * 32),
        (b"\xc4\x01a", b"a"),
        (fixmap((b"\xa1Z", b"\x01"), (b"\xa1a", b"\x02")), {"Z": 1, "a": 2}),
    ],
)
def test_canonical_neighbours_are_accepted(data: bytes, value: Any) -> None:
    assert decode(data) == value


def test_str_and_bin_stay_apart() -> None:
    assert decode(raw("abc")) == "abc"
    assert decode(raw(b"abc")) == b"abc"
    old_style = msgpack.packb(b"abc", use_bin_type=False)  # bytes packed as a raw str
    assert decode(old_style) == "abc"  # decodes as text, so a bytes field rejects it


# --- limits -----------------------------------------------------------------------------------

SMALL = Limits(max_bytes=200, max_str=5, max_bin=5, max_array=3, max_map=2)


@pytest.mark.parametrize(
    ("ok", "too_big"),
    [
        ("a" * 5, "a" * 6),
        (b"b" * 5, b"b" * 6),
        ([0] * 3, [0] * 4),
        ({"a": 0, "b": 0}, {"a": 0, "b": 0, "c": 0}),
        ([[0] * 3], [[0] * 4]),
        ({"k": ["a" * 5]}, {"k": ["a" * 6]}),
    ],
    ids=["str", "bin", "array", "map", "nested array", "nested str"],
)
def test_size_limits_both_sides(ok: Any, too_big: Any) -> None:
    assert decode(encode(ok), SMALL) == ok
    with pytest.raises(DecodeError):
        decode(encode(too_big), SMALL)


def test_message_size_limit_both_sides() -> None:
    data = encode([0] * 197)  # 3 header bytes + 197
    assert len(data) == 200
    assert decode(data, Limits(max_bytes=200)) == [0] * 197
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(data, Limits(max_bytes=199))


def test_default_limits_refuse_an_oversized_message() -> None:
    big = encode(b"x" * codec.OBJECT_LIMITS.max_bin)
    assert len(big) > codec.OBJECT_LIMITS.max_bytes
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(big)
    assert decode(big, codec.MANIFEST_LIMITS) == b"x" * codec.OBJECT_LIMITS.max_bin


def test_hostile_length_headers_fail_fast() -> None:
    for header in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff"):
        with pytest.raises(DecodeError):
            decode(header + b"\x00" * 16)


def nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit_both_sides() -> None:
    assert decode(encode(nest(32))) == nest(32)
    with pytest.raises(DecodeError, match="nested too deeply"):
        encode(nest(33))
    with pytest.raises(DecodeError):
        decode(raw(nest(33)))


def test_deep_nesting_beyond_msgpack_stack_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x91" * 60_000 + b"\xc0")
    with pytest.raises(DecodeError):
        decode(b"\x81\xa1a" * 20_000 + b"\xc0")


# --- element budget (issue 11, item 4) ------------------------------------------------------

API_LIKE = Limits(max_bytes=8 << 20, max_bin=8 << 20, max_array=2048, max_elements=65_536)


def hostile_nested_arrays(size: int = 4 << 20) -> bytes:
    """Blocks of 1,024 rows of 1,024 empty arrays: every array within the per-array limit."""
    row = b"\xdc\x04\x00" + b"\x90" * 1024
    block = b"\xdc\x04\x00" + row * 1024
    count = round(size / len(block))
    return bytes([0x90 | count]) + block * count


def test_hostile_4mib_of_nested_empty_arrays_is_refused_by_the_budget() -> None:
    body = hostile_nested_arrays()
    assert len(body) > 4_000_000
    codec.scan(body, Limits(max_bytes=8 << 20, max_array=2048, max_elements=5_000_000))  # valid
    with pytest.raises(codec.BudgetError) as info:
        decode(body, API_LIKE)
    assert info.value.elements == API_LIKE.max_elements + 1


def test_budget_error_is_a_decode_error_so_every_caller_already_refuses_it() -> None:
    assert issubclass(codec.BudgetError, DecodeError)


def test_element_budget_both_sides() -> None:
    value = list(range(99))  # 1 array + 99 ints = 100 elements
    assert codec.scan(encode(value)) == 100
    assert decode(encode(value), Limits(max_elements=100)) == value
    with pytest.raises(codec.BudgetError):
        decode(encode(value), Limits(max_elements=99))


def test_map_keys_count_against_the_budget() -> None:
    value = {str(i): None for i in range(10)}  # 1 map + 10 keys + 10 values
    assert codec.scan(encode(value)) == 21
    with pytest.raises(codec.BudgetError):
        decode(encode(value), Limits(max_elements=20))


def test_depth_budget_both_sides() -> None:
    assert decode(encode(nest(4)), Limits(max_depth=4)) == nest(4)
    with pytest.raises(codec.BudgetError) as info:
        decode(encode(nest(5)), Limits(max_depth=4))
    assert info.value.depth == 5


def test_container_promising_more_elements_than_bytes_is_refused_before_decoding() -> None:
    with pytest.raises(DecodeError, match="elements in"):
        codec.scan(b"\xdd\x00\x10\x00\x00" + b"\x90" * 10)


def test_strings_and_bins_are_skipped_by_length_not_walked() -> None:
    body = encode({"a": b"\x90" * 100_000, "b": "\x90" * 1000})
    assert codec.scan(body, Limits(max_bytes=1 << 20, max_bin=1 << 20)) == 5


@given(values)
@SETTINGS
def test_scan_counts_exactly_the_elements_of_any_value(value: Any) -> None:
    def count(v: Any) -> int:
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        if isinstance(v, dict):
            return 1 + sum(1 + count(x) for x in v.values())
        return 1

    data = encode(value)
    assert codec.scan(data, Limits(max_elements=10**6)) == count(value)
    n = count(value)
    assert decode(data, Limits(max_elements=n)) == value
    with pytest.raises(codec.BudgetError):
        decode(data, Limits(max_elements=n - 1))


@given(st.binary(max_size=200))
@SETTINGS
def test_scan_of_random_bytes_raises_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        codec.scan(data, Limits(max_elements=50, max_depth=5))


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1.5},
        {"a": [1, {"b": 0.25}]},
        [{"k": 2.0}],
    ],
)
def test_floats_are_refused_wherever_they_sit(value: Any) -> None:
    """The canonical check re-packs the decoded value with msgpack, which keeps a float64 as
    it came: floats must still be refused, in maps and lists at any depth."""
    data = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(DecodeError):
        decode(data)


def test_keys_out_of_order_and_duplicates_are_refused_by_the_decoder() -> None:
    unsorted = b"\x82\xa1b\x01\xa1a\x02"  # {"b": 1, "a": 2}
    dup = b"\x82\xa1a\x01\xa1a\x02"
    with pytest.raises(DecodeError, match="out of order"):
        decode(unsorted)
    with pytest.raises(DecodeError, match="duplicate"):
        decode(dup)
    assert decode(b"\x82\xa1a\x02\xa1b\x01") == {"a": 2, "b": 1}


def test_small_deep_input_is_refused_without_the_scan_being_skipped() -> None:
    """The budget scan is skipped only when the input cannot exceed the budget; a short input
    nested 33 deep has 33 container bytes, so it is still scanned and refused."""
    with pytest.raises(codec.BudgetError):
        decode(b"\x91" * 33 + b"\x00")
    assert decode(b"\x91" * 32 + b"\x00") == nest(32)
