"""Schema evolution: turn an older payload version into the current one before decoding.

An update names its schema version in CloudEvents `dataschema`, ending in `:vN` or
`/vN` (`urn:dateline:schema:dateline.schedule.rescheduled:v2`); without one it is
v1. An upcaster takes the generic JSON object of version N of a type and returns
version N+1. v1 is current for every type, so the registry starts empty; the hook
exists so that the first incompatible change is a registration, not a migration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Doc = dict[str, Any]
Upcaster = Callable[[Doc], Doc]
_VERSION = re.compile(r"[:/]v(\d+)$")


def schema_version(doc: Doc) -> int:
    schema = doc.get("dataschema")
    if isinstance(schema, str) and (m := _VERSION.search(schema)):
        return int(m[1])
    return 1


class Upcasters:
    """Upcasters keyed by (type, the schema version they read)."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def add(step: Upcaster) -> Upcaster:
            key = (type_, from_version)
            if key in self._steps:
                raise ValueError(f"an upcaster for {type_} v{from_version} is registered already")
            self._steps[key] = step
            return step

        return add

    def __bool__(self) -> bool:
        return bool(self._steps)

    def applies(self, doc: Doc) -> bool:
        return (str(doc.get("type")), schema_version(doc)) in self._steps

    def upcast(self, doc: Doc) -> Doc:
        """Apply every registered step, oldest first, until none applies."""
        while self.applies(doc):
            type_, version = str(doc.get("type")), schema_version(doc)
            doc = self._steps[(type_, version)](dict(doc))
            if schema_version(doc) != version + 1:
                raise ValueError(
                    f"upcaster for {type_} v{version} must set dataschema to v{version + 1}"
                )
        return doc


UPCASTERS = Upcasters()
"""The registry the decoder uses. Empty: v1 is current for every type."""
