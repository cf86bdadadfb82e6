"""Service logs rotate (issue 19, item 6): past the size, to `.1`, `.2`, ...; the writer
goes on through the descriptor it holds."""

from __future__ import annotations

from pathlib import Path

from dateline.runtime.supervisor import rotate


def test_a_log_past_its_size_rotates_and_the_writer_writes_on(tmp_path: Path) -> None:
    log = tmp_path / "query.log"
    with log.open("ab", buffering=0) as writer:  # as a child's stdout is opened
        for n in range(5):
            writer.write(f"round {n} ".encode() + b"x" * 100 + b"\n")
            assert rotate(log, max_bytes=50, kept=3)
        writer.write(b"after\n")
    assert log.read_bytes() == b"after\n"  # appended at the new end, not at the old offset
    assert (tmp_path / "query.log.1").read_bytes().startswith(b"round 4 ")
    assert (tmp_path / "query.log.2").read_bytes().startswith(b"round 3 ")
    assert (tmp_path / "query.log.3").read_bytes().startswith(b"round 2 ")
    assert not (tmp_path / "query.log.4").exists()  # three kept
    assert not rotate(log, max_bytes=50)  # small: left alone
    assert not rotate(tmp_path / "missing.log")
