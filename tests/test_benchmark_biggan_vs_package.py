"""benchmarks/biggan_vs_package.py runs at its tiniest settings and finds ganedit and the package agreeing.

The figures themselves are not checked (tests assert behaviour, benchmarks report figures); the package
is not a ganedit dependency, so the run is skipped where it is not installed.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "biggan_vs_package.py"
RESULT_KEYS = {
    "resolution",
    "batch_size",
    "phase",
    "ganedit_s_per_step",
    "package_s_per_step",
    "ganedit_images_per_s",
    "package_images_per_s",
    "ratio",
    "max_abs_diff",
}


def test_benchmark_reports_both_phases_with_matching_images():
    pytest.importorskip("pytorch_pretrained_biggan")
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--resolutions", "128", "--batch-sizes", "1"]
    result = subprocess.run([*command, "--repeats", "1", "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {"device", "torch", "threads", "settings", "checks", "results"} <= set(report)
    assert report["threads"] == 1
    assert report["checks"]["128"]["max_abs_diff"] < 1e-3
    assert report["checks"]["128"]["image_std"] > 0.01  # the random weights give images, not a constant
    assert [(row["resolution"], row["batch_size"], row["phase"]) for row in report["results"]] == [
        (128, 1, "sample"),
        (128, 1, "embed_tune"),
    ]
    for row in report["results"]:
        assert set(row) == RESULT_KEYS
        assert row["ganedit_s_per_step"] > 0 and row["package_s_per_step"] > 0
        assert row["max_abs_diff"] < 1e-3


def test_benchmark_without_the_package_says_so_in_one_line():
    hide_package = (
        "import runpy, sys; sys.modules['pytorch_pretrained_biggan'] = None; "
        f"sys.path.insert(0, {str(SCRIPT.parent)!r}); sys.argv = [{str(SCRIPT)!r}]; "
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
    )
    result = subprocess.run([sys.executable, "-c", hide_package], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "pip install pytorch-pretrained-biggan" in result.stderr
