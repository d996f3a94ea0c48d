"""benchmarks/stylegan2_vs_nvidia.py runs at its tiniest setting and finds ganedit and NVIDIA's code agreeing.

The figures themselves are not checked (tests assert behaviour, benchmarks report figures). NVIDIA's
stylegan2-ada-pytorch is neither a dependency nor vendored: the comparison runs only where a checkout is
found ($GANEDIT_STYLEGAN2_ADA, else ../shared/stylegan2-ada-pytorch beside the repository) and is skipped,
saying so, elsewhere. The run without a peer needs none and always runs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "stylegan2_vs_nvidia.py"
PEER_ENV = "GANEDIT_STYLEGAN2_ADA"
DEFAULT_PEER = REPO.parent / "shared" / "stylegan2-ada-pytorch"
PHASES = ["sample", "g_step", "d_step"]
RESULT_KEYS = {
    "setting",
    "resolution",
    "batch_size",
    "phase",
    "ganedit_s_per_step",
    "peer_s_per_step",
    "ganedit_images_per_s",
    "peer_images_per_s",
    "ratio",
    "max_abs_diff",
}


def peer_checkout() -> Path:
    value = os.environ.get(PEER_ENV)
    if value == "":
        pytest.skip(f"{PEER_ENV} is set empty: no stylegan2-ada-pytorch checkout to compare against")
    path = Path(value).expanduser() if value else DEFAULT_PEER
    if not (path / "training" / "networks.py").is_file():
        pytest.skip(f"no stylegan2-ada-pytorch checkout at {path}; set {PEER_ENV} to one")
    return path.resolve()


def run(*arguments: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)


def test_benchmark_reports_all_phases_with_matching_outputs():
    peer = peer_checkout()
    # about 3 s on one thread of a 2-core CPU; the timeout only guards against a hang (speed is not asserted)
    result = run("--peer", str(peer), "--settings", "tiny", "--batch-sizes", "4", "--repeats", "1", "--threads", "1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = json.loads(result.stdout)
    assert {"benchmark", "device", "torch", "threads", "peer", "settings", "networks", "checks", "results"} <= set(
        report
    )
    assert "error" not in report and report["threads"] == 1
    assert report["peer"]["path"] == str(peer) and set(report["peer"]["ops"]) == {"bias_act", "upfirdn2d"}
    assert all(how.startswith("reference") for how in report["peer"]["ops"].values())  # a CPU has no plugin
    assert "rosinality/stylegan2-pytorch" in report["not_compared"]
    checks = report["checks"]["tiny"]
    assert checks["max_abs_diff"] < 1e-3
    assert checks["image_std"] > 0.01  # the random weights give images, not a constant
    assert checks["max_abs_diff_logits"] < 1e-3 * max(1.0, checks["logits_max"])
    assert checks["abs_diff_g_loss"] < 1e-3 * max(1.0, abs(checks["g_loss"]))
    assert 0 < checks["g_grad_max"] and checks["max_abs_diff_g_grad"] < 1e-3 * checks["g_grad_max"]
    assert [(row["setting"], row["resolution"], row["batch_size"], row["phase"]) for row in report["results"]] == [
        ("tiny", 32, 4, phase) for phase in PHASES
    ]
    for row in report["results"]:
        assert set(row) == RESULT_KEYS
        assert row["ganedit_s_per_step"] > 0 and row["peer_s_per_step"] > 0 and row["ratio"] > 0
        assert row["max_abs_diff"] < 1e-3


def test_benchmark_without_a_peer_prints_null_peer_and_the_reason():
    result = run(env={PEER_ENV: ""})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)  # stdout is the JSON object and nothing else
    assert report["benchmark"] == "stylegan2_vs_nvidia" and report["peer"] is None
    assert PEER_ENV in report["reason"]
    assert "results" not in report


def test_benchmark_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    result = run("--peer", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert "not a stylegan2-ada-pytorch checkout" in result.stderr
