"""schemas/asyncapi.json: current with the Structs, and valid to the official AsyncAPI parser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dateline.ingest.asyncapi import PATH, document, main
from dateline_schemas import TYPES

TOOL = Path(__file__).parents[2] / "tools" / "asyncapi"


def parse(path: Path) -> tuple[int, dict[str, object]]:
    node = shutil.which("node")
    if node is None or not (TOOL / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail(
            "the AsyncAPI parser is not installed: needs node and "
            "`npm ci --prefix tools/asyncapi` (python3 dev.py test runs it)"
        )
    done = subprocess.run(
        [node, str(TOOL / "validate.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_the_committed_document_is_current() -> None:
    assert main(["--check"]) == 0, "run: python -m dateline.ingest.asyncapi"


def test_the_official_parser_accepts_it() -> None:
    code, report = parse(PATH)
    assert (code, report["valid"], report["errors"]) == (0, True, [])
    assert report["version"] == "3.0.0"
    assert report["channels"] == ["inbox", "partition", "rejected", "deadLetters"]


def test_every_update_type_is_in_its_schemas() -> None:
    schemas = document()["components"]["schemas"]
    union = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["Update"]["anyOf"]}
    assert len(union) == len(TYPES) == 19
    assert union <= schemas.keys()


def test_the_parser_refuses_a_broken_document(tmp_path: Path) -> None:
    doc = document()
    doc["operations"]["project"]["channel"] = {"$ref": "#/channels/nowhere"}
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    code, report = parse(broken)
    assert code == 1
    assert report["valid"] is False
    assert report["errors"]
