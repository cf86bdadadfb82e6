"""The dateline story-update contract as code: CloudEvents envelope and every update type.

Public API: `Update` (the tagged union), `decode_update` (strict, for producers' input),
`decode_record`/`decode_records` (for what the log stored), `InvalidUpdate`/`Problem`,
and the limits.
"""

from dateline_schemas._rules import (
    STORY_ID_PATTERN,
    FuzzyDate,
    RuleError,
    check_ref,
    check_story_id,
    parse_duration,
    parse_fuzzy_date,
)
from dateline_schemas.decoding import (
    MAX_BATCH_BYTES,
    MAX_BATCH_UPDATES,
    MAX_UPDATE_BYTES,
    Decoded,
    InvalidUpdate,
    Problem,
    decode_record,
    decode_records,
    decode_update,
)
from dateline_schemas.upcasting import UPCASTERS, Upcasters
from dateline_schemas.updates import TYPES, UPDATE_CLASSES, Update

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_UPDATES",
    "MAX_UPDATE_BYTES",
    "STORY_ID_PATTERN",
    "TYPES",
    "UPCASTERS",
    "UPDATE_CLASSES",
    "Decoded",
    "FuzzyDate",
    "InvalidUpdate",
    "Problem",
    "RuleError",
    "Upcasters",
    "Update",
    "check_ref",
    "check_story_id",
    "decode_record",
    "decode_records",
    "decode_update",
    "parse_duration",
    "parse_fuzzy_date",
]
