"""benchmarks/run.py: the table and the merge that keeps the rows a partial run did not measure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import run  # noqa: E402


def row(bench_id: str, ratio: float, met: bool, when: str) -> dict:
    return {"id": bench_id, "title": f"bench {bench_id}", "ratio": ratio, "goal": ">= 2x", "met": met,
            "summary": f"measured {ratio}", "run_at": when}


def test_a_partial_run_updates_its_rows_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    first = run.merge_results([row("P3", 1.5, False, "2026-01-01 10:00"), row("P1", 3.0, True, "2026-01-01 10:00"),
                               {"id": "P2", "skipped": "optional dependency missing", "run_at": "2026-01-01 10:00"}])
    assert [r["id"] for r in first] == ["P1", "P2", "P3"]  # suite order
    merged = run.merge_results([row("P3", 2.5, True, "2026-01-02 09:00")])
    assert [(r["id"], r.get("ratio")) for r in merged] == [("P1", 3.0), ("P2", None), ("P3", 2.5)]
    assert json.loads((tmp_path / "results.json").read_text())["results"] == merged
    text = run.table(merged)
    assert "| P1 | bench P1 | 3.00x | >= 2x | yes | measured 3.0 |" in text
    assert "| P3 | bench P3 | 2.50x | >= 2x | yes | measured 2.5 |" in text
    assert "skipped: optional dependency missing" in text


def test_unknown_ids_are_refused(capsys):
    import pytest

    with pytest.raises(SystemExit):
        run.main(["--only", "P42"])
    assert "unknown benchmark id(s) P42; valid: P1" in capsys.readouterr().err


def test_rows_keep_the_machine_they_were_measured_on(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path / "results.json")
    (tmp_path / "results.json").write_text(json.dumps({"machine": "Xeon, 2 cores", "results": [
        row("P1", 3.0, True, "2026-01-01 10:00"), row("P4", 2.0, True, "2026-01-01 10:00")]}))
    merged = run.merge_results([{**row("P4", 5.0, True, "2026-01-02 09:00"), "measured_on": "EPYC, 2 cores"}])
    assert [(r["id"], r["measured_on"]) for r in merged] == [("P1", "Xeon, 2 cores"), ("P4", "EPYC, 2 cores")]
    assert run.machines_line(merged) == "Machines: Xeon, 2 cores (P1); EPYC, 2 cores (P4)."
    assert run.machines_line(merged[:1]) == "Machine: Xeon, 2 cores."
