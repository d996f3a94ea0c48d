"""Hostile resume files and a held lock, kind "resume": each case puts a damaged, crafted or foreign
OUTPUT.resume into {out} (or holds OUTPUT's lock) and runs `ganedit unlearn / merge / text-unlearn ... --resume`.

The resume files are made from a genuine one per command: the command is run with a checkpoint every
step and interrupted (SIGINT) once its resume file appears, once per test session. The cases corrupt a
copy: bits flipped, the file cut off, or the state crafted and sealed again with a valid checksum
(mis-shaped tensors, missing parts, wrong types, code in the pickle), so that only ganedit's checks of
the state can refuse it.
"""

import atexit
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hostile import Case

OUTPUT = "o.safetensors"
RESUME = OUTPUT + ".resume"
KEEP = (RESUME,)  # the hostile resume file stays where the case put it

# The runs whose resume files the cases start from: short, with the embedded toy models.
RUNS = {
    "unlearn": ["unlearn", "--feature", "star", "--adapted-models", "1", "--adapt-steps", "40", "--steps", "40",
                "--batch-size", "4", "--eval-samples", "20"],
    "merge": ["merge", "--rooting-steps", "40", "--steps", "40", "--batch-size", "4", "--discriminator-warmup", "0",
              "--eval-samples", "20"],
    "text-unlearn": ["text-unlearn", "--concept", "a red shape", "--steps", "40", "--batch-size", "2",
                     "--eval-samples", "20"],
}  # fmt: skip
_GENUINE: dict[str, Path] = {}
_HELD_LOCKS: list[int] = []


def resume_format(command: str) -> str:
    from ganedit.procedures import merge, text_unlearn, unlearn

    return {"unlearn": unlearn, "merge": merge, "text-unlearn": text_unlearn}[command].RESUME_FORMAT


