"""`python -m bench [--smoke] [NAME ...]`: run the benchmarks, record results, refresh the summary.

Full runs write bench/results/<name>.json and rewrite the summary table in docs/performance.md;
`--smoke` runs every benchmark briefly (CI keeps them from rotting) and records nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import export, hotpath, ingest, memory, persist, replicas, scrape
from bench.common import write_result
from bench.summary import write_summary

BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "hotpath": hotpath.run,
    "ingest": ingest.run,
    "scrape": scrape.run,
    "memory": memory.run,
    "soak": memory.run_soak,
    "export": export.run,
    "persist": persist.run,
    "replicas": replicas.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--smoke", action="store_true", help="seconds-long runs; nothing is recorded")
    args = parser.parse_args()
    for name in args.names or list(BENCHMARKS):
        started = time.perf_counter()
        result = BENCHMARKS[name](args.smoke)
        path = write_result(name, result, args.smoke)
        note = f"{name}: {time.perf_counter() - started:.0f} s" + (f", recorded in {path}" if path else "")
        print(note, file=sys.stderr)  # noqa: T201 - a command-line tool
        if args.smoke:
            print(json.dumps({name: result}))  # noqa: T201 - a command-line tool
    if not args.smoke:
        write_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
