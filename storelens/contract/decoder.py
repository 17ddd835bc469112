"""The contract's one decoder of raw envelope bytes: msgspec structs generated from the models.

`decode_envelope` is what ingest decodes every message with (event batches and device
statuses alike); what it returns is the only shape the cloud builds rows from. pydantic stays
the single source of truth: the structs here are derived from its models at import time
(field names and aliases, types, defaults, length/range/pattern constraints), and anything the
generator does not understand fails the import, so the contract cannot grow a rule the decoder
silently skips.

The structs take the canonical spelling a device sends (what `encode_envelope` writes). What
they refuse goes to pydantic (`parse_envelope`), which either names the dead-letter reason or,
for a lax spelling the models accept, gives its canonical text, which the same structs then
decode: so accept/reject stays exactly the models', and nothing downstream ever sees a
pydantic object. Where the structs are stricter than the models (and why):

- UUIDs must be canonical (lowercase, hyphenated) and are kept as that text: it is what the
  database stores, so no parse-and-format per ID;
- fields whose default is generated (an event's ``id``, the envelope's ``batch_id`` and
  ``sent_at``) and the envelope's ``schema``/``version`` must be present;
- no lax coercions (``"5"`` for a number, numbers for datetimes, ``"true"`` for a bool);
- an event may hold only its model's keys, and ``member``/``key_id`` may not be null, so each
  event's raw text can be stored as its payload (the device's own spelling of it);
- patterns take an absolute end (pydantic's Rust regex has no ``$``-before-newline quirk).

The canonical text of a lax envelope is then the events' payload text. Input the models accept
but whose canonical text they cannot write back (``Infinity``, which is not JSON and comes out
as null; an integer beyond 64 bits, which no database column holds) is refused as ``invalid``.

`tests/test_contract_decoder.py` fuzzes envelopes and checks struct-accept => model-accept with
equal values; `tests/test_contract_one_decoder.py` feeds one corpus of good and bad payloads to
`decode_envelope` and the models and checks they accept and refuse the same.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import types
import typing
import uuid
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from storelens.contract.envelope import (
    MAX_PAYLOAD_BYTES,
    ContractError,
    Envelope,
    encode_envelope,
    parse_envelope,
)
from storelens.contract.events import EVENT_TYPES, PERSONAL_FIELDS

UUID_PATTERN = r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"
UUID_TEXT = Annotated[str, msgspec.Meta(pattern=UUID_PATTERN)]
_UUID_LEN = Annotated[str, msgspec.Meta(min_length=36, max_length=36)]
_UUIDS = re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n)*")
_CONSTRAINTS: dict[type, str] = {
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
}


def _pattern(pattern: str) -> str:
    # `$` as the absolute end, like Rust's. Classes stay Unicode (Python's `\d` is Unicode
    # decimal digits, as Rust's is), so a version the models accept is accepted here too.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return pattern


def _meta(items: typing.Iterable[Any]) -> dict[str, Any]:
    """msgspec.Meta keyword arguments for pydantic/annotated-types constraints."""
    kw: dict[str, Any] = {}
    for item in items:
        if isinstance(item, FieldInfo):
            if item.discriminator not in (None, "type"):
                raise TypeError(f"unsupported discriminator {item.discriminator!r}")
            kw.update(_meta(item.metadata))
        elif type(item) in _CONSTRAINTS:
            name = _CONSTRAINTS[type(item)]
            kw[name] = getattr(item, name)
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            extra = {k: v for k, v in vars(item).items() if k != "pattern"}
            if extra:
                raise TypeError(f"unsupported constraint {extra!r}")
            kw["pattern"] = _pattern(item.pattern)
        elif item is not None and not isinstance(item, str):  # a description string is fine
            raise TypeError(f"unsupported constraint {item!r}")
    return kw


def _type(tp: Any, structs: dict[type, Any]) -> Any:
    """The msgspec type of a pydantic annotation (recursively)."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        inner = _type(base, structs)
        kw = _meta(extra)
        return Annotated[inner, msgspec.Meta(**kw)] if kw else inner
    if origin in (Union, types.UnionType):
        return Union[tuple(_type(a, structs) for a in get_args(tp))]  # noqa: UP007
    if origin is list:
        (item,) = get_args(tp)
        return list[_type(item, structs)]
    if origin is dict:
        key, value = get_args(tp)
        return dict[_type(key, structs), _type(value, structs)]
    if origin is Literal:
        return tp
    if tp is AwareDatetime:
        return Annotated[dt.datetime, msgspec.Meta(tz=True)]
    if tp is uuid.UUID:
        return UUID_TEXT
    if tp in (str, int, float, bool, type(None)):
        return tp
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return struct_for(tp, structs)
    raise TypeError(f"no msgspec type for {tp!r}")


def _pattern_str(tp: Any) -> tuple[str, Any] | None:
    """(pattern, msgspec type without it) for ``Annotated[str, ...pattern]`` or a UUID."""
    if tp is uuid.UUID:
        return UUID_PATTERN, _UUID_LEN
    if get_origin(tp) is Annotated and get_args(tp)[0] is str:
        kw = _meta(get_args(tp)[1:])
        if "pattern" in kw:
            pattern = kw.pop("pattern")
            return pattern, Annotated[str, msgspec.Meta(**kw)] if kw else str
    return None


