"""The clock the services' rate limiter reads in a test (the `limiter_clock` fixture)."""

from __future__ import annotations


class LimiterClock:
    """The rate limiter's clock, which only the test moves. On the real one, a loaded
    machine let a burst's fifth request in: an OpenAPI answer took 0.1 to 0.35 s there,
    and at 2 a second the bucket gained a token before the fifth came in."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now
