"""One typed decoder for updates, with refusals that name the field and the rule."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from dateline_schemas._base import TRUSTED
from dateline_schemas._rules import string_problem
from dateline_schemas.upcasting import UPCASTERS, Upcasters
from dateline_schemas.updates import ENVELOPE_FIELDS, LOG_FIELDS, TYPES, Update

MAX_UPDATE_BYTES: Final = 64 * 1024
MAX_BATCH_UPDATES: Final = 1000
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024

_typed = msgspec.json.Decoder(Update)
_shallow = msgspec.json.Decoder(dict[str, msgspec.Raw])
_generic = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an update was refused: a dotted field path and what is wrong there."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidUpdate(ValueError):
    """The update breaks the contract; nothing of it may be written."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class Decoded(msgspec.Struct, frozen=True, gc=False):
    """A valid update and the canonical JSON the log stores for it.

    A Struct, not a frozen dataclass: one is made for every update appended, and a
    frozen dataclass's `__init__` cost 1.1 us of an append's 30 (0.1 as a Struct)."""

    update: Update
    body: bytes  # canonical JSON object, CloudEvents extensions kept


_EXTENSION = re.compile(r"[a-z0-9]+")


def _extensions(attrs: dict[str, msgspec.Raw]) -> list[tuple[str, msgspec.Raw]]:
    """The attributes that are no envelope field: CloudEvents extensions, kept as sent
    once their names and string values pass CloudEvents' rules."""
    extensions: list[tuple[str, msgspec.Raw]] = []
    if attrs.keys() <= ENVELOPE_FIELDS:  # the usual update: one set operation, in C
        return extensions
    for name, value in attrs.items():
        if name in ENVELOPE_FIELDS:
            continue
        if not name[:1].islower() or not name[:1].isascii():
            raise InvalidUpdate(
                Problem(name, "unknown attribute; extension attribute names start with a-z")
            )
        if not _EXTENSION.fullmatch(name):
            raise InvalidUpdate(
                Problem(
                    name,
                    "extension attribute names are lower-case ASCII letters and digits "
                    "only (CloudEvents naming rules)",
                )
            )
        if (why := _extension_problem(value)) is not None:
            raise InvalidUpdate(Problem(name, why))
        extensions.append((name, value))
    return extensions


def _extension_problem(value: msgspec.Raw) -> str | None:
    """Why an extension's value breaks CloudEvents' String rule (if it is a string)."""
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:  # the typed decode names what is wrong with it
        return None
    return string_problem(decoded) if isinstance(decoded, str) else None


