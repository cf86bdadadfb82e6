"""A backup file read back (`store/backup.verify`), without a server: what passes, and
what is refused with a message that says what is wrong, before anything is written.

The files here are written line by line from the format's own structs, not by
`backup.write` (the integration tests restore what it writes): so each case changes one
thing about a file that is otherwise whole."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import secrets
from pathlib import Path

import msgspec
import pytest

from dateline.cli.backup_cmd import _recorded
from dateline.store import backup

KEY = secrets.token_bytes(32)


def _record(n: int, story: str = "hanoi-summit-2019") -> bytes:
    return msgspec.json.encode(
        {
            "id": f"u{n}",
            "source": "urn:feed:wire",
            "subject": story,
            "data": {"text": f"said {n}"},
            "version": n,
            "position": f"1:1551330000000-{n}",
            "recordedtime": "2019-02-28T05:00:00Z",
        }
    )


def _lines(updates: int = 3) -> list[backup.Line]:
    header = backup.Header(
        format=backup.FORMAT,
        created="2026-12-06T09:00:00Z",
        source="redis://127.0.0.1:6379/0",
        prefix="dateline",
        partitions=8,
        cut={str(p): "0-0" for p in range(8)},
        delivery=False,
    )
    body: list[backup.Line] = [header]
    body += [
        backup.Update(p=1, id=f"1551330000000-{n}", record=msgspec.Raw(_record(n)))
        for n in range(1, updates + 1)
    ]
    body.append(backup.Setting(name="feeds", fields={"wire": '{"source":"urn:feed:wire"}'}))
    body.append(backup.Inbox(feed="wire", id="1-0", fields=[(b"__data__", b"\xff{}")]))
    return body


def _written(path: Path, lines: list[backup.Line], key: bytes | None = None, **end: object) -> Path:
    """`lines` and a closing line that matches them (but for what `end` sets)."""
    data = [msgspec.json.encode(line) + b"\n" for line in lines]
    digest = hashlib.sha256(b"".join(data)).hexdigest()
    stories = {
        msgspec.json.decode(bytes(x.record))["subject"]
        for x in lines
        if isinstance(x, backup.Update)
    }
    closing = {
        "lines": len(data),
        "updates": sum(isinstance(x, backup.Update) for x in lines),
        "stories": len(stories),
        "sha256": digest,
        "signature": backup.signature(key, digest) if key else None,
    } | end
    data.append(msgspec.json.encode(backup.End(**closing)) + b"\n")  # type: ignore[arg-type]
    path.write_bytes(b"".join(data))
    return path


def _refused(path: Path, key: bytes | None = None) -> str:
    with pytest.raises(backup.BadBackup) as caught:
        backup.verify(path, key)
    return str(caught.value)


def test_a_whole_file_passes_with_its_counts(tmp_path: Path) -> None:
    checked = backup.verify(_written(tmp_path / "b.ndjson", _lines()), None)
    assert (checked.end.updates, checked.end.stories, checked.end.lines) == (3, 1, 6)
    assert checked.header.partitions == 8
    assert checked.signature == "unsigned"


def test_a_signed_file_is_checked_with_the_key_that_signed_it(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.ndjson", _lines(), KEY)
    assert backup.verify(path, KEY).signature == "checked"
    with pytest.raises(backup.BadSignature, match="does not hold under this key"):
        backup.verify(path, secrets.token_bytes(32))
    with pytest.raises(backup.BadSignature, match=r"no key here to check it: .*--backup-key"):
        backup.verify(path, None)
    assert backup.verify(path, None, skip_signature=True).signature == "skipped"


def test_a_file_signed_by_someone_without_the_key_is_refused(tmp_path: Path) -> None:
    """Records changed and the digest written again to match: the signature catches it."""
    lines = _lines()
    lines[1] = backup.Update(p=1, id="1551330000000-1", record=msgspec.Raw(_record(9)))
    path = _written(tmp_path / "b.ndjson", lines, secrets.token_bytes(32))
    with pytest.raises(backup.BadSignature):
        backup.verify(path, KEY)


def test_a_gzipped_file_passes_and_one_cut_short_is_refused(tmp_path: Path) -> None:
    plain = _written(tmp_path / "b.ndjson", _lines(200)).read_bytes()
    zipped = tmp_path / "b.ndjson.gz"
    zipped.write_bytes(gzip.compress(plain))
    assert backup.verify(zipped, None).end.updates == 200
    zipped.write_bytes(gzip.compress(plain)[:-200])
    assert "cannot be read whole" in _refused(zipped)


def test_a_file_cut_short_says_so(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.ndjson", _lines())
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:-2]))
    said = _refused(path)
    assert said.startswith("the file ends at line 5 without its closing line: it was cut short")


def test_a_file_cut_inside_a_line_says_so(tmp_path: Path) -> None:
    """Cut at a byte, not a line (a copy stopped part way): said as cut, not "not JSON"."""
    path = _written(tmp_path / "b.ndjson", _lines())
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.index(b"said 2") + 3])
    said = _refused(path)
    assert said.startswith("the file ends inside line "), said
    assert "it was cut short" in said


def test_a_changed_byte_fails_the_digest(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.ndjson", _lines())
    path.write_bytes(path.read_bytes().replace(b"said 2", b"said 7"))
    assert "do not match the digest on its closing line" in _refused(path)


def test_counts_that_do_not_match_are_named(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.ndjson", _lines(), updates=4)
    assert _refused(path) == (
        "its closing line counts 6 lines, 4 updates of 1 stories; the file holds 6 lines, "
        "3 updates of 1 stories"
    )


def test_what_is_not_a_backup_says_so(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("Hanoi, Feb 28 (Reuters)\n")
    assert _refused(text) == "line 1 is not JSON: is this a dateline backup?"
    ndjson = tmp_path / "updates.ndjson"
    ndjson.write_bytes(Path("examples/hanoi-summit-2019.ndjson").read_bytes())
    assert "line 1: " in _refused(ndjson)  # a CloudEvent, not a tagged line
    headless = _written(tmp_path / "h.ndjson", _lines()[1:])
    assert _refused(headless).startswith("line 1 is not a backup's header")
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    assert _refused(empty) == "the file is empty: not a dateline backup"


def test_a_newer_format_names_itself(tmp_path: Path) -> None:
    lines = _lines()
    assert isinstance(lines[0], backup.Header)
    lines[0].format = backup.FORMAT + 1
    said = _refused(_written(tmp_path / "b.ndjson", lines))
    assert said.startswith(f"written by a newer dateline (format {backup.FORMAT + 1}")


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (backup.Update(p=8, id="1-0", record=msgspec.Raw(_record(1))), "partition 8 of a log of 8"),
        (backup.Update(p=1, id="now", record=msgspec.Raw(_record(1))), "'now' is not a stream id"),
        (
            backup.Update(p=1, id="1-0", record=msgspec.Raw(b'{"subject":"x"}')),
            "not a record of the log",
        ),
        (
            backup.Update(p=1, id="1-0", record=msgspec.Raw(_record(1).replace(b"position", b"p"))),
            "not a record of the log: a log record without a position",
        ),
        (backup.Setting(name="passwords", fields={}), "no settings hash is called 'passwords'"),
        (backup.Inbox(feed="wire", id="x-1", fields=[]), "'x-1' is not a stream id"),
        (backup.Delivery(subscription="cms", send=["1-0"]), "expected a log position"),
        (backup.Delivery(subscription="cms", send=["8:1-0"]), "8:1-0 is past a log of 8"),
        (
            backup.Delivery(subscription="cms", send=[], parked=[("1:1-0", '{"entry":"1-0"}')]),
            "not a parked delivery",
        ),
    ],
)
def test_a_line_that_cannot_be_restored_is_named_by_its_number(
    tmp_path: Path, line: backup.Line, said: str
) -> None:
    lines = _lines()
    lines.insert(2, line)
    found = _refused(_written(tmp_path / "b.ndjson", lines))
    assert found.startswith("line 3: "), found
    assert said in found


def test_the_delivery_lines_are_what_the_check_hands_the_restore(tmp_path: Path) -> None:
    owed = backup.Delivery(subscription="cms", send=["1:1551330000000-2", "1:1551330000000-3"])
    checked = backup.verify(_written(tmp_path / "b.ndjson", [*_lines(), owed]), None)
    assert checked.deliveries == [owed]


def test_a_line_after_the_closing_one_is_refused(tmp_path: Path) -> None:
    path = _written(tmp_path / "b.ndjson", _lines())
    path.write_bytes(path.read_bytes() + msgspec.json.encode(_lines()[1]) + b"\n")
    assert _refused(path) == "line 8 follows the closing line (line 7)"


def test_a_backup_that_cannot_be_recorded_says_why() -> None:
    """The file is written; the record of it in the log's server is not: said in a line
    (the command then warns that status and the alert do not know of it), not raised."""
    taken = backup.Taken(0.0, 1, 1, "/backups/b.ndjson", 1, signed=False)
    said = asyncio.run(_recorded("redis://127.0.0.1:1/0", "p", taken))  # nothing listens
    assert said is not None and "127.0.0.1" in said
