"""docs/benchmarks.md as `make bench` leaves it: each benchmark's output, command, date and
machine between its markers, and the goals beside the recorded figures.

The prose around the markers (what each benchmark does, where the time goes) is written by
hand; a figure it quotes is from the run it names.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.figures import Figure
from bench.goals import GOALS, Goal

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """This machine in a few words: cores, processor, memory, kernel, Python."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " " + line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (
        f"{os.cpu_count()} cores{model}{memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def section(command: str, date: str, where: str, output: str) -> str:
    """What goes between a benchmark's markers."""
    return f"Command: `{command}`, {date}, {where} (written by `make bench`):\n\n```\n{output.rstrip()}\n```\n"


def goals_table(
    recorded: Mapping[str, Mapping[str, Figure]], dates: Mapping[str, str], goals: Sequence[Goal] = GOALS
) -> str:
    """The goals beside the recorded figures, as a markdown table."""
    rows = ["| goal | bound | recorded | met | run |", "|---|---|---|---|---|"]
    for goal in goals:
        figure = recorded.get(goal.benchmark, {}).get(goal.figure) if goal.benchmark else None
        if figure is None:
            why = "no benchmark measures it yet" if not goal.benchmark else f"not recorded by bench.{goal.benchmark}"
            rows.append(f"| {goal.what} | — | — | {why} | — |")
            continue
        sign = "≥" if figure.better == "higher" else "≤"
        met = "yes" if goal.met_by(figure) else "**no**"
        rows.append(
            f"| {goal.what} | {sign} {goal.bound:g} | {figure.value:.2f} | {met} | "
            f"bench.{goal.benchmark}, {dates.get(goal.benchmark, '?')} |"
        )
    return "\n".join(rows) + "\n"


def replace_block(text: str, name: str, content: str) -> str:
    """`text` with what stands between `<!-- bench:name -->` and `<!-- /bench:name -->` replaced.

    Raises:
        ValueError: The markers are missing: they say where the figures go.
    """
    pattern = re.compile(rf"(<!-- bench:{re.escape(name)} -->\n)(.*?)(<!-- /bench:{re.escape(name)} -->)", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(
            f"{DOCS} has no block for {name!r}: add the lines '<!-- bench:{name} -->' and "
            f"'<!-- /bench:{name} -->' where its figures belong"
        )
    return pattern.sub(lambda found: found.group(1) + content + found.group(3), text, count=1)
