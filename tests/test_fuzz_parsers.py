"""Hypothesis fuzzing of everything that parses bytes from outside: the wire-contract parser
(any MQTT payload) and the card parsers (any reader output). The only exceptions allowed out
are the documented ones, and card errors never echo the card data."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storelens.contract import ContractError, encode_envelope, parse_envelope
from storelens.contract.schema import example_envelope
from storelens.edge.cards.formats import CardFormatError, encode_wiegand26, parse_card
from storelens.edge.cards.keyboard_wedge import KEY_DOWN, KEY_UP, KeystrokeDecoder
from storelens.pseudonym import normalize_card

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = json.loads(encode_envelope(example_envelope()))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def _parse_or_contract_error(raw: bytes) -> None:
    try:
        parse_envelope(raw)
    except ContractError as exc:
        assert exc.reason in {
            "oversized",
            "bad_json",
            "bad_shape",
            "unknown_schema",
            "unknown_version",
            "invalid",
            "device_mismatch",
        }


@FUZZ
@given(st.binary(max_size=2000))
def test_contract_arbitrary_bytes(raw: bytes) -> None:
    _parse_or_contract_error(raw)


@FUZZ
@given(json_values)
def test_contract_arbitrary_json(doc: Any) -> None:
    _parse_or_contract_error(json.dumps(doc).encode())


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(VALID)[1:]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=4))
def test_contract_mutated_valid_envelopes(mutations: list[tuple[tuple, Any]]) -> None:
    """Replace fields of a valid envelope with random values: deep paths, wrong types."""
    doc = json.loads(json.dumps(VALID))
    for path, value in mutations:
        node = doc
        try:
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation changed the shape under this path
    _parse_or_contract_error(json.dumps(doc).encode())


@FUZZ
@given(st.text(max_size=200), st.sampled_from(["auto", "digits", "track2", "wiegand26"]))
def test_card_parsers_raise_only_format_errors(raw: str, fmt: str) -> None:
    try:
        number = parse_card(raw, fmt)  # type: ignore[arg-type]
    except CardFormatError as exc:
        digits = "".join(c for c in raw if c.isdigit())
        if len(digits) >= 6:
            assert digits not in str(exc), "error message leaks card data"
    else:
        assert normalize_card(number) == number  # every parsed number can be pseudonymized


card_like = st.text(alphabet=";%+=?E0123456789^ -B", max_size=60)


@FUZZ
@given(card_like, st.sampled_from(["auto", "track2", "digits"]))
def test_card_parsers_on_reader_like_noise(raw: str, fmt: str) -> None:
    with contextlib.suppress(CardFormatError):
        parse_card(raw, fmt)  # type: ignore[arg-type]


@FUZZ
@given(st.integers(0, 255), st.integers(0, 65535))
def test_wiegand_round_trip(facility: int, card: int) -> None:
    frame = encode_wiegand26(facility, card)
    assert parse_card(frame) == f"{facility:03d}{card:05d}"
    assert parse_card(hex(int(frame, 2)), "wiegand26") == f"{facility:03d}{card:05d}"
    # Any single flipped bit breaks a parity check or changes the number, never crashes.
    for i in range(26):
        flipped = frame[:i] + ("1" if frame[i] == "0" else "0") + frame[i + 1 :]
        with contextlib.suppress(CardFormatError):
            assert parse_card(flipped, "wiegand26") != f"{facility:03d}{card:05d}"


@FUZZ
@given(
    st.text(alphabet="0123456789", min_size=4, max_size=19),
    st.text(alphabet="0123456789=", max_size=20),
)
def test_track2_round_trip(pan: str, extra: str) -> None:
    assert parse_card(f";{pan}={extra}?") == pan
    assert parse_card(f"%B{pan}^DOE/J^2912?;{pan}={extra}?", "track2") == pan


keys = st.sampled_from(
    [
        "KEY_1",
        "KEY_9",
        "KEY_KP5",
        "KEY_A",
        "KEY_SEMICOLON",
        "KEY_EQUAL",
        "KEY_SLASH",
        "KEY_LEFTSHIFT",
        "KEY_RIGHTSHIFT",
        "KEY_ENTER",
        "KEY_KPENTER",
        "KEY_ESC",
        "KEY_F13",
        "",
    ]
)


@FUZZ
@given(st.lists(st.tuples(keys, st.sampled_from([KEY_DOWN, KEY_UP, 2, -1, 7])), max_size=300))
def test_keyboard_wedge_decoder_never_crashes(events: list[tuple[str, int]]) -> None:
    decoder = KeystrokeDecoder()
    for key, value in events:
        read = decoder.feed(key, value)
        if read is not None:
            assert isinstance(read, str)
            with contextlib.suppress(CardFormatError):
                parse_card(read)