def genuine(command: str) -> Path:
    """A resume file `command` (RUNS) wrote when interrupted, made once per session."""
    if command not in _GENUINE:
        folder = Path(tempfile.mkdtemp(prefix="ganedit-hostile-resume-"))
        atexit.register(shutil.rmtree, folder, True)
        resume = folder / RESUME
        env = {**os.environ, "OMP_NUM_THREADS": "1", "GANEDIT_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        argv = [sys.executable, "-m", "ganedit", *RUNS[command], "-o", str(folder / OUTPUT), "--checkpoint-every", "1"]
        process = subprocess.Popen([*argv, "-q"], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 240
        while not resume.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=240)
        assert process.returncode == 130 and resume.is_file(), f"no resume file from {command}: {err}"
        _GENUINE[command] = resume
    return _GENUINE[command]


def out_folder(in_folder: Path) -> Path:
    return in_folder.parent / "out"


def read_state(command: str) -> dict:
    from ganedit.engine.loop import RESUME_VERSION
    from ganedit.store.state_file import read_state_file

    return read_state_file(genuine(command), resume_format(command), RESUME_VERSION, "resume file", "")


def write_state(in_folder: Path, command: str, state: dict) -> None:
    """`state` as {out}/o.safetensors.resume of `command`, sealed with a valid checksum."""
    from ganedit.engine.loop import RESUME_VERSION
    from ganedit.store.state_file import write_state_file

    write_state_file(out_folder(in_folder) / RESUME, resume_format(command), RESUME_VERSION, state)


# ---------------------------------------------------------------------------------------------------
# What the setups put in {out}


def flipped(command: str, at):
    """The genuine file with one bit flipped in byte at(length)."""

    def setup(in_folder: Path) -> None:
        data = bytearray(genuine(command).read_bytes())
        data[at(len(data))] ^= 0x10
        (out_folder(in_folder) / RESUME).write_bytes(bytes(data))

    return setup


def cut(command: str, keep):
    """The genuine file cut off after keep(length) bytes."""

    def setup(in_folder: Path) -> None:
        data = genuine(command).read_bytes()
        (out_folder(in_folder) / RESUME).write_bytes(data[: keep(len(data))])

    return setup


def crafted(command: str, change):
    """The genuine state changed by change(state), sealed again with a valid checksum."""

    def setup(in_folder: Path) -> None:
        state = read_state(command)
        change(state)
        write_state(in_folder, command, state)

    return setup


def foreign(command: str):
    """Another command's genuine resume file."""

    def setup(in_folder: Path) -> None:
        shutil.copyfile(genuine(command), out_folder(in_folder) / RESUME)

    return setup


def unsealed(command: str):
    """The genuine state as an older ganedit wrote it: a plain torch.save file, version 1, no checksum."""

    def setup(in_folder: Path) -> None:
        state = {"format": resume_format(command), "version": 1, **read_state(command)}
        torch.save(state, out_folder(in_folder) / RESUME)

    return setup


class RunsCode:
    """Pickles as a call of os.system: loading it with a plain unpickler would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def carrying_code(command: str):
    """The genuine state with an object whose unpickling runs a shell command, sealed with a valid checksum."""

    def setup(in_folder: Path) -> None:
        state = read_state(command)
        state["trainer" if state.get("trainer") is not None else "history"] = RunsCode(in_folder / "pwned")
        write_state(in_folder, command, state)

    return setup


def lock_held(in_folder: Path) -> None:
    """OUTPUT's lock taken (by this process, as another run would hold it) for the rest of the case."""
    from ganedit.store.lock import lock_path

    while _HELD_LOCKS:  # the previous case's holder is done
        os.close(_HELD_LOCKS.pop())
    descriptor = os.open(lock_path(out_folder(in_folder) / OUTPUT), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    _HELD_LOCKS.append(descriptor)


def stale_lock_and(setup):
    """A lock file left by a killed run (a pid, no lock held), then `setup`."""

    def both(in_folder: Path) -> None:
        from ganedit.store.lock import lock_path

        lock_path(out_folder(in_folder) / OUTPUT).write_text("999999999\n")
        setup(in_folder)

    return both


# ---------------------------------------------------------------------------------------------------
# State changes, valid checksum


def first_matrix(weights: dict) -> str:
    return next(key for key, value in weights.items() if value.ndim >= 2)


def misshape_trainer_G(state):
    G = state["trainer"]["G"]
    key = first_matrix(G)
    G[key] = G[key][:-1].clone()


def misshape_trainer_D(state):
    D = state["trainer"]["D"]
    key = first_matrix(D)
    D[key] = D[key].flatten().clone()


def misshape_adam_state(state):
    state["trainer"]["opt_G"]["state"][0]["exp_avg"] = torch.zeros(3)


def drop_optimiser(state):
    del state["trainer"]["opt_D"]


def seed_as_text(state):
    state["source"]["seed"] = "zero"


def stage_out_of_range(state):
    state["stage"] = ["adapt", 99]


def adapted_of_another_size(state):
    state["adapted"] = [torch.zeros(5)]


def rooted_without_D(state):
    state["rooted"] = {1: {"G": state["trainer"]["G"]}}


def misshape_generator(state):
    generator = state["generator"]
    key = first_matrix(generator)
    generator[key] = generator[key].t().contiguous() if generator[key].ndim == 2 else generator[key][:1].clone()


def history_as_text(state):
    state["history"] = "not a list"


def rng_of_another_size(state):
    state["rng"] = torch.zeros(3, dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------
# The cases


def resume_case(command: str, name: str, setup, expect: str, argv_extra=(), out_allowed=KEEP) -> Case:
    argv = [*RUNS[command], "-o", "{out}/" + OUTPUT, "--resume", *argv_extra]
    return Case("resume", f"{command}-{name}", argv, expect, setup, out_allowed=out_allowed)


def lock_case(command: str) -> Case:
    argv = [*RUNS[command], "-o", "{out}/" + OUTPUT]
    expect = f"held by pid {os.getpid()}); wait for it or choose another -o"  # the holder is this process
    return Case("resume", f"{command}-lock-held", argv, expect, lock_held, out_allowed=(f".{OUTPUT}.lock",))


def disk_full_case() -> Case:
    """SIGTERM in the middle of a step, on a disk with room for the model (2 MB) but not its resume file (7 MB)."""
    argv = [*RUNS["unlearn"], "--adapt-steps", "2000", "--checkpoint-every", "0", "-o", "{out}/" + OUTPUT]
    return Case("resume", "unlearn-interrupted-on-a-full-disk", argv, "could not save the run to resume it later",
                env={"GANEDIT_HEARTBEAT_S": "0.2"}, signal_after="loss_D", out_mount="size=4m")  # fmt: skip


DAMAGED = "damaged (checksum mismatch); delete it and start again without --resume"
MISFIT = "does not fit this run"

CASES: list[Case] = [
    # bits flipped: in the first line, the JSON header, the payload's start, middle and end, the digest
    resume_case("unlearn", "bit-flip-magic", flipped("unlearn", lambda n: 0), "damaged"),
    resume_case("unlearn", "bit-flip-header", flipped("unlearn", lambda n: 30), DAMAGED),
    resume_case("unlearn", "bit-flip-payload-start", flipped("unlearn", lambda n: 200), DAMAGED),
    resume_case("unlearn", "bit-flip-payload-middle", flipped("unlearn", lambda n: n // 2), DAMAGED),
    resume_case("unlearn", "bit-flip-payload-end", flipped("unlearn", lambda n: n - 40), DAMAGED),
    resume_case("unlearn", "bit-flip-digest", flipped("unlearn", lambda n: n - 1), DAMAGED),
    resume_case("merge", "bit-flip", flipped("merge", lambda n: n // 3), DAMAGED),
    resume_case("text-unlearn", "bit-flip", flipped("text-unlearn", lambda n: n // 3), DAMAGED),
    # cut off
    resume_case("unlearn", "truncated", cut("unlearn", lambda n: n // 2), DAMAGED),
    resume_case("merge", "truncated-to-nothing", cut("merge", lambda n: 0), DAMAGED),
    resume_case("text-unlearn", "truncated-by-a-byte", cut("text-unlearn", lambda n: n - 1), DAMAGED),
    # crafted state, valid checksum: every part is checked before it is used
    resume_case("unlearn", "misshaped-tensor", crafted("unlearn", misshape_trainer_G), "mis-shaped"),
    resume_case("unlearn", "misshaped-adam-state", crafted("unlearn", misshape_adam_state), "exp_avg"),
    resume_case("unlearn", "missing-optimiser", crafted("unlearn", drop_optimiser), "not an optimiser state"),
    resume_case("unlearn", "seed-as-text", crafted("unlearn", seed_as_text), "data source seed"),
    resume_case("unlearn", "stage-out-of-range", crafted("unlearn", stage_out_of_range), "stage"),
    resume_case("unlearn", "adapted-of-another-size", crafted("unlearn", adapted_of_another_size), "adapted models"),
    resume_case("merge", "misshaped-tensor", crafted("merge", misshape_trainer_D), "mis-shaped"),
    resume_case("merge", "rooted-without-D", crafted("merge", rooted_without_D), "rooted models"),
    resume_case("text-unlearn", "misshaped-generator", crafted("text-unlearn", misshape_generator), "mis-shaped"),
    resume_case("text-unlearn", "history-as-text", crafted("text-unlearn", history_as_text), "loss history"),
    resume_case("text-unlearn", "rng-of-another-size", crafted("text-unlearn", rng_of_another_size), MISFIT),
    # code in the pickle: refused by the weights-only unpickler, the marker file never appears in {in}
    resume_case("unlearn", "pickle-carrying-code", carrying_code("unlearn"), "refused to load"),
    resume_case("text-unlearn", "pickle-carrying-code", carrying_code("text-unlearn"), "refused to load"),
    # other files: an older ganedit's, another command's, another run's, not a resume file at all
    resume_case("unlearn", "version-1-file", unsealed("unlearn"), "older ganedit"),
    resume_case("merge", "an-unlearn-resume-file", foreign("unlearn"), "not a resume file of `ganedit merge`"),
    resume_case("unlearn", "another-runs-file", foreign("unlearn"), "different run", argv_extra=("--seed", "1")),
    resume_case("text-unlearn", "a-text-file", lambda i: (out_folder(i) / RESUME).write_text("{}"), "not a resume"),
    # one run per output: a held lock refuses at once; a stale one (a killed run's) is taken over and removed
    lock_case("unlearn"),
    lock_case("merge"),
    lock_case("text-unlearn"),
    resume_case("unlearn", "stale-lock", stale_lock_and(flipped("unlearn", lambda n: n // 2)), DAMAGED),
    # the resume file of an interrupt cannot be written: one line, no temporary file, no lock file left
    disk_full_case(),
]
