"""The outer loop of adversarial fine-tuning: steps, progress bar, periodic checkpoints, Ctrl-C.

`run_steps` drives a `Trainer` up to a step count. Interrupts are deferred to step boundaries: a
SIGINT (Ctrl-C) or SIGTERM received during a step lets the step finish, then the loop calls `save`
and raises KeyboardInterrupt (ganedit.errors.Terminated, a KeyboardInterrupt, for SIGTERM), so the
saved state is always a whole number of steps and a resume continues exactly. A second signal
interrupts at once (nothing saved). Periodic checkpoints call `save` every `save_every` steps; `save`
must write atomically (it is the procedure's, since a procedure's state is more than one trainer:
stage, finished models, data source).
"""

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import torch

from ganedit.engine.adversarial import Trainer


class _InterruptFlag:
    """Set by SIGINT / SIGTERM while installed; the second signal restores the default behaviour."""

    def __init__(self):
        self.raised = None

    def __call__(self, signum, _frame):
        if self.raised is not None:
            raise _interrupt(signum)
        self.raised = signum

    def stop(self):
        """Raise what the signal that was received means: Terminated for SIGTERM, KeyboardInterrupt else."""
        raise _interrupt(self.raised)

    def shared(self) -> bool:
        """Whether this process or any other of the run was stopped (a collective call with several processes:
        all then stop at the same step boundary, and save together); the signal then applies to all."""
        from ganedit.engine import distributed

        if distributed.active():
            self.raised = distributed.any_process(self.raised or 0) or None
        return self.raised is not None


def _interrupt(signum) -> KeyboardInterrupt:
    from ganedit.errors import Terminated

    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[_InterruptFlag]:
    """Within the block, SIGINT / SIGTERM only set the flag it yields (main thread only)."""
    flag = _InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Progress(Protocol):
    """What the step loops report to: the command line passes its progress bar down (ganedit.cli.console)."""

    def task(self, description: str, total: int, completed: int = 0): ...

    def update(self, task, completed: int, losses: dict[str, float]) -> None: ...


def run_steps(
    trainer: Trainer,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor | None]],
    steps: int,
    *,
    extra_generator_loss=None,
    save: Callable[[], None] | None = None,
    save_every: int = 0,
    progress: Progress | None = None,
    task=None,
    log_every: int = 10,
) -> dict[str, float]:
    """Train from `trainer.step` up to `steps` steps; return the last step's losses.

    next_batch() -> (real, c) gives each step's real images (c None for unconditional models).
    save() is called every `save_every` steps (0 = never) and when an interrupt stops the run.
    """
    losses: dict[str, float] = {}
    last_log = 0.0
    with deferred_interrupts() as interrupt:
        while trainer.step < steps:
            real, c = next_batch()
            losses = trainer.train_step(real, c, extra_generator_loss)
            finished = trainer.step
            if save is not None and save_every and finished % save_every == 0 and finished < steps:
                save()
            if interrupt.shared():
                if save is not None:
                    save()
                interrupt.stop()
            if progress is not None and (
                time.monotonic() - last_log > 0.5 or finished == steps or finished % log_every == 0
            ):
                progress.update(task, finished, losses)
                last_log = time.monotonic()
    return losses


# ---------------------------------------------------------------------------------------------------
# Resume files of the procedures (unlearn, merge, text-unlearn)

RESUME_VERSION = 2  # 2: sealed with a sha256 (ganedit.store.state_file); 1 was a plain torch.save file
RESUME_ADVICE = "delete it and start again without --resume"


def write_resume(path, format_name: str, identity: str, stage: tuple, trainer, source, **payload) -> None:
    """Atomically write a procedure's resume state, sealed with its sha256: its stage, the trainer and data
    source, anything else. A file that cannot be written (no space, a read-only folder) stops the run with
    a one-line error saying so.

    Several processes: every process calls it (the states of all are gathered), rank 0 writes the file,
    which records the number of processes; a failure to write stops them all."""
    from ganedit.engine import distributed
    from ganedit.store.atomic import OutputError
    from ganedit.store.state_file import write_state_file

    state = {
        "identity": identity,
        "stage": list(stage),
        "trainer": trainer.state_dict() if trainer is not None else None,
        "source": source.state_dict() if source is not None else None,
        "world_size": distributed.world_size(),
        **payload,
    }

    def write():
        try:
            write_state_file(path, format_name, RESUME_VERSION, state)
        except OutputError as error:
            raise OutputError(f"could not save the run to resume it later, so it stopped: {error}") from None

    distributed.on_main_process(write)


def read_resume(path, format_name: str, identity: str, command: str) -> dict:
    """The state `write_resume` wrote at `path`; a missing, damaged or older file, another format or another
    run is refused in one line. The caller checks the parts it uses (`check_stage`, the loaders' checks)."""
    from pathlib import Path

    from ganedit.errors import GaneditError
    from ganedit.store.state_file import read_state_file, state_mismatch

    if path is None:
        raise GaneditError("--resume needs the checkpoint file of the interrupted run")
    path = Path(path)
    if not path.exists():
        raise GaneditError(f"resume file {path} does not exist; check the path, or start without --resume")
    state = read_state_file(path, format_name, RESUME_VERSION, f"resume file of `ganedit {command}`", RESUME_ADVICE)
    from ganedit.engine import distributed

    saved_by = state.get("world_size", 1)
    if saved_by != distributed.world_size():
        count = saved_by if isinstance(saved_by, int) and not isinstance(saved_by, bool) and saved_by > 0 else None
        if count is None:
            raise state_mismatch(str(path), f"its process count {saved_by!r} is not a count")
        raise GaneditError(
            f"resume file {path} was written by a run of {count} process(es) and this run has "
            f"{distributed.world_size()}; resume it with as many ({distributed.processes_hint(count)})"
        )
    if state.get("identity") != identity:
        raise GaneditError(
            f"resume file from a different run: {path} was written for other models, images or settings; "
            "resume with exactly the same command, or start a new run"
        )
    missing = [key for key in ("stage", "trainer", "source") if key not in state]
    if missing or not isinstance(state["stage"], list):
        raise state_mismatch(str(path), f"no {', '.join(missing)}" if missing else "its stage is not a list")
    state["stage"] = tuple(state["stage"])
    return state


def check_stage(path, stage: tuple, stages: dict[str, int]) -> None:
    """Refuse a resume file's stage unless it is (name, index) with index < stages[name]."""
    from ganedit.store.state_file import state_mismatch

    name, index = stage if len(stage) == 2 else (None, None)
    if name not in stages or not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < stages[name]:
        raise state_mismatch(str(path), f"its stage {list(stage)!r} is not one of this run's")


IDENTITY_CHUNK = 64  # uint8 images converted at once by run_identity


def run_identity(description, tensors: Iterable[torch.Tensor]) -> str:
    """A fingerprint of what a run computes (its settings and input tensors), written into its resume file
    so that a resume file from another run is refused.

    Tensors are hashed as float32. uint8 images [N, C, H, W] (a folder as load_image_folder holds it) are
    hashed as the float32 [-1, 1] images they stand for (x / 127.5 - 1), IDENTITY_CHUNK images at a time: the
    identity does not depend on how the images are held, and no float32 copy of the whole set is made."""
    from ganedit.engine.sources import as_float_images

    digest = hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode())
    for tensor in tensors:
        tensor = tensor.detach()
        if tensor.dtype == torch.uint8 and tensor.ndim == 4:
            for chunk in tensor.split(IDENTITY_CHUNK):
                digest.update(as_float_images(chunk.cpu()).contiguous().numpy().tobytes())
        else:
            digest.update(tensor.cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()
