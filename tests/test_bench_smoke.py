"""The benchmarks still run: ``bench/run_all.py --quick`` (what ``make bench-quick`` and CI call)
exits 0 and writes a summary with rows for every figure (1-14). Quick mode gives no verdicts,
so this checks that the benches work, not how fast this machine is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_quick_runs_every_figure(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["quick"] is True
    assert summary["crashed"] == []
    assert sorted(summary["figures"], key=int) == [str(i) for i in range(1, 15)]
    for figure, rows in summary["figures"].items():
        assert rows, f"figure {figure} has no rows"
        for row in rows:
            assert row["measured"] is not None, row
            assert row["pass"] is None  # quick runs give no verdicts
