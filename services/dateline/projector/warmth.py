"""Where the projector found the story states it folded: the warm tier's health.

Past the warm tier (`DATELINE_PROJECTOR_WARM_MB`) a story's state is packed between its
batches and decoded again on its next update, and the state it pushes out is packed.
Nothing failed and nothing was logged when that happened: at 5,000 updates a second
over 2,000 stories whose states outgrew 64 MB, the projector's CPU an update tripled
(0.08 to 0.25 ms) and it fell seconds behind (`docs/speed.md`, "A working set past the
warm tier"). So each state a batch folds is counted by where it was found
(`dateline_projector_states`), and a window in which too many were decoded again ends
in a warning that names the setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FOUND = ("warm", "packed", "read")
"""The values of `dateline_projector_states`'s `found` label."""
WINDOW_S = 60.0
"""The longest a warning waits, and the least time between two."""
SHARE = 0.25
"""Decoded again, of the states found in a window, past which it warns."""
LEAST = 1_000
"""States found in a window below which it says nothing: a quiet minute proves little."""


@dataclass
class Warmth:
    """A window's states, by where they were found (`FOUND`): decoded already (warm),
    decoded again (packed), read from the store (not kept: a story new to this process,
    or one dropped past the kept bounds, which a restart makes the rule for a while)."""

    window_s: float = WINDOW_S
    share: float = SHARE
    least: int = LEAST
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])
    ends: float | None = None

    def found(self, warm: int, packed: int, read: int, now: float) -> dict[str, Any] | None:
        """Count one batch's states; at the end of a window that decoded too many again,
        what its warning says (else None)."""
        counts = self.counts
        counts[0] += warm
        counts[1] += packed
        counts[2] += read
        if self.ends is None:
            self.ends = now + self.window_s
        if now < self.ends:
            return None
        total = sum(counts)
        again = counts[1] / total if total else 0.0
        said = {
            "states": total,
            "decoded_again": round(again, 2),
            **dict(zip(FOUND, counts, strict=True)),
        }
        self.ends, self.counts = now + self.window_s, [0, 0, 0]
        return None if total < self.least or again <= self.share else said
