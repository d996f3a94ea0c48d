"""`torchrun --nproc-per-node 2 -m ganedit unlearn | merge | text-unlearn` on the CPU (gloo), on the toy world.

What a user of eight GPUs relies on, shown with two CPU processes:
- the processes stay in sync: the report carries every process's sha256 of the final generator, they are
  equal, and they are the sha256 of the model rank 0 wrote;
- the output is written once, by rank 0: one JSON document on stdout, the output and nothing else in the folder;
- an interrupted two-process run (SIGINT to torchrun, which passes it to both processes) saves one resume
  file, and `--resume` under torchrun ends bit-identical to the uninterrupted two-process run;
- a resume file of another number of processes is refused in one line, exit code 2, either way round;
- a command that does not train data-parallel is refused under torchrun.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hostile_resume import RUNS  # short runs of the three commands on the embedded toy models

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GANEDIT_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
ERROR = "ganedit: error:"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*argv: str, processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", "--master-addr=127.0.0.1",
            f"--master-port={free_port()}", "-m", "ganedit", *argv]  # fmt: skip


def run(command: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def generator_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {key: value for key, value in load_file(path).items() if key.startswith("G.")}


def fingerprint_of(path: Path) -> str:
    import ganedit
    from ganedit.engine.distributed import fingerprint

    return fingerprint(ganedit.load_generator(path))


def interrupted(command: str, folder: Path) -> Path:
    """The resume file of a two-process run of `command` stopped by SIGINT to torchrun once it has saved twice."""
    output = folder / "o.safetensors"
    resume = output.with_name(output.name + ".resume")
    argv = torchrun(*RUNS[command], "-o", str(output), "--checkpoint-every", "1", "-q")
    process = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, first = time.monotonic() + 240, None
    while process.poll() is None and time.monotonic() < deadline:
        if resume.exists():
            first = first or resume.stat().st_mtime_ns
            if resume.stat().st_mtime_ns != first:  # saved again: the run is under way
                break
        time.sleep(0.02)
    assert process.poll() is None, f"the run ended before it could be interrupted:\n{process.communicate()[1]}"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=240)
    assert process.returncode != 0 and resume.is_file(), err
    lines = errors(err)
    assert len(lines) == 1 and "interrupted; the run is saved in" in lines[0] and "--resume" in lines[0], err
    assert not output.exists()
    return resume


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per command: the uninterrupted two-process run's folder and report, and the interrupted-then-resumed one's."""
    made = {}

    def make(command: str) -> dict:
        if command not in made:
            whole = tmp_path_factory.mktemp(f"{command}-whole")
            result = run(torchrun(*RUNS[command], "-o", str(whole / "o.safetensors"), "-q", "--json"))
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)  # exactly one JSON document: rank 1 printed nothing
            stopped = tmp_path_factory.mktemp(f"{command}-stopped")
            resume = interrupted(command, stopped)
            shutil.copy(resume, stopped.parent / f"{command}-two-processes.resume")  # for the mismatch cases
            result = run(torchrun(*RUNS[command], "-o", str(stopped / "o.safetensors"), "--checkpoint-every", "1",
                                  "--resume", "-q", "--json"))  # fmt: skip
            assert result.returncode == 0, result.stderr
            made[command] = {"whole": whole, "report": report, "stopped": stopped, "resumed": json.loads(result.stdout),
                             "resume_copy": stopped.parent / f"{command}-two-processes.resume"}  # fmt: skip
        return made[command]

    return make


@pytest.mark.parametrize("command", ["unlearn", "merge"])
def test_two_processes_end_in_sync_and_rank_0_writes_once(runs, command):
    made = runs(command)
    report, output = made["report"], made["whole"] / "o.safetensors"
    processes = report["training"]["processes"]
    assert processes["count"] == 2 and len(set(processes["fingerprints"])) == 1
    assert processes["fingerprints"][0] == fingerprint_of(output)  # what rank 0 wrote is what both hold
    assert report["written"] == [str(output)]
    assert sorted(path.name for path in made["whole"].iterdir()) == ["o.safetensors"]  # no resume file, no lock


@pytest.mark.parametrize("command", ["unlearn", "merge"])
def test_an_interrupted_two_process_run_resumes_to_the_same_model(runs, command):
    made = runs(command)
    whole, resumed = (generator_tensors(made[name] / "o.safetensors") for name in ("whole", "stopped"))
    assert whole.keys() == resumed.keys() and len(whole) > 10
    different = [key for key in whole if not torch.equal(whole[key], resumed[key])]
    assert not different, f"resumed run differs from the uninterrupted one in {different[:5]}"
    fingerprints = [made[name]["training"]["processes"]["fingerprints"] for name in ("resumed", "report")]
    assert fingerprints[0] == fingerprints[1]
    assert sorted(path.name for path in made["stopped"].iterdir()) == ["o.safetensors"]


def test_two_processes_of_text_unlearn_end_in_sync(tmp_path):
    output = tmp_path / "o.safetensors"
    result = run(torchrun(*RUNS["text-unlearn"], "-o", str(output), "-q", "--json"))
    assert result.returncode == 0, result.stderr
    processes = json.loads(result.stdout)["training"]["processes"]
    assert processes["count"] == 2 and processes["fingerprints"] == [fingerprint_of(output)] * 2


def test_a_two_process_resume_file_is_refused_by_one_process(runs, tmp_path):
    resume = tmp_path / "o.safetensors.resume"
    shutil.copy(runs("unlearn")["resume_copy"], resume)
    result = run([sys.executable, "-m", "ganedit", *RUNS["unlearn"], "-o", str(tmp_path / "o.safetensors"), "--resume",
                  "-q"])  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "a run of 2 process(es) and this run has 1" in lines[0] and "torchrun --nproc-per-node 2" in lines[0]
    assert not (tmp_path / "o.safetensors").exists() and resume.is_file()


def test_a_one_process_resume_file_is_refused_under_torchrun(runs, tmp_path):
    from ganedit.engine.loop import RESUME_VERSION
    from ganedit.procedures.unlearn import RESUME_FORMAT
    from ganedit.store.state_file import read_state_file, write_state_file

    resume = tmp_path / "o.safetensors.resume"
    state = read_state_file(runs("unlearn")["resume_copy"], RESUME_FORMAT, RESUME_VERSION, "resume file", "")
    write_state_file(resume, RESUME_FORMAT, RESUME_VERSION, {**state, "world_size": 1})  # as one process writes it
    result = run(torchrun(*RUNS["unlearn"], "-o", str(tmp_path / "o.safetensors"), "--resume", "-q"))
    lines = errors(result.stderr)
    assert result.returncode != 0 and len(lines) == 1, result.stderr  # rank 0 alone says it
    assert "a run of 1 process(es) and this run has 2" in lines[0] and "without torchrun" in lines[0]
    assert result.stderr.count("exitcode: 2") + result.stderr.count("exitcode  : 2") >= 1, result.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_a_command_that_runs_in_one_process_is_refused_under_torchrun(tmp_path):
    result = run(torchrun("embed-tune", "-o", str(tmp_path / "o.safetensors"), "-q"), timeout=120)
    lines = errors(result.stderr)
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "`ganedit embed-tune` runs in one process; run it without torchrun" in lines[0]
    assert list(tmp_path.iterdir()) == []