def decode_update(raw: bytes | str, *, upcasters: Upcasters = UPCASTERS) -> Decoded:
    """Validate one update as a producer sent it (JSON text of one CloudEvent)."""
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > MAX_UPDATE_BYTES:
        raise InvalidUpdate(
            Problem("update", f"{len(raw)} bytes, over the limit of {MAX_UPDATE_BYTES}")
        )
    try:
        attrs = _shallow.decode(raw)
    except msgspec.ValidationError:
        raise InvalidUpdate(
            Problem("update", f"expected a JSON object, got {_kind(raw)}")
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidUpdate(
            Problem("update", f"not valid UTF-8 JSON: {_lower(str(exc))}")
        ) from None
    except RecursionError:  # msgspec's guard against hostile nesting
        raise InvalidUpdate(Problem("update", "JSON nested too deeply")) from None
    extensions = _extensions(attrs)
    for name in () if attrs.keys().isdisjoint(LOG_FIELDS) else LOG_FIELDS:
        if name in attrs:
            raise InvalidUpdate(
                Problem(name, "set by the log on append; producers must not send it")
            )
    try:
        update = _decode_typed(raw, upcasters)
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 only in strings it decodes
        problem = Problem("update", f"not valid UTF-8 JSON: byte {exc.start} is not UTF-8")
        raise InvalidUpdate(problem) from None
    body = _encode(update)
    if extensions:
        tail = b"".join(b"," + _encode(k) + b":" + bytes(v) for k, v in extensions)
        body = body[:-1] + tail + b"}"
    return Decoded(update, body)


def decode_record(raw: bytes, *, upcasters: Upcasters = UPCASTERS) -> Update:
    """Decode an update as the log stored it (with version, position and recordedtime).

    The log holds only updates that passed every rule on the way in, so the rules are
    not checked again (types and required fields still are, by msgspec); an upcast
    record is checked, since the upcaster made it.
    """
    token = TRUSTED.set(not upcasters)
    try:
        return _decode_typed(raw, upcasters)
    finally:
        TRUSTED.reset(token)


def decode_records(raws: Iterable[bytes], *, upcasters: Upcasters = UPCASTERS) -> list[Update]:
    """`decode_record` of each, in order: a story's history for a fold."""
    token = TRUSTED.set(not upcasters)  # once, not once a record: a rebuild decodes millions
    try:
        if not upcasters:
            raws = raws if isinstance(raws, list) else list(raws)
            # msgspec's loop, no call into Python a record but the rules' own; the
            # record at fault, if any, is found and explained record by record below.
            with contextlib.suppress(msgspec.ValidationError, RecursionError):
                return list(map(_typed.decode, raws))
        return [_decode_typed(raw, upcasters) for raw in raws]
    finally:
        TRUSTED.reset(token)


def _decode_typed(raw: bytes, upcasters: Upcasters) -> Update:
    try:
        if upcasters:
            doc = _generic.decode(raw)
            if isinstance(doc, dict) and upcasters.applies(doc):
                upcast: Update = msgspec.convert(upcasters.upcast(doc), Update, strict=True)
                return upcast
        decoded: Update = _typed.decode(raw)
        return decoded
    except msgspec.ValidationError as exc:
        raise InvalidUpdate(_explain(str(exc), raw)) from None
    except RecursionError:  # msgspec's guard against hostile nesting
        raise InvalidUpdate(Problem("update", "JSON nested too deeply")) from None


def _kind(raw: bytes) -> str:
    try:
        return type(_generic.decode(raw)).__name__.replace("dict", "object")
    except msgspec.DecodeError:
        return "something else"


def _lower(text: str) -> str:
    return text if text[1:2].isupper() else text[:1].lower() + text[1:]


def _dotted(path: str) -> str:
    return path.lstrip(".")


def _join(path: str, name: str) -> str:
    return f"{_dotted(path)}.{name}" if path else name


def _explain(message: str, raw: bytes) -> Problem:
    """Turn msgspec's `Expected ... - at `$.a.b`` into `a.b: expected ..., got ...`."""
    m = _AT.match(message)
    msg, path = (m["msg"], m["path"] or "") if m else (message, "")
    doc = _safe_generic(raw)
    if found := re.match(r"Object missing required field `(.+)`", msg):
        return Problem(_join(path, found[1]), "required field is missing")
    if found := re.match(r"Object contains unknown field `(.+)`", msg):
        return Problem(_join(path, found[1]), "unknown field")
    if path == ".type":
        value = doc.get("type") if isinstance(doc, dict) else None
        return Problem(
            "type",
            f"unknown update type {value!r}; expected one of: {', '.join(sorted(TYPES))}",
        )
    if msg.startswith("Expected `object`") and not path:
        return Problem("update", "expected a JSON object" + msg.removeprefix("Expected `object`"))
    # A rule from __post_init__ names its own field: "starts_at: expected ..."
    if (rule := re.match(r"([a-z_]+(?:\[\d+\])?): (.*)", msg, re.S)) and not msg.startswith(
        "Expected"
    ):
        return Problem(_join(path, rule[1]), rule[2])
    value = _at(doc, path)
    text = _rephrase(msg, doc, path)
    if ", got " not in text and value is not _MISSING:
        text += f", got {_show(value)}"
    return Problem(_dotted(path) or "update", text)


_MISSING: Final = object()


def _safe_generic(raw: bytes) -> Any:
    try:
        return _generic.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def _at(doc: Any, path: str) -> Any:
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = part
        try:
            doc = doc[key] if key else doc[int(index)]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return doc


def _show(value: Any) -> str:
    text = _encode(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


_PHRASES: Final = (
    (r"Expected `str` of length >= 1", "expected a non-empty string"),
    (r"Expected `str` of length <= (\d+)", r"expected at most \1 characters"),
    (r"Expected `array` of length >= 1", "expected a non-empty array"),
    (r"Expected `object` of length >= 1", "expected a non-empty object"),
    (r"Expected `int` >= (\d+)", r"expected an integer >= \1"),
    (r"Expected `datetime` with a timezone component", "expected RFC 3339 date-time with offset"),
    (r"Invalid RFC3339 encoded datetime", "expected RFC 3339 date-time with offset"),
    (r"Expected `str` matching regex '.*'", "expected a value in the documented format"),
    (r"Expected `([^`]+)`, got `([^`]+)`", r"expected \1, got \2"),
    (r"Expected `([^`]+)`", r"expected \1"),
)


def _rephrase(msg: str, doc: Any, path: str) -> str:
    if msg.startswith("Invalid enum value"):
        allowed = _literal_values(doc, path)
        if allowed:
            return "expected one of " + ", ".join(map(_show, allowed))
    for pattern, replacement in _PHRASES:
        if re.match(pattern, msg):
            return re.sub(pattern, replacement, msg, count=1).replace(" | null", " or null")
    return _lower(msg)


def _literal_values(doc: Any, path: str) -> tuple[Any, ...]:
    """The values a Literal field allows, found by walking the update's type along `path`."""
    if not isinstance(doc, dict) or doc.get("type") not in TYPES:
        return ()
    info: Any = mi.type_info(TYPES[doc["type"]])
    for key in re.findall(r"\.([^.\[]+)", path):
        while isinstance(info, mi.UnionType):
            info = next((t for t in info.types if not isinstance(t, mi.NoneType)), None)
        if not isinstance(info, mi.StructType):
            return ()
        info = next((f.type for f in info.fields if f.encode_name == key), None)
    while isinstance(info, mi.UnionType):
        info = next((t for t in info.types if not isinstance(t, mi.NoneType)), None)
    return tuple(info.values) if isinstance(info, mi.LiteralType) else ()
