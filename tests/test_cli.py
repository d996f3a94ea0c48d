"""The command line as a user meets it: help, version, exit codes, one-line errors, JSON output."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

import ganedit
from ganedit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and ganedit.__version__ in out


def test_console_script_is_installed():
    executable = shutil.which("ganedit")
    if executable is None:
        pytest.skip("ganedit is not installed as a console script in this environment (pip install -e .)")
    result = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and ganedit.__version__ in result.stdout


@pytest.mark.parametrize(
    "command", [[], ["info"], ["sample"], ["convert"], ["zoo"], ["zoo", "list"], ["zoo", "download"]]
)
def test_every_command_has_help_with_examples(capsys, command):
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert "Usage:" in out
    if command and command != ["zoo"]:
        assert "Example" in out


def test_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "sample")
    assert code == 2 and "MODEL" in err


def test_sample_needs_a_destination(capsys, tmp_path):
    code, _, err = run(capsys, "sample", str(tmp_path / "x.safetensors"))
    assert code == 2 and "-o" in err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ganedit: error: ")
    return lines[0]


def test_missing_path(capsys, tmp_path):
    code, out, err = run(capsys, "info", str(tmp_path / "nope.pt"))
    assert code == 2 and out == ""
    assert "no such file" in one_line_error(err)


def test_folder_without_config(capsys, tmp_path):
    code, _, err = run(capsys, "info", str(tmp_path))
    assert code == 2 and "config.json" in one_line_error(err)


def test_random_bytes(capsys, tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).to(torch.uint8).numpy().tobytes()
    )
    code, _, err = run(capsys, "info", str(path))
    assert code == 2 and "not a checkpoint" in one_line_error(err)


def test_image_file(capsys, tmp_path):
    from PIL import Image

    path = tmp_path / "cat.pkl"
    Image.new("RGB", (8, 8)).save(path, format="PNG")
    code, _, err = run(capsys, "info", str(path))
    assert code == 2 and "PNG image" in one_line_error(err)


def test_empty_file(capsys, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"")
    code, _, err = run(capsys, "info", str(path))
    assert code == 2 and "empty" in one_line_error(err)


def test_truncated_torch_file(capsys, tmp_path):
    full = tmp_path / "full.pt"
    torch.save({"g_ema": {"style.1.weight": torch.randn(64, 64)}}, full)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    code, _, err = run(capsys, "info", str(truncated))
    assert code == 2 and "truncated" in one_line_error(err)


def test_unsupported_architecture(capsys, tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.randn(4, 3, 3, 3), "fc.weight": torch.randn(10, 4)}, path)
    code, _, err = run(capsys, "info", str(path))
    assert code == 2
    one_line_error(err)


def test_unknown_zoo_name_suggests(capsys):
    code, _, err = run(capsys, "info", "biggan-deep-265")
    assert code == 2 and "biggan-deep-256" in one_line_error(err)


def test_zoo_model_not_cached_offline(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GANEDIT_CACHE", str(tmp_path))
    code, _, err = run(capsys, "info", "biggan-deep-128", "--offline")
    line = one_line_error(err)
    assert code == 2
    assert "biggan-deep-128" in line and "config.json" in line and str(tmp_path) in line and "offline" in line


def test_hf_hub_offline_is_honoured(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GANEDIT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "info", "stylegan2-ffhq-256")
    assert code == 2 and "offline" in one_line_error(err)


def test_zoo_list_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GANEDIT_CACHE", str(tmp_path))
    code, out, _ = run(capsys, "zoo", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out)["entries"]}
    assert code == 0
    assert {"biggan-deep-128", "biggan-deep-256", "biggan-deep-512", "stylegan2-ffhq-1024"} <= set(rows)
    assert rows["biggan-deep-256"]["cached"] is False
    assert rows["biggan-deep-256"]["hash"] == "to be pinned at first download"
    assert rows["biggan-deep-128"]["licence"] == "Apache-2.0"


def test_bad_device(capsys, tmp_path):
    code, _, err = run(capsys, "info", str(tmp_path / "x.pt"), "--device", "tpu")
    assert code == 2 and "--device" in one_line_error(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when no GPU exists")
def test_cuda_requested_without_gpu(capsys, tmp_path):
    code, _, err = run(capsys, "info", str(tmp_path / "x.pt"), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in one_line_error(err)


def test_internal_errors_exit_1(capsys, monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(ganedit, "load_model", broken)
    code, _, err = run(capsys, "info", str(tmp_path))
    assert code == 1 and "internal error" in one_line_error(err)


def test_python_dash_m_works():
    """The module runs as `python -m ganedit` too."""
    result = subprocess.run([sys.executable, "-m", "ganedit", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and ganedit.__version__ in result.stdout


def test_toy_models_are_in_the_zoo(capsys):
    code, out, _ = run(capsys, "zoo", "list", "--json")
    rows = {row["name"]: row for row in json.loads(out)["entries"]}
    assert code == 0
    assert rows["toy-biggan"]["hash"] == rows["toy-oracle"]["hash"] == "shipped with ganedit"
    assert rows["toy-oracle"]["cached"] is True


def test_a_judge_is_not_a_generator(capsys):
    code, _, err = run(capsys, "info", "toy-oracle")
    assert code == 2 and "--classifier toy" in one_line_error(err)


def test_the_console_scripts_imports_are_the_reports_start_stage(capsys, tmp_path):
    """`ganedit.__main__` passes the moment it began importing: the report's `start` stage and its total
    count that time, so that the time line adds up to what the user waited (in-process calls have none)."""
    import time

    args = ["embed-tune", "--class", "heart", "--starts", "1", "--rounds", "1", "--steps", "1", "--batch-size", "2",
            "--holdout", "4", "-o", str(tmp_path / "h.safetensors"), "--json", "-q"]  # fmt: skip
    assert main(args, started=time.perf_counter() - 5.0) == 0
    seconds = json.loads(capsys.readouterr().out)["seconds"]
    assert list(seconds)[0] == "start" and 5.0 <= seconds["start"] < 6.0
    assert seconds["total"] >= 5.0 + seconds["prepare"]
    assert main([*args[:-4], "-o", str(tmp_path / "i.safetensors"), "--json", "-q"]) == 0
    assert "start" not in json.loads(capsys.readouterr().out)["seconds"]


def test_quiet_lasts_for_one_call_of_main(capsys):
    """--quiet silences the stderr console for its command only: a later in-process call (or the Python API)
    still shows its messages."""
    from ganedit.cli.console import stderr_console

    assert main(["zoo", "download", "toy-biggan", "-q"]) == 0
    assert stderr_console().quiet is False
    stderr_console().print("still heard")
    assert "still heard" in capsys.readouterr().err