def _slot(field: FieldInfo, structs: dict[type, Any]) -> tuple[str, str, Any] | None:
    """A field whose pattern is checked after decoding, in bulk (`check_patterns`): msgspec
    would call ``re`` once per value, which costs more than the rest of the decode. Returns
    (shape, pattern, msgspec type without the pattern); shape is "value" (a string or None),
    "list" (of strings) or "keys" (of a dict)."""
    tp = field.annotation
    if field.metadata:
        tp = Annotated[tp, *field.metadata]
    if (found := _pattern_str(tp)) is not None:
        return "value", *found
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        if (found := _pattern_str(inner)) is not None:
            return "value", found[0], found[1] | None
    if origin is list and (found := _pattern_str(args[0])) is not None:
        return "list", found[0], list[found[1]]
    if origin is dict and (found := _pattern_str(args[0])) is not None:
        return "keys", found[0], dict[found[1], _type(args[1], structs)]
    return None


def _default(field: FieldInfo) -> Any:
    """msgspec.NODEFAULT (required), a value, or a factory wrapped in msgspec.field."""
    if field.is_required():
        return msgspec.NODEFAULT
    if field.default_factory is None:
        return field.default
    if field.default_factory in (list, dict):
        return msgspec.field(default_factory=field.default_factory)
    return msgspec.NODEFAULT  # a generated default (an ID, a time): must be sent


def struct_for(
    model: type[BaseModel],
    structs: dict[type, Any] | None = None,
    *,
    tag: str | None = None,
    forbid_unknown: bool = True,
    required: frozenset[str] = frozenset(),
    types_: dict[str, Any] | None = None,
) -> type[msgspec.Struct]:
    """A msgspec struct with ``model``'s fields (by alias), types, constraints and defaults.
    ``tag``: the struct is one member of a union tagged by ``type`` (that field is the tag).
    ``required``: fields (by name) that must be present although the model has a default.
    ``types_``: field types to use instead of the generated ones."""
    structs = {} if structs is None else structs
    if model in structs and types_ is None:
        return structs[model]
    required_fields: list[tuple[str, Any, Any]] = []
    slots: list[tuple[str, str, str]] = []
    optional_fields: list[tuple[str, Any, Any]] = []
    for name, field in model.model_fields.items():
        if tag is not None and name == "type":
            continue
        slot = _slot(field, structs) if tag is not None else None
        if slot is not None:
            shape, pattern, tp = slot
            slots.append((name, shape, pattern))
        else:
            tp = _type(field.annotation, structs)
            kw = _meta(field.metadata)
            if kw:
                tp = Annotated[tp, msgspec.Meta(**kw)]
        if types_ and name in types_:
            tp = types_[name]
        union = get_origin(tp) in (Union, types.UnionType)
        if name in PERSONAL_FIELDS and tag is not None and union:
            # Null would leave text the model does not have: strings only, absent = None.
            tp = Union[tuple(a for a in get_args(tp) if a is not type(None))]  # noqa: UP007
        default = msgspec.NODEFAULT if name in required else _default(field)
        if default is msgspec.NODEFAULT:
            required_fields.append((name, tp, msgspec.field(name=field.alias or name)))
            continue
        if isinstance(default, _FIELD):
            spec = msgspec.field(name=field.alias or name, default_factory=default.default_factory)
        else:
            spec = msgspec.field(name=field.alias or name, default=default)
        optional_fields.append((name, tp, spec))
    struct = msgspec.defstruct(
        f"{model.__name__}Struct",
        required_fields + optional_fields,  # msgspec wants required fields first
        tag_field="type" if tag is not None else None,
        tag=tag,
        forbid_unknown_fields=forbid_unknown,
        frozen=True,
        gc=False,  # lists and dicts of scalars: no cycles, so no cyclic-GC passes over them
    )
    if types_ is None:
        structs[model] = struct
    if slots:
        _SLOTS[struct] = slots
    return struct


# Per event struct: its pattern-checked fields as (name, shape, pattern).
_SLOTS: dict[type, list[tuple[str, str, str]]] = {}


_FIELD = type(msgspec.field())


def _envelope_struct() -> tuple[type[msgspec.Struct], tuple[type[msgspec.Struct], ...]]:
    structs: dict[type, Any] = {}
    events = tuple(struct_for(model, structs, tag=tag) for tag, model in EVENT_TYPES.items())
    limit = _meta(Envelope.model_fields["events"].metadata)
    envelope = struct_for(
        Envelope,
        structs,
        forbid_unknown=False,  # extra="ignore", and no envelope key reaches storage
        required=frozenset({"schema_name", "version"}),  # defaults must not stand in
        types_={"events": Annotated[list[Union[events]], msgspec.Meta(**limit)]},  # noqa: UP007
    )
    return envelope, events


