"""The contract as code: valid updates round-trip, invalid ones name the field and rule."""

from __future__ import annotations

import msgspec
import pytest

from dateline_schemas import TYPES, InvalidUpdate, Upcasters, decode_record, decode_update
from dateline_schemas.export import stale
from tests.factories import DATA, encode, update
from tests.invalid_cases import CASES, Case


def test_every_contract_type_has_an_example() -> None:
    """The factory table covers the 19 types of the contract, no more, no fewer."""
    assert set(DATA) == set(TYPES)
    assert len(TYPES) == 19


@pytest.mark.parametrize("type_", sorted(TYPES))
def test_every_type_round_trips(type_: str) -> None:
    """decode -> canonical JSON -> decode gives the same update, data intact."""
    doc = update(type_)
    decoded = decode_update(encode(doc))
    assert type(decoded.update) is TYPES[type_]
    again = decode_update(decoded.body)
    assert again.update == decoded.update
    assert msgspec.json.decode(decoded.body)["data"] == msgspec.to_builtins(decoded.update.data)
    for key, value in doc["data"].items():
        assert msgspec.json.decode(decoded.body)["data"][key] == value


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_invalid_update_names_field_and_rule(case: Case) -> None:
    """Each refusal says `field: what was expected` and, where there is one, what came."""
    with pytest.raises(InvalidUpdate) as info:
        decode_update(case.raw)
    assert info.value.problem.field == case.field, str(info.value)
    assert case.says in info.value.problem.message, str(info.value)
    assert str(info.value).startswith(f"{case.field}: ")


def test_the_table_is_at_least_forty_cases_long() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 40


def test_the_message_reads_like_the_contract_example() -> None:
    raw = encode(
        update(
            "dateline.schedule.announced",
            data={**DATA["dateline.schedule.announced"], "starts_at": "tomorrow"},
        )
    )
    with pytest.raises(
        InvalidUpdate,
        match=r'^data\.starts_at: expected RFC 3339 date or datetime .*got "tomorrow"$',
    ):
        decode_update(raw)


def test_extensions_are_kept_but_not_interpreted() -> None:
    """Lowercase unknown attributes are CloudEvents extensions: stored as sent."""
    decoded = decode_update(encode(update(traceparent="00-abc", partnerref={"a": [1, 2]})))
    body = msgspec.json.decode(decoded.body)
    assert body["traceparent"] == "00-abc"
    assert body["partnerref"] == {"a": [1, 2]}


def test_duplicate_keys_are_stored_as_validated() -> None:
    """With a repeated key the last one is validated, and only that one is stored."""
    raw = encode(update()).replace(b'"subject":', b'"subject":"Not Valid","subject":', 1)
    decoded = decode_update(raw)
    assert decoded.body.count(b'"subject"') == 1
    assert decode_update(decoded.body).update.subject == "hanoi-summit-2019"


def test_records_decode_with_log_fields() -> None:
    """What the log stores (with version, position, recordedtime) decodes with one decoder."""
    body = decode_update(encode(update())).body
    record = (
        body[:-1] + b',"version":3,"position":"1:5-0","recordedtime":"2026-01-01T00:00:00.000Z"}'
    )
    decoded = decode_record(record)
    assert (decoded.version, decoded.position) == (3, "1:5-0")
    assert decoded.recordedtime is not None and decoded.recordedtime.year == 2026


def test_upcasting_hook_turns_old_versions_into_current() -> None:
    """A registered upcaster runs before typed decoding, keyed by type and schema version."""
    registry = Upcasters()

    @registry.register("dateline.story.opened", from_version=0)
    def headline_to_title(doc: dict[str, object]) -> dict[str, object]:
        data = dict(doc["data"])  # type: ignore[call-overload]
        data["title"] = data.pop("headline")
        return {**doc, "data": data, "dataschema": "urn:dateline:schema:dateline.story.opened:v1"}

    old = update(
        data={"headline": "Summit"}, dataschema="urn:dateline:schema:dateline.story.opened:v0"
    )
    decoded = decode_update(encode(old), upcasters=registry)
    assert decoded.update.data.title == "Summit"  # type: ignore[union-attr]
    with pytest.raises(InvalidUpdate, match=r"data\.headline: unknown field"):
        decode_update(encode(old))  # the default registry is empty: v0 is not understood


def test_upcaster_must_advance_the_version() -> None:
    registry = Upcasters()
    registry.register("dateline.story.opened", from_version=1)(lambda doc: doc)
    with pytest.raises(ValueError, match="must set dataschema to v2"):
        registry.upcast(update())


def test_json_schema_files_are_current() -> None:
    """schemas/json/ matches the Structs; run `python -m dateline_schemas.export` if not."""
    assert stale() == []


def test_records_from_the_log_are_trusted_for_rules_but_not_for_shape() -> None:
    """The log holds only updates that passed the rules; reading them does not re-check the
    rules (a tenth of the projector's time), but types and required fields still hold."""
    from dateline_schemas import InvalidUpdate, decode_record, decode_update  # noqa: PLC0415

    doc = update(subject="Not A Story Id")  # breaks a rule, keeps the shape
    with pytest.raises(InvalidUpdate, match="subject"):
        decode_update(encode(doc))
    assert decode_record(encode(doc)).subject == "Not A Story Id"
    del doc["time"]
    with pytest.raises(InvalidUpdate, match="time"):
        decode_record(encode(doc))
    # The flag does not leak: the next producer decode checks the rules again.
    with pytest.raises(InvalidUpdate, match="subject"):
        decode_update(encode(update(subject="Not A Story Id")))


def test_a_history_decodes_as_its_records_do_and_the_trust_ends_with_it() -> None:
    from dateline_schemas import InvalidUpdate, decode_record, decode_records  # noqa: PLC0415

    ruled_out = encode(update(subject="Not A Story Id"))
    fine = encode(update(id="u-2"))
    assert decode_records([ruled_out, fine]) == [decode_record(ruled_out), decode_record(fine)]
    shapeless = update()
    del shapeless["time"]
    with pytest.raises(InvalidUpdate, match="time"):
        decode_records([fine, encode(shapeless)])
    # Read once, as an iterator is: the record at fault is still found and named.
    with pytest.raises(InvalidUpdate, match="time"):
        decode_records(iter([fine, encode(shapeless)]))
    assert decode_records(iter([ruled_out, fine])) == decode_records([ruled_out, fine])
    # Neither a history read nor one that failed leaves the rules switched off.
    with pytest.raises(InvalidUpdate, match="subject"):
        decode_update(ruled_out)
