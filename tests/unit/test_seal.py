"""Opening sealed records (`store/seal.py`), without a server: what each reader accepts
and refuses, by where a partition is sealed from."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from dateline.store import scripts, seal
from dateline.store.config import Settings, SettingsError
from dateline.store.layout import Keys
from dateline.store.seal import Marker, Sealing, Unsealed

KEY = secrets.token_bytes(32)
RECORD = b'{"id":"u1","subject":"hanoi","version":3,"position":"1:5-0"}'


def _sealing(**markers: Marker) -> Sealing:
    s = Sealing(KEY, Keys("t", 2))
    s.markers.update({int(p.removeprefix("p")): m for p, m in markers.items()})
    return s


def test_a_sealed_record_opens_to_the_record_as_written() -> None:
    sealed = seal.seal(KEY, RECORD)
    assert sealed.startswith(RECORD[:-1] + b',"seal":"') and sealed.endswith(b'"}')
    assert seal.opened(KEY, sealed) == RECORD
    assert seal.opened(KEY, RECORD) is None  # no seal at all


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r.replace(b'"version":3', b'"version":4'),
        lambda r: r.replace(b'"1:5-0"', b'"1:6-0"'),
        lambda r: r[:-5] + (b"0" if r[-5:-4] != b"0" else b"1") + r[-4:],
    ],
    ids=["version", "position", "seal"],
)
def test_a_record_changed_after_sealing_is_refused(tamper: object) -> None:
    changed = tamper(seal.seal(KEY, RECORD))  # type: ignore[operator]
    with pytest.raises(Unsealed, match="does not match"):
        seal.opened(KEY, changed)


def test_another_key_does_not_open_it() -> None:
    with pytest.raises(Unsealed):
        seal.opened(secrets.token_bytes(32), seal.seal(KEY, RECORD))


def test_stream_entries_up_to_the_marker_pass_unsealed_and_after_it_are_refused() -> None:
    s = _sealing(p1=Marker((5, 0), lists=True))
    assert s.entry(1, "5-0", RECORD) == RECORD  # from before sealing
    with pytest.raises(Unsealed, match="no seal"):
        s.entry(1, "5-1", RECORD)
    assert s.entry(1, "9-0", seal.seal(KEY, RECORD)) == RECORD
    assert s.entry(0, "9-0", RECORD) == RECORD  # partition 0 is not sealed


def test_list_records_are_refused_unsealed_only_once_the_lists_are_sealed() -> None:
    assert _sealing(p1=Marker((5, 0), lists=False)).listed(1, RECORD) == RECORD
    with pytest.raises(Unsealed):
        _sealing(p1=Marker((5, 0), lists=True)).listed(1, RECORD)


def test_a_reader_that_shows_what_there_is_leaves_refused_records_out() -> None:
    s = _sealing(p1=Marker((0, 0), lists=True))
    s.skip = True
    records = [seal.seal(KEY, RECORD), RECORD, seal.seal(KEY, RECORD)]
    assert s.listed_all(1, records) == [RECORD, RECORD]
    assert s.entry_or_none(1, "1-0", RECORD) is None
    s.skip = False
    with pytest.raises(Unsealed):
        s.listed_all(1, records)


def test_the_append_function_holds_the_key_padded_as_hmac_pads_it() -> None:
    library = seal.append_library(KEY)
    ipad = "".join(f"\\{b ^ 0x36}" for b in KEY.ljust(64, b"\0"))
    assert f"local IPAD = '{ipad}'" in library.code
    # The function seals: it has no refusal of a sealed partition to make.
    assert "error_reply('SEALED" not in library.code
    assert "error_reply('SEALED" in scripts.load("append")
    assert library.functions["append"] in library.code
    assert seal.append_library(secrets.token_bytes(32)).name != library.name


def test_the_key_is_64_hex_digits_and_made_once_in_the_data_dir(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="DATELINE_SEAL_KEY: expected 64 hex digits"):
        Settings.from_env({"DATELINE_SEAL_KEY": "abc"})
    given = Settings.from_env({"DATELINE_SEAL_KEY": KEY.hex(), "REDIS_URL": "redis://x"})
    assert given.seal() == KEY
    embedded = Settings.from_env({"DATELINE_DATA_DIR": str(tmp_path)})
    assert embedded.seal() is None  # no embedded server has made one here
    made = seal.key_of(tmp_path)
    assert embedded.seal() == made == seal.key_of(tmp_path)
    assert (tmp_path / "seal.key").stat().st_mode & 0o777 == 0o600
    assert (
        Settings.from_env({"DATELINE_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://x"}).seal()
        is None
    )
