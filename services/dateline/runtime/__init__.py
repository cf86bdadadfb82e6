"""Stream plumbing every consuming service shares: groups, leases, pending, retries, dead letters.

Services give a `Handler`; `Runner` feeds it the partitions this process owns, in
log order, and deals with everything that can go wrong between Redis and it.
"""

from dateline.runtime.runner import Handler, Runner, RunnerConfig
from dateline.store.deadletters import DeadLetters, Delivery

__all__ = ["DeadLetters", "Delivery", "Handler", "Runner", "RunnerConfig"]
