"""Run every benchmark and write bench/results/results.json and results.md.

python3 dev.py bench           # the full run
python3 dev.py bench --quick   # a small run, to check the harness works

Each benchmark module runs in a fresh interpreter, one after another, so none
inherits another's heap (the rebuild loads 1,000,000 updates) or its garbage
collector's state; the rows are collected here.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
from tests.e2e.processes import SERVICES_CODE, changed, sources

from bench import (
    cluster,
    deliver,
    ingest,
    instructions,
    log_append,
    projection,
    readside,
    rings,
    status,
    wakes,
)
from bench.harness import RESULTS, Report, Row

BENCHMARKS = [
    log_append.run,
    projection.run,
    ingest.run,
    wakes.run,
    readside.run,
    deliver.run,
    cluster.run,
    rings.run,
    status.run,
    instructions.run,
]


def _name(bench: object) -> str:
    return str(getattr(bench, "__module__", "")).removeprefix("bench.")


def one(name: str, quick: bool, rows_to: Path) -> None:
    """In the child: run one benchmark; its rows go to `rows_to`."""
    report = Report()
    [bench] = [b for b in BENCHMARKS if _name(b) == name]
    asyncio.run(bench(report, quick=quick))
    rows_to.write_bytes(msgspec.json.encode(report.rows))


def main(names: list[str], quick: bool, out: Path = RESULTS) -> int:
    report = Report()
    code = sources(*SERVICES_CODE)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows = Path(tmp) / f"{name}.json"
            command = [sys.executable, "-m", "bench", "--only", name, "--rows-to", str(rows)]
            subprocess.run([*command, *(["--quick"] if quick else [])], check=True)
            report.rows += msgspec.json.decode(rows.read_bytes(), type=list[Row])
    # Each module, and each service it starts, imports the tree as it is then.
    report.code_changed = changed(code, sources(*SERVICES_CODE))
    json_path, md_path = report.write(out)
    print(f"\nwrote {json_path} and {md_path}")
    if report.code_changed:
        print(f"the services' code changed during the run: {report.code_changed[:10]}")
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates, one run each")
    parser.add_argument(
        "--only", choices=[_name(b) for b in BENCHMARKS], help="run this benchmark alone"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where results.json and results.md go (default: bench/results)",
    )
    parser.add_argument("--rows-to", type=Path, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.rows_to:
        one(args.only, args.quick, args.rows_to)
    else:
        names = [args.only] if args.only else [_name(b) for b in BENCHMARKS]
        sys.exit(main(names, args.quick, args.out))
