"""Run every benchmark and write bench/results/results.json and results.md.

python3 dev.py bench           # the full run
python3 dev.py bench --quick   # a small run, to check the harness works
"""

from __future__ import annotations

import argparse
import asyncio

from bench import ingest, log_append, projection, readside
from bench.harness import Report

BENCHMARKS = [log_append.run, projection.run, ingest.run, readside.run]


async def main(quick: bool) -> None:
    report = Report()
    for bench in BENCHMARKS:
        await bench(report, quick=quick)
    json_path, md_path = report.write()
    print(f"\nwrote {json_path} and {md_path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates, one run each")
    parser.add_argument("--only", help="run one benchmark module (log_append, projection, ...)")
    args = parser.parse_args()
    if args.only:
        BENCHMARKS[:] = [b for b in BENCHMARKS if b.__module__ == f"bench.{args.only}"]
    asyncio.run(main(args.quick))
