"""Where the projector found the story states it folded: the kept tiers' health.

Past the warm tier (`DATELINE_PROJECTOR_WARM_MB`) a story's state is packed between its
batches and decoded again on its next update, and the state it pushes out is packed.
Nothing failed and nothing was logged when that happened: at 5,000 updates a second
over 2,000 stories whose states outgrew 64 MB, the projector's CPU an update tripled
(0.08 to 0.25 ms) and it fell seconds behind (`docs/speed.md`, "A working set past the
warm tier"). Past the packed tier (`DATELINE_PROJECTOR_KEEP_MB`) a state is dropped,
and read from the store again when its story next comes: in the soak's 10,000 growing
stories, 47% of a minute's states by its twelfth minute. So each state a batch folds is
counted by where it was found (`dateline_projector_states`), each state dropped past
the bounds too (`dateline_projector_states_dropped`), and a window in which too many
were decoded again, or dropped, ends in a warning that names the setting to raise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FOUND = ("warm", "packed", "read")
"""The values of `dateline_projector_states`'s `found` label."""
WARM_SETTING = "DATELINE_PROJECTOR_WARM_MB"
KEEP_SETTING = "DATELINE_PROJECTOR_KEEP_MB"
WINDOW_S = 60.0
"""The longest a warning waits, and the least time between two."""
SHARE = 0.25
"""Decoded again, or dropped, of the states found in a window, past which it warns."""
LEAST = 1_000
"""States found in a window below which it says nothing: a quiet minute proves little."""


@dataclass
class Warmth:
    """A window's states, by where they were found (`FOUND`): decoded already (warm),
    decoded again (packed), read from the store (not kept: a story new to this process,
    or one dropped past the kept bounds, which a restart makes the rule for a while);
    and the states dropped past the kept bounds meanwhile. Reads alone prove nothing (a
    process new to its stories reads them all); a read that drops another state, in
    turn, is a tier too small for the stories that come round."""

    window_s: float = WINDOW_S
    share: float = SHARE
    least: int = LEAST
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    ends: float | None = None

    def found(
        self, warm: int, packed: int, read: int, now: float, dropped: int = 0
    ) -> list[tuple[str, dict[str, Any]]]:
        """Count one batch's states (and the states dropped to keep them); at the end of a
        window, a warning's fields for each setting it found too small (else none)."""
        counts = self.counts
        counts[0] += warm
        counts[1] += packed
        counts[2] += read
        counts[3] += dropped
        if self.ends is None:
            self.ends = now + self.window_s
        if now < self.ends:
            return []
        self.ends, self.counts = now + self.window_s, [0, 0, 0, 0]
        total = sum(counts[:3])
        if total < self.least:
            return []
        said = {"states": total, **dict(zip(FOUND, counts[:3], strict=True)), "dropped": counts[3]}
        again, lost = counts[1] / total, counts[3] / total
        warnings = []
        if again > self.share:
            warnings.append((WARM_SETTING, {**said, "decoded_again": round(again, 2)}))
        if lost > self.share:
            warnings.append((KEEP_SETTING, {**said, "dropped_share": round(lost, 2)}))
        return warnings
