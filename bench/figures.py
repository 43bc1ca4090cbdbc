"""The figures a benchmark hands to `make bench`: each ratio it prints, by name, with which
way is better, so that a run is recorded and compared as data rather than by parsing text.

A benchmark run on its own (`python -m bench.rpc`) only prints; run by `python -m bench`, it
also appends its figures to the file named by MESH_BENCH_FIGURES.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FIGURES_ENV = "MESH_BENCH_FIGURES"
"""Where a benchmark appends its figures (one JSON object a line); unset: nowhere."""

Better = Literal["higher", "lower"]


@dataclass(frozen=True)
class Figure:
    """One measured figure of a run: a ratio against the raw library, mostly.

    Attributes:
        name: What it measures, e.g. "sdk / plain throughput".
        value: The figure.
        better: Which way is an improvement.
    """

    name: str
    value: float
    better: Better = "higher"

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "value": self.value, "better": self.better}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Figure:
        better = data.get("better", "higher")
        if better not in ("higher", "lower"):
            raise ValueError(f"figure {data.get('name')!r}: 'better' is {better!r}; expected 'higher' or 'lower'")
        value = data["value"]
        if not isinstance(value, int | float):
            raise ValueError(f"figure {data.get('name')!r}: 'value' is {value!r}; expected a number")
        return cls(str(data["name"]), float(value), better)


def record(name: str, value: float, *, better: Better = "higher") -> None:
    """Hand one figure to `make bench` (nothing happens when the benchmark runs on its own)."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as file:
        file.write(json.dumps(Figure(name, round(value, 4), better).as_json()) + "\n")


def read(path: Path) -> list[Figure]:
    """The figures a benchmark appended to `path` (none if it wrote none)."""
    if not path.exists():
        return []
    return [Figure.from_json(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
