"""ganedit in pipelines: strict JSON with the same keys in every command, plain progress lines in a log,
signals, out-of-memory and their exit codes."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import interrupt_step, same_parameters, tiny_stylegan2_pair
from PIL import Image

import ganedit
from ganedit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
EXIT_CODES = {0: "success", 1: "internal error", 2: "bad input", 3: "gate", 4: "out of GPU memory",
              130: "interrupted", 143: "terminated"}  # fmt: skip
UNLEARN = ["--adapted-models", 2, "--adapt-steps", 2, "--steps", 3, "--batch-size", 4, "--device", "cpu", "-q"]
TEXT_UNLEARN = ["--concept", "a red shape", "--neutral", "a shape", "--iterations", 2, "--batch-size", 2,
                "--eval-samples", 8, "--clip", "toy-clip", "--lpips", "toy", "--device", "cpu", "-q"]  # fmt: skip
EMBED_TUNE = ["--class", "heart", "--starts", 1, "--rounds", 1, "--steps", 2, "--batch-size", 2, "--holdout", 4,
              "--device", "cpu", "-q"]  # fmt: skip
MERGE = ["--rooting-steps", 1, "--steps", 1, "--batch-size", 4, "--device", "cpu", "-q"]


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity (what a strict parser such as jq or JavaScript accepts)."""

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def subprocess_env(**extra) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **extra}


