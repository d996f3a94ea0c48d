"""examples/: the CI pipeline passes on the toy world and fails the pipeline when its target is out of
reach; the Python example does the same through the API."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def environment() -> dict:
    bin_dir = str(Path(sys.executable).parent)  # where `ganedit` is installed beside this Python
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.mark.skipif(
    not (Path(sys.executable).parent / "ganedit").exists(), reason="ganedit is not installed as a console script"
)
@pytest.mark.parametrize(("target", "code"), [("0.5", 0), ("0.99", 1)])
def test_the_ci_pipeline_passes_and_fails_on_its_target(tmp_path, target, code):
    result = subprocess.run(
        ["bash", str(EXAMPLES / "ci-pipeline.sh")], env={**environment(), "TARGET": target, "OUT": str(tmp_path)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == code, result.stdout + result.stderr
    assert ("pass: heart accuracy" if code == 0 else "FAIL: heart accuracy") in result.stdout
    assert (tmp_path / "heart.safetensors").is_file() and (tmp_path / "report.json").is_file()


def test_the_python_example_passes_its_target(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "python_api.py"), "0.5"], cwd=tmp_path, env=environment(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heart accuracy" in result.stdout and (tmp_path / "heart.safetensors").is_file()
