"""`make bench`: run the benchmarks, compare their figures with the recorded ones, and record
the run in docs/benchmarks.md and bench/recorded.json.

    python -m bench [NAME ...] [--no-record]

NAME is one of rpc, boot, events, events_auth, tracing, gateway (all when none is given). With
--no-record nothing is written but bench/runs/last.json, and the exit status is 1 when a
figure got more than 10 % worse than recorded (see bench.compare). A benchmark that fails
stops the run, and nothing of it is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import compare, figures, report

BENCHMARKS: dict[str, tuple[str, ...]] = {
    # Its ratios swing by up to 0.1 between runs of one set of server processes, more than
    # between the rounds of one run: five sets of fresh processes, three rounds each.
    "rpc": ("--rounds", "3", "--process-sets", "5"),
    "boot": (),
    "events": (),
    "events_auth": (),
    "tracing": (),
    "gateway": (),
}
"""Every benchmark, with the arguments `make bench` gives it."""


def shown_command(name: str) -> str:
    """How to run bench.`name` as `make bench` does, from the project's folder."""
    return " ".join((".venv/bin/python", "-m", f"bench.{name}", *BENCHMARKS[name]))


def run_one(name: str, scratch: Path) -> tuple[str, list[figures.Figure]]:
    """Run bench.`name`, echoing its output; returns the output and the figures it recorded.

    Raises:
        RuntimeError: It exited with a failure, or recorded no figure.
    """
    figures_file = scratch / f"{name}.jsonl"
    command = [sys.executable, "-m", f"bench.{name}", *BENCHMARKS[name]]
    print(f"\n== {shown_command(name)}", flush=True)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, figures.FIGURES_ENV: str(figures_file)},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        print(line, end="", flush=True)
        lines.append(line)
    if process.wait() != 0:
        raise RuntimeError(f"bench.{name} exited with status {process.returncode}; nothing of this run is recorded")
    found = figures.read(figures_file)
    if not found:
        raise RuntimeError(f"bench.{name} recorded no figure (bench.figures.record); nothing of this run is recorded")
    return "".join(lines), found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-record", action="store_true", help="compare only; write no docs and no record")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    date, where = datetime.date.today().isoformat(), report.machine()
    run: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-") as scratch:
        for name in names:
            try:
                output, found = run_one(name, Path(scratch))
            except RuntimeError as error:
                print(f"bench: {error}", file=sys.stderr)
                return 1
            run[name] = {
                "date": date,
                "machine": where,
                "command": shown_command(name),
                "output": output,
                "figures": [figure.as_json() for figure in found],
            }
    compare.LAST_RUN.parent.mkdir(exist_ok=True)
    compare.LAST_RUN.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    recorded = _recorded()
    table, flagged = compare.report(compare.compare(_figures(recorded), _figures(run)))
    print(f"\n== against {compare.RECORDED.name}\n{table}")
    if flagged:
        print(f"{flagged} figure(s) more than {compare.TOLERANCE:.0%} worse than recorded", file=sys.stderr)
    if args.no_record:
        return 1 if flagged else 0
    try:
        _record(recorded, run)
    except ValueError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(f"recorded in {report.DOCS} and {compare.RECORDED}")
    return 0


def _recorded() -> dict[str, dict[str, object]]:
    if not compare.RECORDED.exists():
        return {}
    compare.load_figures(compare.RECORDED)  # refuses a damaged record before it is merged into
    data: dict[str, dict[str, object]] = json.loads(compare.RECORDED.read_text(encoding="utf-8"))
    return data


def _figures(entries: dict[str, dict[str, object]]) -> dict[str, dict[str, figures.Figure]]:
    return compare.figures_of(entries, "the figures")


def _record(recorded: dict[str, dict[str, object]], run: dict[str, dict[str, object]]) -> None:
    """Write the run's sections and the goals into the docs, and the run into the record
    (benchmarks not run keep what was recorded before).

    Raises:
        ValueError: The docs lack a benchmark's markers (nothing is written then).
    """
    merged = {**recorded, **{name: {k: v for k, v in entry.items() if k != "output"} for name, entry in run.items()}}
    text = report.DOCS.read_text(encoding="utf-8")
    for name, entry in run.items():
        text = report.replace_block(
            text,
            name,
            report.section(str(entry["command"]), str(entry["date"]), str(entry["machine"]), str(entry["output"])),
        )
    dates = {name: str(entry["date"]) for name, entry in merged.items()}
    text = report.replace_block(text, "goals", report.goals_table(_figures(merged), dates))
    report.DOCS.write_text(text, encoding="utf-8")
    compare.RECORDED.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