def write_folder(folder: Path, count: int, seed: int, size: int = 24) -> Path:
    folder.mkdir()
    generator = torch.Generator().manual_seed(seed)
    for index in range(count):
        array = (torch.rand([size, size, 3], generator=generator) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def pair():
    return tiny_stylegan2_pair()


@pytest.fixture(scope="module")
def files(tmp_path_factory, pair):
    """A tiny StyleGAN2 with D, a second one, and folders of negatives / positives."""
    folder = tmp_path_factory.mktemp("pipeline")
    other = tiny_stylegan2_pair(seed=1)
    return {
        "model": ganedit.save_checkpoint(folder / "model.safetensors", *pair),
        "other": ganedit.save_checkpoint(folder / "other.safetensors", *other),
        "negatives": write_folder(folder / "neg", 6, 1),
        "positives": write_folder(folder / "pos", 6, 2),
    }


# --- strict JSON with the same keys in every command ----------------------------------------------------


def check_document(out: str, command: str) -> dict:
    document = strict_loads(out)  # the whole of stdout is the one document
    assert isinstance(document, dict)
    assert document["command"] == command
    assert document["ganedit_version"] == ganedit.__version__
    assert document["schema"] == 1 and isinstance(document["schema"], int)
    assert isinstance(document["written"], list)
    for path in document["written"]:
        assert isinstance(path, str) and Path(path).exists(), path
    return document


def test_every_command_writes_one_strict_json_document_with_the_common_keys(tmp_path, capsys, files):
    model = files["model"]

    editing = {}

    def run(command: str, *argv) -> dict:
        code, out, err = cli(capsys, *command.split(), *argv, "--json")
        assert code == 0, err
        editing[command] = check_document(out, command)
        return editing[command]

    # Editing commands: model (merge: models), judge (a name or null), output, written with every file.
    heart, patch = tmp_path / "heart.safetensors", tmp_path / "heart.patch.safetensors"
    report = run("embed-tune", *EMBED_TUNE, "-o", heart, "--grid", tmp_path / "heart.png")
    assert report["model"] == "toy-biggan" and report["judge"] == "toy-oracle:shape"
    assert report["output"] == str(heart) and report["written"] == [str(heart), str(tmp_path / "heart.png")]
    assert "classifier" not in report  # the judge is `judge` in every command
    report = run("embed-tune", *EMBED_TUNE, "-o", patch, "--patch")
    assert report["written"] == [str(patch)] and report["kind"] == "patch"
    applied = tmp_path / "applied.safetensors"
    report = run("apply-patch", patch, "toy-biggan", "-o", applied)
    assert report["model"] == "toy-biggan" and report["written"] == [str(applied)]

    unlearned, kept = tmp_path / "unlearned.safetensors", tmp_path / "adapted"
    report = run("unlearn", model, "--negatives", files["negatives"], "--positives", files["positives"], *UNLEARN,
                 "-o", unlearned, "--keep-adapted", kept)  # fmt: skip
    assert report["model"] == str(model) and report["judge"] is None and report["output"] == str(unlearned)
    assert report["written"] == [str(unlearned)] + [str(kept / f"adapted-{k}.safetensors") for k in range(2)]

    text = tmp_path / "text.safetensors"
    report = run("text-unlearn", model, *TEXT_UNLEARN, "-o", text)
    assert report["model"] == str(model) and report["judge"] is None and report["written"] == [str(text)]

    merged = tmp_path / "merged.safetensors"
    report = run("merge", model, files["other"], *MERGE, "-o", merged)
    assert report["models"] == [str(model), str(files["other"])] and report["judge"] is None
    assert report["written"] == [str(merged)]
    for command in ("embed-tune", "unlearn", "text-unlearn", "merge"):  # each stage's wall time, and the total
        seconds = editing[command]["seconds"]
        assert set(seconds) >= {"prepare", "write", "total"} and all(value >= 0 for value in seconds.values())
        assert sum(value for stage, value in seconds.items() if stage != "total") <= seconds["total"] + 0.05
    report = run("merge", model, files["other"], "--dry-run", "-q")
    assert report["written"] == [] and report["output"] is None and report["plan"]["classes"]

    # Looking at and drawing from models: model and written, the same meaning.
    report = run("sample", unlearned, "-n", 2, "-o", tmp_path / "s.png", "-q")
    assert report["model"] == str(unlearned) and report["written"] == [str(tmp_path / "s.png")]
    report = run("info", merged)
    assert report["model"] == str(merged) and report["written"] == [] and "source" not in report
    converted = tmp_path / "converted.safetensors"
    report = run("convert", model, "-o", converted)
    assert report["model"] == str(model) and report["written"] == [str(converted)]
    report = run("zoo list")
    assert {"toy-biggan", "biggan-deep-256"} <= {row["name"] for row in report["entries"]}
    report = run("zoo download", "toy-biggan", "-q")
    assert report["model"] == "toy-biggan" and report["written"] == [] and Path(report["path"]).is_file()


def test_nan_and_infinity_become_null_everywhere_in_a_document(capsys, monkeypatch, files):
    from ganedit.cli import models

    real = models.describe

    def with_non_finite(bundle):
        report = real(bundle)
        report["metadata"] = {
            "nan": float("nan"),
            "nested": {"inf": float("inf"), "list": [1.5, float("-inf"), {"deep": float("nan")}]},
            "tensor": torch.tensor([1.0, float("nan")]),
            "scalar_tensor": torch.tensor(float("inf")),
            "numpy": np.float32("nan"),
            "numpy_array": np.array([2.0, np.inf]),
            "numpy_int": np.int64(7),
            "tuple": (float("nan"), 3),
            "path": Path("a/b"),
        }
        return report

    monkeypatch.setattr(models, "describe", with_non_finite)
    code, out, err = cli(capsys, "info", files["model"], "--json")
    assert code == 0, err
    assert "NaN" not in out and "Infinity" not in out
    metadata = check_document(out, "info")["metadata"]
    assert metadata == {
        "nan": None,
        "nested": {"inf": None, "list": [1.5, None, {"deep": None}]},
        "tensor": [1.0, None],
        "scalar_tensor": None,
        "numpy": None,
        "numpy_array": [2.0, None],
        "numpy_int": 7,
        "tuple": [None, 3],
        "path": str(Path("a/b")),
    }


def test_with_json_nothing_but_the_document_reaches_stdout(tmp_path, files):
    """A library that prints to stdout while a command runs (Python's print and the file descriptor, as C code
    and child processes write) lands on stderr; stdout is the JSON document alone."""
    script = (
        "import os, sys, ganedit\n"
        "from ganedit.cli import main\n"
        "real = ganedit.load_model\n"
        "def noisy(*args, **kwargs):\n"
        "    print('Downloading: weights.pth (a third-party notice)')\n"
        "    sys.stdout.flush()\n"
        "    os.write(1, b'fd-level notice\\n')\n"
        "    return real(*args, **kwargs)\n"
        "ganedit.load_model = noisy\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, "info", str(files["model"]), "--json"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert check_document(result.stdout, "info")["architecture"] == "stylegan2-generator"
    assert "third-party notice" in result.stderr and "fd-level notice" in result.stderr
    assert "notice" not in result.stdout
    # Without --json, stdout is as it was: the notices stay there.
    result = subprocess.run([sys.executable, "-c", script, "info", str(files["model"])],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)  # fmt: skip
    assert result.returncode == 0 and "third-party notice" in result.stdout and "fd-level notice" in result.stdout


def test_a_bad_input_with_json_prints_nothing_on_stdout(capsys, tmp_path):
    code, out, err = cli(capsys, "info", tmp_path / "missing.safetensors", "--json")
    assert code == 2 and out == "" and err.startswith("ganedit: error: ") and len(err.strip().splitlines()) == 1


# --- progress as plain lines when stderr is not a terminal ---------------------------------------------


def test_plain_progress_prints_start_heartbeat_and_end_lines(capsys, monkeypatch):
    from ganedit.cli.console import TrainingProgress

    monkeypatch.setenv("GANEDIT_HEARTBEAT_S", "0.05")
    with TrainingProgress() as progress:  # stderr is captured: not a terminal, so plain lines
        task = progress.task("adapt 1/2", 4)
        progress.update(task, 1, {"d": 1.25, "g": 0.5})
        time.sleep(0.3)  # no step for a while: the heartbeat still says where the run is
        progress.update(task, 4, {"d": 1.0, "g": 0.25})
        other = progress.task("stage 2", 10, completed=3)  # resumed at step 3, then stopped early
        progress.update(other, 5, {"repulsion": 0.125})
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "adapt 1/2: start, step 0/4 (0%)"
    beats = [line for line in lines if line.startswith("adapt 1/2: step 1/4 (25%), d 1.25 g 0.5, elapsed ")]
    assert len(beats) >= 2 and all(", eta 0:00:" in line for line in beats), lines
    assert any(line.startswith("adapt 1/2: done, step 4/4 (100%), d 1 g 0.25, in 0:00:0") for line in lines)
    assert "stage 2: start, step 3/10 (30%)" in lines
    assert lines[-1].startswith("stage 2: stopped at step 5/10 (50%)")
    assert not any("adapt 1/2: step" in line for line in lines[lines.index("stage 2: start, step 3/10 (30%)") :])


def test_quiet_progress_is_silent_and_a_bad_heartbeat_is_refused(capsys, monkeypatch):
    from ganedit.cli.console import TrainingProgress, heartbeat_seconds
    from ganedit.errors import GaneditError

    monkeypatch.setenv("GANEDIT_HEARTBEAT_S", "0.01")
    with TrainingProgress(quiet=True) as progress:
        progress.update(progress.task("adapt", 2), 2, {"d": 1.0})
        time.sleep(0.05)
    assert capsys.readouterr().err == ""
    for bad in ("0", "-1", "soon", "inf"):
        monkeypatch.setenv("GANEDIT_HEARTBEAT_S", bad)
        with pytest.raises(GaneditError, match="GANEDIT_HEARTBEAT_S"):
            heartbeat_seconds()
    monkeypatch.delenv("GANEDIT_HEARTBEAT_S")
    assert heartbeat_seconds() == 10


def test_the_heartbeat_lines_appear_in_a_log_file(tmp_path, files):
    log = tmp_path / "run.log"
    argv = [sys.executable, "-m", "ganedit", "unlearn", str(files["model"]), "--negatives", str(files["negatives"]),
            "--positives", str(files["positives"]), "--adapted-models", "2", "--adapt-steps", "4", "--steps", "4",
            "--batch-size", "4", "--device", "cpu", "-o", str(tmp_path / "out.safetensors")]  # fmt: skip
    with open(log, "w") as stderr:
        result = subprocess.run(argv, stderr=stderr, stdout=subprocess.PIPE, text=True,
                                env=subprocess_env(GANEDIT_HEARTBEAT_S="0.05"), timeout=300)  # fmt: skip
    text = log.read_text()
    assert result.returncode == 0, text
    lines = text.splitlines()
    for stage, total in (("adapt 1/2", 4), ("adapt 2/2", 4), ("unlearn", 4)):
        starts = [line for line in lines if line.startswith(f"{stage}: start, step 0/{total}")]
        ends = [line for line in lines if line.startswith(f"{stage}: done, step {total}/{total} (100%)")]
        assert len(starts) == 1 and len(ends) == 1, (stage, text)
    heartbeats = [line for line in lines if ": step " in line and ", elapsed " in line and ", eta " in line]
    assert heartbeats, text
    assert any(", eta 0:" in line for line in heartbeats)  # once a step is done, an ETA
    assert any(", loss_D " in line and " loss_G " in line for line in heartbeats)  # the latest losses
    assert "\r" not in text and "\x1b[" not in text  # no bar redrawn in place, no colour codes
    assert "━" not in text  # no rich bar characters
    # --quiet: nothing on stderr at all.
    with open(log, "w") as stderr:
        quiet = [*argv[:-1], str(tmp_path / "quiet.safetensors"), "-q"]
        env = subprocess_env(GANEDIT_HEARTBEAT_S="0.05")
        result = subprocess.run(quiet, stderr=stderr, stdout=subprocess.PIPE, env=env, timeout=300)
    assert result.returncode == 0 and log.read_text() == ""


def test_download_progress_is_plain_lines_in_a_log(capsys, monkeypatch):
    from ganedit.cli.console import DownloadBar

    monkeypatch.setenv("GANEDIT_HEARTBEAT_S", "0.05")
    with DownloadBar("biggan-deep-256: pytorch_model.bin", 4_000_000) as bar:
        bar.advance(1_000_000)
        time.sleep(0.06)
        bar.advance(3_000_000)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "downloading biggan-deep-256: pytorch_model.bin (4.0 MB)"
    assert any(line.startswith("biggan-deep-256: pytorch_model.bin: 4.0 MB of 4.0 MB, elapsed") for line in lines)
    assert lines[-1].startswith("biggan-deep-256: pytorch_model.bin: downloaded 4.0 MB of 4.0 MB in 0:00:0")


def test_quiet_silences_third_party_download_bars(capsys, monkeypatch, files):
    """--quiet turns torch hub's (torchvision's, LPIPS's) bar off, and tqdm's and Hugging Face's by their
    environment; all as they were after the command."""
    import torch.hub

    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((progress, os.environ.get("TQDM_DISABLE"), os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")))

    real_load = ganedit.load_model

    def load_and_download(*args, **kwargs):
        torch.hub.download_url_to_file("https://example.invalid/weights.pth", "/nonexistent", None, progress=True)
        return real_load(*args, **kwargs)

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setattr(ganedit, "load_model", load_and_download)
    assert cli(capsys, "info", files["model"], "-q")[0] == 0
    assert cli(capsys, "info", files["model"])[0] == 0
    assert calls == [(False, "1", "1"), (True, None, None)]
    assert torch.hub.download_url_to_file is fake_download and "TQDM_DISABLE" not in os.environ


# --- signals, out of memory, exit codes -----------------------------------------------------------------


def unlearn_argv(files, output, *extra):
    return ["unlearn", files["model"], "--negatives", files["negatives"], "--positives", files["positives"],
            "--adapted-models", 2, "--adapt-steps", 6, "--steps", 6, "--batch-size", 4, "--device", "cpu", "-q",
            "--checkpoint-every", 2, "-o", output, *extra]  # fmt: skip


def test_ctrl_c_names_the_resume_file_and_resume(tmp_path, capsys, monkeypatch, files):
    output = tmp_path / "cut.safetensors"
    interrupt_step(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    code, _, err = cli(capsys, *unlearn_argv(files, output))
    resume = tmp_path / "cut.safetensors.resume"
    assert code == 130 and resume.exists() and not output.exists()
    line = err.strip().splitlines()[-1]
    assert line.startswith("ganedit: error: interrupted") and str(resume) in line and "--resume" in line


def test_sigterm_to_a_training_subprocess_exits_143_and_resume_continues_it(tmp_path, capsys, files):
    whole, output = tmp_path / "whole.safetensors", tmp_path / "cut.safetensors"
    assert cli(capsys, *unlearn_argv(files, whole))[0] == 0
    resume = tmp_path / "cut.safetensors.resume"
    argv = [sys.executable, "-m", "ganedit", *map(str, unlearn_argv(files, output))]
    process = subprocess.Popen(argv, env=subprocess_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "terminated (SIGTERM)" in err and str(resume) in err and "--resume" in err
    assert resume.exists() and not output.exists()
    code, _, err = cli(capsys, *unlearn_argv(files, output, "--resume"))
    assert code == 0, err
    assert same_parameters(ganedit.load_generator(output), ganedit.load_generator(whole))
    assert not resume.exists()


def test_sigterm_outside_training_exits_143_too(capsys, monkeypatch, files):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(ganedit, "load_model", terminated)
    before = signal.getsignal(signal.SIGTERM)
    code, _, err = cli(capsys, "info", files["model"])
    assert code == 143 and "terminated (SIGTERM)" in err
    assert signal.getsignal(signal.SIGTERM) is before  # main() put the previous handler back


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has 1.00 GiB free.\nmore"),
        RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported"),
    ],
)
def test_out_of_gpu_memory_has_its_own_exit_code_and_one_line(capsys, monkeypatch, files, error):
    def out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(ganedit, "load_model", out_of_memory)
    code, out, err = cli(capsys, "info", files["model"], "--json")
    assert code == 4 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganedit: error: out of GPU memory")
    assert "--batch-size" in lines[0] and "out of memory" in lines[0]


def test_other_runtime_errors_stay_internal_errors(capsys, monkeypatch, files):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(ganedit, "load_model", broken)
    code, _, err = cli(capsys, "info", files["model"])
    assert code == 1 and "internal error" in err


def test_every_exit_code_is_documented_in_help_docstring_and_readme(capsys):
    cli_main = importlib.import_module("ganedit.cli.main")  # the module (ganedit.cli.main is also the function)

    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for text in (out, cli_main.__doc__):  # a table: one line per code, the code first
        for exit_code, meaning in EXIT_CODES.items():
            rows = [line.lower() for line in text.splitlines() if line.split()[:1] == [str(exit_code)]]
            assert any(meaning.lower() in row for row in rows), (exit_code, meaning)
    readme = (REPO / "README.md").read_text()
    commands = " ".join(readme[readme.index("## Commands") :].split("\n## ")[0].split())
    paragraph = commands[commands.index("Exit codes:") :].split("In pipelines:")[0].lower()
    for exit_code, meaning in EXIT_CODES.items():
        assert f"`{exit_code}`" in paragraph and meaning.lower() in paragraph, (exit_code, meaning)
    assert (cli_main.EXIT_OUT_OF_MEMORY, cli_main.EXIT_TERMINATED, cli_main.JSON_SCHEMA) == (4, 143, 1)
