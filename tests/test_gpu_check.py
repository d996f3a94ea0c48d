"""benchmarks/gpu_check.py (the GPU evidence in one command) runs end to end at its tiny sizes on the CPU.

Speed is not asserted (benchmarks report figures); this checks that every part runs and that the one
JSON document has every part, ok, with its benchmark's JSON or test_cuda's counts.
"""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PARTS = {"test_cuda", "adversarial_step", "unlearn", "text_unlearn", "embed_tune"}


def test_gpu_check_tiny_runs_every_part_and_writes_one_json(tmp_path):
    output = tmp_path / "gpu_check.json"
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--tiny", "--device", "cpu", "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(output.read_text())
    assert json.loads(result.stdout) == document
    assert document["tiny"] is True and document["all_ok"] is True
    assert document["torch"] and "device" in document and "cuda" in document
    assert set(document["parts"]) == PARTS
    for name, part in document["parts"].items():
        assert part["status"] == "ok", (name, part)
        assert part["wall_seconds"] <= part["budget_seconds"]
    counts = document["parts"]["test_cuda"]["result"]
    assert counts["failed"] == counts["errors"] == 0 and counts["passed"] + counts["skipped"] > 0
    benchmarks = {name: part["result"]["benchmark"] for name, part in document["parts"].items() if name != "test_cuda"}
    assert benchmarks == {
        "adversarial_step": "adversarial-step",
        "unlearn": "unlearn-repulsion",
        "text_unlearn": "text_unlearn",
        "embed_tune": "embed-tune",
    }


def test_the_real_run_fits_in_eight_minutes():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert set(gpu_check.PARTS) == PARTS
    assert gpu_check.TOTAL_BUDGET <= 8 * 60 - 10  # the parts' timeouts are capped by this total
