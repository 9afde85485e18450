"""The benchmark still runs: `bench/benchmark.py --quick` end to end. It asserts no speed."""

import json
import subprocess
import sys

import pytest

from bench.benchmark import results_name
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_every_phase_and_writes_its_tables(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "benchmark.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (markdown,) = tmp_path.glob("*.md")
    (figures,) = tmp_path.glob("*.json")
    results = json.loads(figures.read_text())
    phases = {"push", "push_idempotency_key", "pull", "push_batch_100", "pull_batch_100", "mixed"}
    assert set(results["phases"]) == phases
    assert results["phases"]["push_idempotency_key"]["non_2xx"]["max"] == 0
    for figures in results["minimal_app"].values():  # the floor was measured, not refused
        assert figures["non_2xx"]["max"] == 0 and figures["messages_per_s"]["median"] > 0
    assert set(results["journal"]) == {"push_journal_off", "push_journal_everysec", "push_journal_always"}
    assert all(figures["requests_per_s"]["median"] > 0 for figures in results["phases"].values())
    assert set(results["redis"]["rows"]) == {"workers_2", "workers_2_appendonly_everysec"}
    for row in results["redis"]["rows"].values():
        assert row["push"]["requests_per_s"]["median"] > 0 and row["pull"]["requests_per_s"]["median"] > 0
        assert row["push"]["non_2xx"]["max"] == row["pull"]["non_2xx"]["max"] == 0
    assert results["snapshot_times"]["file_bytes"] > 0
    text = markdown.read_text()
    assert "| target | measured | met |" in text
    assert "| push with an Idempotency-Key ≥ 0.9 × plain push |" in text
    assert "| redis, appendonly everysec | 2 |" in text


def test_a_second_run_on_one_day_keeps_the_first_runs_figures(tmp_path):
    assert results_name(tmp_path, "2026-11-30") == "2026-11-30"
    (tmp_path / "2026-11-30.md").write_text("before")
    assert results_name(tmp_path, "2026-11-30") == "2026-11-30-2"
    (tmp_path / "2026-11-30-2.md").write_text("after")
    assert results_name(tmp_path, "2026-11-30") == "2026-11-30-3"
