"""`make bench`'s record keeping: a figure that got worse is flagged, the docs get each
benchmark's block and the goals, and a missing marker or a damaged record is a clear error.

The benchmarks themselves are not run here (speed lives in bench/, never in tests)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import figures, report
from bench.compare import compare, figures_of
from bench.goals import GOALS, Goal
from conftest import PROJECT


def run_file(path, benchmark: str, *items: tuple[str, float, str]) -> None:
    path.write_text(
        json.dumps(
            {
                benchmark: {
                    "date": "2026-11-24",
                    "figures": [{"name": name, "value": value, "better": better} for name, value, better in items],
                }
            }
        )
    )


def compare_files(recorded, run) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.compare", str(run), "--recorded", str(recorded)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_figure_more_than_ten_percent_worse_is_flagged_either_way_round(tmp_path):
    recorded, run = tmp_path / "recorded.json", tmp_path / "run.json"
    run_file(recorded, "rpc", ("sdk / plain throughput", 0.90, "higher"), ("sdk / plain p99", 1.20, "lower"))

    run_file(run, "rpc", ("sdk / plain throughput", 0.80, "higher"), ("sdk / plain p99", 1.25, "lower"))
    dropped = compare_files(recorded, run)
    assert dropped.returncode == 1
    flagged = [line for line in dropped.stdout.splitlines() if "worse by more than 10%" in line]
    assert len(flagged) == 1 and "sdk / plain throughput" in flagged[0]
    assert "1 figure(s) worse than recorded by more than 10%" in dropped.stderr

    run_file(run, "rpc", ("sdk / plain throughput", 0.95, "higher"), ("sdk / plain p99", 1.40, "lower"))
    slower = compare_files(recorded, run)
    assert slower.returncode == 1
    (flagged_line,) = [line for line in slower.stdout.splitlines() if "<-" in line]
    assert "sdk / plain p99" in flagged_line and "(lower is better)" in flagged_line

    run_file(run, "rpc", ("sdk / plain throughput", 0.85, "higher"), ("sdk / plain p99", 1.10, "lower"))
    within = compare_files(recorded, run)
    assert within.returncode == 0, within.stdout + within.stderr
    assert "<-" not in within.stdout


def test_a_figure_never_recorded_is_shown_as_new_and_not_flagged():
    run = figures_of({"events": {"figures": [{"name": "x throughput", "value": 0.5, "better": "higher"}]}}, "run")
    (change,) = compare({}, run)
    assert change.recorded is None and change.relative is None and not change.worse_than(0.1)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("not json", "is not JSON"),
        ('["rpc"]', "expected an object of benchmarks"),
        ('{"rpc": {"date": "x"}}', "benchmark 'rpc' has no list of 'figures'"),
        ('{"rpc": {"figures": [{"name": "a", "value": 1, "better": "up"}]}}', "'better' is 'up'"),
        ('{"rpc": {"figures": [{"name": "a", "value": "fast"}]}}', "'value' is 'fast'"),
    ],
)
def test_a_damaged_record_is_refused_with_what_is_wrong(tmp_path, content, says):
    recorded, run = tmp_path / "recorded.json", tmp_path / "run.json"
    recorded.write_text(content)
    run_file(run, "rpc", ("sdk / plain throughput", 0.9, "higher"))
    result = compare_files(recorded, run)
    assert result.returncode == 2
    assert result.stderr.startswith(f"bench.compare: {recorded}") and says in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_record_says_what_writes_it(tmp_path):
    run = tmp_path / "run.json"
    run_file(run, "rpc", ("sdk / plain throughput", 0.9, "higher"))
    result = compare_files(tmp_path / "none.json", run)
    assert result.returncode == 2 and "does not exist; `make bench` writes it" in result.stderr


def test_a_benchmark_hands_its_figures_over_only_when_asked(tmp_path, monkeypatch):
    target = tmp_path / "figures.jsonl"
    monkeypatch.delenv(figures.FIGURES_ENV, raising=False)
    figures.record("alone", 1.0)
    assert not target.exists()
    monkeypatch.setenv(figures.FIGURES_ENV, str(target))
    figures.record("sdk / plain throughput", 0.876543)
    figures.record("sdk idle RSS MiB", 70.4, better="lower")
    assert figures.read(target) == [
        figures.Figure("sdk / plain throughput", 0.8765, "higher"),
        figures.Figure("sdk idle RSS MiB", 70.4, "lower"),
    ]


def test_the_docs_blocks_are_replaced_between_their_markers_and_nothing_else():
    text = "intro\n<!-- bench:rpc -->\nold figures\n<!-- /bench:rpc -->\nprose kept\n"
    written = report.replace_block(text, "rpc", report.section("cmd", "2026-11-24", "2 cores", "ratio 0.9\n"))
    assert written == (
        "intro\n<!-- bench:rpc -->\nCommand: `cmd`, 2026-11-24, 2 cores (written by `make bench`):\n\n"
        "```\nratio 0.9\n```\n<!-- /bench:rpc -->\nprose kept\n"
    )
    with pytest.raises(ValueError, match="add the lines '<!-- bench:boot -->' and '<!-- /bench:boot -->'"):
        report.replace_block(text, "boot", "x")


def test_the_goals_table_says_met_missed_or_unmeasured():
    recorded = figures_of(
        {
            "rpc": {
                "figures": [
                    {"name": "sdk / plain throughput", "value": 0.97, "better": "higher"},
                    {"name": "sdk idle RSS MiB", "value": 70.0, "better": "lower"},
                ]
            }
        },
        "record",
    )
    unmeasured = Goal("p999 latency / raw", "", "", 3.0)
    rows = report.goals_table(recorded, {"rpc": "2026-11-24"}, [*GOALS, unmeasured]).splitlines()
    assert len(rows) == 2 + len(GOALS) + 1
    by_goal = {row.split(" | ")[0].lstrip("| "): row for row in rows[2:]}
    assert (
        "| ≥ 0.95 | 0.97 | yes | bench.rpc, 2026-11-24 |"
        in by_goal["unary RPC through an SDK module / raw grpc.aio, plaintext"]
    )
    assert "| ≤ 60 | 70.00 | **no** |" in by_goal["idle module process RSS, MiB"]
    assert "no benchmark measures it yet" in by_goal["p999 latency / raw"]
    assert (
        "not recorded by bench.events"
        in by_goal["SDK ephemeral events / raw nats-py with the same CloudEvents headers"]
    )


def test_every_documented_block_has_its_markers():
    text = report.DOCS.read_text()
    for name in ("goals", "rpc", "boot", "events", "events_auth", "tracing", "gateway"):
        assert f"<!-- bench:{name} -->" in text and f"<!-- /bench:{name} -->" in text, name
