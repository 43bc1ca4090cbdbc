"""A run's figures against the recorded ones: every figure more than 10 % worse is flagged.

    python -m bench.compare [RUN] [--recorded bench/recorded.json] [--tolerance 0.10]

RUN is a run written by `make bench` (bench/runs/last.json unless given). Exit status 1
when a figure got worse by more than the tolerance, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.figures import Figure

BENCH = Path(__file__).resolve().parent
RECORDED = BENCH / "recorded.json"
"""The figures docs/benchmarks.md shows, by benchmark (written by `make bench`)."""
LAST_RUN = BENCH / "runs" / "last.json"
"""The figures of the last `make bench`, recorded or not."""
TOLERANCE = 0.10


@dataclass(frozen=True)
class Change:
    """One figure of a run beside its recorded value."""

    benchmark: str
    figure: Figure
    recorded: float | None

    @property
    def relative(self) -> float | None:
        """How much better (positive) or worse (negative) than recorded, as a fraction."""
        if self.recorded is None or self.recorded == 0:
            return None
        change = (self.figure.value - self.recorded) / abs(self.recorded)
        return change if self.figure.better == "higher" else -change

    def worse_than(self, tolerance: float) -> bool:
        relative = self.relative
        return relative is not None and relative < -tolerance


def load_figures(path: Path) -> dict[str, dict[str, Figure]]:
    """The figures of a run or record file, by benchmark and name.

    Raises:
        ValueError: The file is missing, is no JSON, or is not laid out as `make bench` writes it.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; `make bench` writes it") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    return figures_of(data, str(path))


def figures_of(data: object, where: str) -> dict[str, dict[str, Figure]]:
    """The figures of a run or record, read from its JSON, by benchmark and name.

    Raises:
        ValueError: It is not laid out as `make bench` writes it (`where` says whose it is).
    """
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of benchmarks, got {type(data).__name__}")
    found: dict[str, dict[str, Figure]] = {}
    for benchmark, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("figures"), list):
            raise ValueError(f"{where}: benchmark {benchmark!r} has no list of 'figures'")
        try:
            figures = [Figure.from_json(item) for item in entry["figures"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: benchmark {benchmark!r}: {error}") from None
        found[benchmark] = {figure.name: figure for figure in figures}
    return found


def compare(recorded: dict[str, dict[str, Figure]], run: dict[str, dict[str, Figure]]) -> list[Change]:
    """Every figure of `run` beside its recorded value (None where nothing was recorded)."""
    changes = []
    for benchmark, figures in run.items():
        known = recorded.get(benchmark, {})
        for figure in figures.values():
            before = known.get(figure.name)
            changes.append(Change(benchmark, figure, before.value if before else None))
    return changes


def report(changes: list[Change], tolerance: float = TOLERANCE) -> tuple[str, int]:
    """The comparison as a table, and how many figures got worse than `tolerance` allows."""
    lines = [f"{'benchmark':<12}{'figure':<50}{'recorded':>10}{'now':>10}{'change':>9}"]
    flagged = 0
    for change in changes:
        relative = change.relative
        recorded = "-" if change.recorded is None else f"{change.recorded:.2f}"
        shown = "new" if relative is None else f"{relative:+.0%}"
        mark = ""
        if change.worse_than(tolerance):
            flagged += 1
            mark = f"  <- worse by more than {tolerance:.0%} ({change.figure.better} is better)"
        lines.append(
            f"{change.benchmark:<12}{change.figure.name:<50}{recorded:>10}{change.figure.value:>10.2f}{shown:>9}{mark}"
        )
    return "\n".join(lines), flagged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", nargs="?", type=Path, default=LAST_RUN, help="a run written by make bench")
    parser.add_argument("--recorded", type=Path, default=RECORDED, help="the recorded figures")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="how much worse is flagged (0.10: 10 %%)")
    args = parser.parse_args(argv)
    try:
        recorded, run = load_figures(args.recorded), load_figures(args.run)
    except ValueError as error:
        print(f"bench.compare: {error}", file=sys.stderr)
        return 2
    table, flagged = report(compare(recorded, run), args.tolerance)
    print(table)
    if flagged:
        print(f"{flagged} figure(s) worse than recorded by more than {args.tolerance:.0%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
