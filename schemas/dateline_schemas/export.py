"""Write the JSON Schema of every update type to schemas/json/, or check that it is current.

python -m dateline_schemas.export           # rewrite the files
python -m dateline_schemas.export --check   # exit 1 if any file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from dateline_schemas.updates import TYPES, Update

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "json"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _document(schema: dict[str, Any], name: str, title: str) -> bytes:
    doc = {"$schema": _DIALECT, "$id": f"urn:dateline:schema:{name}", "title": title, **schema}
    return msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n"


def documents() -> dict[str, bytes]:
    """File name -> content, for the union and for each update type."""
    docs = {"update.schema.json": _document(msgspec.json.schema(Update), "update", "Any update")}
    for type_, cls in sorted(TYPES.items()):
        docs[f"{type_}.schema.json"] = _document(msgspec.json.schema(cls), type_, type_)
    return docs


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of the files that are missing, different or no longer generated."""
    want = documents()
    have = {p.name for p in directory.glob("*.schema.json")}
    wrong = [
        n
        for n, body in want.items()
        if not (directory / n).is_file() or (directory / n).read_bytes() != body
    ]
    return sorted(wrong + sorted(have - want.keys()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: schemas/json/{name}", file=sys.stderr)
        if bad:
            print("run: python -m dateline_schemas.export", file=sys.stderr)
        return 1 if bad else 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for old in SCHEMA_DIR.glob("*.schema.json"):
        old.unlink()
    for name, body in documents().items():
        (SCHEMA_DIR / name).write_bytes(body)
    print(f"wrote {len(documents())} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