EnvelopeStruct, EVENT_STRUCTS = _envelope_struct()
EVENT_STRUCT_TYPES: dict[str, type[msgspec.Struct]] = {
    s.__struct_config__.tag: s for s in EVENT_STRUCTS
}
_DECODER = msgspec.json.Decoder(EnvelopeStruct)
_EVENT_DECODER = msgspec.json.Decoder(Union[EVENT_STRUCTS])  # noqa: UP007


def _plan(slots: list[tuple[str, str, str]]) -> list[tuple[str, Any]]:
    """How to collect one event struct's pattern-checked values: (pattern, getter) pairs,
    each getter returning an iterable of strings (None for an absent optional value)."""
    plan: list[tuple[str, Any]] = []
    for pattern in dict.fromkeys(p for _, _, p in slots):
        values = [n for n, shape, p in slots if p == pattern and shape == "value"]
        if len(values) == 1:
            plan.append((pattern, _tuple_of(values[0])))
        elif values:
            plan.append((pattern, operator.attrgetter(*values)))
        for name, shape, p in slots:
            if p == pattern and shape != "value":
                plan.append((pattern, operator.attrgetter(name)))  # a list, or a dict's keys
    return plan


def _tuple_of(name: str) -> Any:
    get = operator.attrgetter(name)
    return lambda obj: (get(obj),)


_PLANS = {struct: _plan(slots) for struct, slots in _SLOTS.items()}
_PATTERNS = tuple(dict.fromkeys(p for slots in _SLOTS.values() for _, _, p in slots))
_REGEX = {p: re.compile(p) for p in _PATTERNS}
_VALID: dict[str, set[str]] = {p: set() for p in _PATTERNS}  # values seen to match (they repeat)
_VALID_MAX = 100_000


def check_patterns(events: list[Any]) -> bool:
    """Every pattern-constrained string of ``events`` matches its pattern."""
    found: dict[str, list[Any]] = {p: [] for p in _PATTERNS}
    for event in events:
        for pattern, getter in _PLANS[type(event)]:
            found[pattern].extend(getter(event))
    for pattern, values in found.items():
        if None in values:
            values = [v for v in values if v is not None]
        if pattern == UUID_PATTERN:
            # One match over all of them: each is exactly 36 characters (msgspec checked),
            # so the 37-character pieces line up with the values.
            if values and _UUIDS.fullmatch("\n".join(values) + "\n") is None:
                return False
            continue
        valid, regex = _VALID[pattern], _REGEX[pattern]
        for value in set(values) - valid:
            if regex.search(value) is None:
                return False
            if len(valid) >= _VALID_MAX:
                valid.clear()
            valid.add(value)
    return True


class _Texts(msgspec.Struct):
    events: list[msgspec.Raw]


_TEXTS = msgspec.json.Decoder(_Texts)


def raw_event_texts(raw: bytes) -> list[str] | None:
    """Each element of the envelope's ``events`` as its own JSON text, cut out of ``raw`` in C
    (no re-serialising); None when ``raw`` is not such an object, or names ``events`` twice
    (then two parsers might not keep the same one)."""
    if raw.count(b'"events"') != 1:
        return None
    try:
        return [str(t, "utf-8") for t in _TEXTS.decode(raw).events]
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


class Decoded(typing.NamedTuple):
    """An envelope as the contract's structs, and each event's JSON text (its payload)."""

    envelope: Any  # EnvelopeStruct: store, device, batch_id, sent_at, events, ...
    texts: list[str]


def accept(raw: bytes, *, limit: int | None = MAX_PAYLOAD_BYTES) -> Decoded | None:
    """The structs' own decode: the envelope and each event's raw text, or None when they do
    not take ``raw`` as it is (then the models decide). Never raises on input."""
    if (limit is not None and len(raw) > limit) or (texts := raw_event_texts(raw)) is None:
        return None
    try:
        envelope = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    device = envelope.device
    if len(texts) != len(envelope.events) or any(e.device != device for e in envelope.events):
        return None
    if not check_patterns(envelope.events):
        return None
    return Decoded(envelope, texts)


def decode_envelope(raw: bytes) -> Decoded:
    """Decode one MQTT payload (an events or a status envelope) into the contract's structs.
    Raises ContractError with the dead-letter reason (named by the models) when the contract
    refuses it; never raises anything else on input."""
    decoded = accept(raw)
    if decoded is not None:
        return decoded
    envelope = parse_envelope(raw)  # refused: raises with the reason
    # A lax spelling the models accept: their canonical text, through the same structs (it
    # may be longer than the bytes that came, which were within the size limit).
    decoded = accept(encode_envelope(envelope), limit=None)
    if decoded is None:
        raise ContractError("invalid", "a value the contract cannot write back as JSON")
    return decoded


def event_struct(event: BaseModel) -> tuple[Any, str]:
    """An event model built in-process (a seed, a test) as `decode_envelope` would give it: its
    struct and its JSON text, so rows come from one builder whatever made the event."""
    text = event.model_dump_json(exclude_none=True)
    return _EVENT_DECODER.decode(text), text
