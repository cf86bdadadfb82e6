"""What a wake costs this machine: the CPU of one message between two processes.

At 1,000 updates a second, each update crosses the processes of its path one message at
a time (the append to the log's server, the projector's read and its commit, the
doorbell to the query, the query's reads, the push), and each message wakes a process
that was asleep. What a wake costs is the machine's, not dateline's: on the VM these
benches ran on (KVM, `cpuidle` haltpoll with no polling), a process woken on the other
core, idle and so halted, cost about six times one woken on its own. That is at most a
tenth of the CPU an update at 1,000/s: with the VM's halt polling turned on for a test
the ping-pong cost a sixth as much, and the 1,000/s case about as much as before
(`docs/speed.md`, "What a wake costs").

Measured as a ping-pong of one byte through two pipes between this process and a
child, `ROUND_TRIPS` times: the CPU both spend a round trip (two wakes), with the two
pinned to two cores and then to one, in the same run. Linux only (`sched_setaffinity`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bench.harness import Report, Row

ROUND_TRIPS = 20_000

_ECHO = """\
import os, sys, time
n = int(sys.argv[1])
os.read(0, 1)  # started: the parent's first byte
os.write(1, b"x")
t = time.process_time()
for _ in range(n):
    os.read(0, 1)
    os.write(1, b"x")
os.write(1, repr(time.process_time() - t).encode())
"""
"""The child: answers each byte with one, then writes the CPU its loop took."""


def round_trip_us(n: int, cores: tuple[int, int]) -> float:
    """CPU microseconds, both processes, a round trip of a byte: this process pinned
    to `cores[0]`, its child to `cores[1]` (the same core, or two)."""
    mine = os.sched_getaffinity(0)
    child = subprocess.Popen(
        [sys.executable, "-c", _ECHO, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None
    assert child.stdout is not None
    to, back = child.stdin.fileno(), child.stdout.fileno()
    try:
        os.sched_setaffinity(0, {cores[0]})
        os.sched_setaffinity(child.pid, {cores[1]})
        os.write(to, b"x")
        os.read(back, 1)  # the child's interpreter has started
        before = time.process_time()  # not os.times(): its ticks of 10 ms read 0
        for _ in range(n):
            os.write(to, b"x")
            os.read(back, 1)
        ours = time.process_time() - before
        theirs = float(child.stdout.read())
    finally:
        os.sched_setaffinity(0, mine)
        child.kill()
        child.wait()
    return (ours + theirs) / n * 1e6


async def run(report: Report, *, quick: bool = False) -> None:
    cores = sorted(os.sched_getaffinity(0))
    n = ROUND_TRIPS // 10 if quick else ROUND_TRIPS
    print(f"wakes: {n:,} round trips between two processes, on two cores and on one")
    if len(cores) < 2:
        print("  one core only: nothing to compare")
        return
    across: list[float] = []
    alone: list[float] = []
    for _ in range(3):  # alternated: the VM's speed moves
        across.append(round_trip_us(n, (cores[0], cores[1])))
        alone.append(round_trip_us(n, (cores[0], cores[0])))
    two, one = statistics.median(across), statistics.median(alone)
    rounds = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(across, alone, strict=True))
    report.add(
        Row(
            "wakes",
            "CPU a round trip between two processes on two cores (two wakes)",
            two,
            "us",
            baseline="both on one core",
            ratio=two / one,
            note=(
                f"medians of 3, alternated; on one core {one:.1f} us; rounds "
                f"(two cores/one): {rounds}"
                "; a byte through two pipes, what each message between dateline's "
                "processes costs at the least"
            ),
        )
    )
