"""`make bench`: run every benchmark in turn; copy the output into docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("bench.rpc", "bench.boot", "bench.events", "bench.events_auth", "bench.tracing")


def main() -> int:
    for name in BENCHMARKS:
        print(f"\n== python -m {name}", flush=True)
        code = subprocess.call([sys.executable, "-m", name])
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
