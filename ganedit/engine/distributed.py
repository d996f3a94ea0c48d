"""Data-parallel runs over several processes (`torchrun`), for the procedures that train.

The way StyleGAN2-ADA's and GAN Cocktail's training scales out, in torch.distributed's terms: every
process holds the whole model, draws its own latents and real batches (seeded by the run's seed and its
rank), and the gradients of every optimiser step are averaged over the processes (the Trainer,
ganedit.engine.adversarial; text-unlearn's loop). So every process holds the same weights throughout,
and the batch of one step is `batch_size * world_size` images.

One process, rank 0, speaks for the run: it alone prints, and writes the resume files and the outputs.
Whatever one process must know of another goes through the helpers here:

- `start_from_environment`: join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR, MASTER_PORT): gloo on the CPU, NCCL on CUDA (each process on GPU LOCAL_RANK).
- `every_rank` / `own_rank`: a resume state holds every process's random-number and data-source state,
  and each process of the resumed run takes its own back; a run resumed with another number of processes
  is refused in one line.
- `any_process`: a stop (Ctrl-C, SIGTERM) received by one process stops all at the same step boundary.
- `on_main_process`: rank 0 does something (writes a file); a failure there stops every process.
- `average_gradients`, `broadcast_`: the data-parallel step itself.
- `fingerprint` / `fingerprints`: the sha256 of a module's tensors in each process, to show (and check)
  that the processes ended in sync.

With one process (no torchrun, or torchrun with one), every helper is the identity and nothing changes.
"""

import hashlib
import os

import torch

from ganedit.errors import GaneditError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class MainProcessFailed(GaneditError):
    """Raised in the other processes when rank 0 failed at something it did for all (rank 0 says what)."""


def active() -> bool:
    """True in a run of several processes (an initialised default process group of more than one)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and world_size() > 1


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def is_main_process() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes a process of a torchrun run of more than one process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def start_from_environment(device: torch.device) -> torch.device:
    """Join the process group the torchrun environment describes; the device this process runs on.

    `device` is the one the user asked for: on CUDA each process takes GPU LOCAL_RANK (a `cuda:i` given
    explicitly is refused: torchrun places the processes); on the CPU the processes share the machine.
    """
    if not torch.distributed.is_available():
        raise GaneditError("this torch build has no torch.distributed; run without torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        if device.index is not None:
            raise GaneditError(
                f"--device {device}: under torchrun each process takes GPU LOCAL_RANK; give --device cuda"
            )
        if local_rank >= torch.cuda.device_count():
            raise GaneditError(f"process {local_rank} of this machine has no GPU ({torch.cuda.device_count()} here); "
                               "start at most one process per GPU (--nproc-per-node)")  # fmt: skip
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_backend_available(backend):
        raise GaneditError(f"torch.distributed's {backend} backend is not available in this torch build; "
                           "run without torchrun")  # fmt: skip
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return device


def stop() -> None:
    """Leave the process group (at the end of a command)."""
    global _TRAINING
    _TRAINING = False
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launched_rank() -> int:
    """This process's rank: the process group's, else torchrun's RANK (before the group is joined), else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", 0)) if launched_by_torchrun() else 0


def every_rank(value):
    """The list of every process's `value` (a collective call: every process must make it); [value] alone."""
    if not active():
        return [value]
    values = [None] * world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def own_rank(values, source: str, what: str):
    """This process's entry of `every_rank`'s list as a resume state holds it, checked: a list with one entry
    per process of this run, else a one-line error that names how many processes to resume with."""
    count = len(values) if isinstance(values, list) else 0
    if count != world_size():
        raise GaneditError(
            f"{source}: its {what} is from a run of {count or 1} process(es) and this run has {world_size()}; "
            f"resume it with as many ({processes_hint(count or 1)})"
        )
    return values[rank()]


def processes_hint(count: int) -> str:
    return "without torchrun" if count == 1 else f"torchrun --nproc-per-node {count} -m ganedit ..."


def any_process(flag: int) -> int:
    """The largest of every process's `flag` (a collective call); `flag` itself with one process."""
    if not active():
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=_collective_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


def on_main_process(action) -> None:
    """Call `action()` in rank 0 alone (a file write, say); every process returns when it has. If it raises a
    GaneditError, rank 0 raises it and the others raise MainProcessFailed, so that no process goes on alone."""
    if not active():
        action()
        return
    failure, message = None, [None]
    if is_main_process():
        try:
            action()
        except GaneditError as error:
            failure, message = error, [str(error)]
    torch.distributed.broadcast_object_list(message, src=0)
    if failure is not None:
        raise failure
    if message[0] is not None:
        raise MainProcessFailed(f"process 0 stopped the run: {message[0]}")


_TRAINING = False  # set when the processes first trained together (broadcast_ of the starting weights)


def broadcast_(tensors) -> None:
    """Overwrite `tensors` in every process with rank 0's (in place): how every process starts training from
    the same weights (marks the run as training together, see `training_together`)."""
    global _TRAINING
    if active():
        for tensor in tensors:
            torch.distributed.broadcast(tensor.data, src=0)
        _TRAINING = True


def training_together() -> bool:
    """Whether the processes have begun to train together. Before, every process checks the same inputs and
    meets the same problems (rank 0 reports them); after, a process can fail alone (and reports it)."""
    return _TRAINING and active()


def average_gradients(parameters) -> None:
    """Average the gradients of those of `parameters` that require them over the processes, as one flat
    all-reduce (as StyleGAN3's training loop does). A parameter this process's graph did not reach gets a
    zero gradient first, so that every process reduces the same tensors."""
    if not active():
        return
    trained = [p for p in parameters if p.requires_grad]
    if not trained:
        return
    for parameter in trained:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    flat = torch.cat([p.grad.flatten() for p in trained])
    torch.distributed.all_reduce(flat)
    flat /= world_size()
    pieces = flat.split([p.numel() for p in trained])
    torch._foreach_copy_(
        [p.grad for p in trained], [piece.view_as(p) for piece, p in zip(pieces, trained, strict=True)]
    )


def fingerprint(module: torch.nn.Module) -> str:
    """The sha256 of `module`'s state (names, shapes, dtypes and bytes of every tensor, in order)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{list(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def fingerprints(module: torch.nn.Module) -> list[str]:
    """Every process's `fingerprint(module)` (a collective call), checked: processes that no longer hold the
    same weights are a bug in the data-parallel step, and stop the run before anything is written."""
    values = every_rank(fingerprint(module))
    if len(set(values)) > 1:
        raise RuntimeError(f"the {len(values)} processes of this run ended with different weights: {values}")
    return values


def processes(module: torch.nn.Module) -> dict:
    """What a report says of a run of several processes: their count and `fingerprints(module)` (collective)."""
    return {"count": world_size(), "fingerprints": fingerprints(module)}


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
