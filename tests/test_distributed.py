"""The adversarial Trainer data-parallel over two CPU processes (gloo, launched with torchrun).

Each process builds the tiny StyleGAN2 pair from a different seed and is given its own real batches; after a
few steps that include R1 and path-length steps (double backward), both must hold bit-identical G, D, G_ema,
optimiser states and running path length: the broadcast at construction and the gradient, w_avg and
path-length averaging keep them in sync.
"""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
WORLD_SIZE = 2
STEPS = 5
BATCH = 4
EMA_KIMG = 0.01

# The worker, run as a script by torchrun (RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from the launcher).
WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist

    tests, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    batch, ema_kimg = int(sys.argv[4]), float(sys.argv[5])
    sys.path.insert(0, str(tests))
    from helpers import tiny_stylegan2_pair

    from ganedit.engine.adversarial import Trainer, TrainingConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()

    def _save(state, path, rank):
        if rank == 0:
            torch.save(state, path)
        dist.barrier()
        return path

    def flat(trainer):
        tensors = {
            f"{name}.{key}": value.detach().clone()
            for name in ("G", "D", "G_ema")
            for key, value in getattr(trainer, name).state_dict().items()
        }
        for name in ("opt_G", "opt_D"):
            for index, state in getattr(trainer, name).state_dict()["state"].items():
                for key, value in state.items():
                    tensors[f"{name}.{index}.{key}"] = torch.as_tensor(value).clone()
        tensors["pl_mean"] = trainer.pl_mean.detach().clone()
        return tensors

    G, D = tiny_stylegan2_pair(seed=rank)  # a different initialisation on every rank: the broadcast must fix it
    initial = {f"G.{k}": v.clone() for k, v in G.state_dict().items()}
    initial.update({f"D.{k}": v.clone() for k, v in D.state_dict().items()})
    config = TrainingConfig(batch_size=batch, r1_every=2, pl_every=2, pl_weight=2.0, ema_kimg=ema_kimg, seed=0)
    trainer = Trainer(G, D, config)
    constructed = {k: v for k, v in flat(trainer).items() if not k.startswith("opt_")}
    data = torch.Generator().manual_seed(1000 + rank)  # every rank its own real images
    reals = [torch.rand([config.batch_size, 3, 16, 16], generator=data) * 2 - 1 for _ in range(steps)]
    losses = []
    for step, real in enumerate(reals):
        if step == steps - 2:
            state_file = _save(trainer.state_dict(), out / "state.pt", rank)  # collective: every rank's RNG
        before_last = {k: v for k, v in flat(trainer).items() if k.startswith("G_ema.")}
        losses.append(trainer.train_step(real))

    # Resume: a fresh trainer loads the state rank 0 would have written and does the last two steps again.
    G2, D2 = tiny_stylegan2_pair(seed=10 + rank)
    resumed = Trainer(G2, D2, config)
    resumed.load_state_dict(torch.load(state_file, weights_only=True))
    for real in reals[-2:]:
        resumed.train_step(real)
    torch.save(
        {
            "initial": initial,
            "constructed": constructed,
            "before_last": before_last,
            "final": flat(trainer),
            "resumed": flat(resumed),
            "losses": losses,
        },
        out / f"rank{rank}.pt",
    )
    dist.destroy_process_group()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    assert a.keys() == b.keys(), what
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{what}: ranks differ in {len(different)} tensors, e.g. {different[:5]}"


@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)
def test_two_processes_train_in_sync(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD_SIZE}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        str(worker),
        str(TESTS),
        str(tmp_path),
        str(STEPS),
        str(BATCH),
        str(EMA_KIMG),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"torchrun failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE))

    # The ranks really did start from different weights, and construction gave both rank 0's.
    assert any(not torch.equal(rank0["initial"][k], rank1["initial"][k]) for k in rank0["initial"])
    for key, value in rank0["initial"].items():
        assert torch.equal(rank1["constructed"][key], value), f"{key} was not broadcast from rank 0"
    assert_bit_equal(rank0["constructed"], rank1["constructed"], "after construction")

    # They saw different data (and drew different latents): their losses differ.
    for step, (losses0, losses1) in enumerate(zip(rank0["losses"], rank1["losses"], strict=True)):
        assert losses0.keys() == losses1.keys()
        assert losses0["loss_D"] != losses1["loss_D"], f"step {step}: both ranks computed the same loss_D"
        # G and the just-updated D are in sync, so loss_G differs only if the ranks' latents do (seed + rank).
        assert losses0["loss_G"] != losses1["loss_G"], f"step {step}: both ranks drew the same latents"
    assert "r1" in rank0["losses"][0] and "pl" in rank0["losses"][0]  # the double-backward steps ran
    assert "r1" in rank0["losses"][STEPS - 1] and "pl" in rank0["losses"][STEPS - 1]

    # Yet they end identical: networks, G_ema, both optimisers' Adam moments and step counts, pl_mean.
    final0, final1 = rank0["final"], rank1["final"]
    assert any(key.startswith("opt_G.") and key.endswith(".exp_avg") for key in final0)
    assert any(key.startswith("opt_D.") and key.endswith(".exp_avg_sq") for key in final0)
    assert_bit_equal(final0, final1, f"after {STEPS} steps")
    # A two-process run resumed from rank 0's state file ends exactly where the uninterrupted one did.
    assert_bit_equal(rank0["resumed"], final0, "rank 0 resumed vs uninterrupted")
    assert_bit_equal(rank1["resumed"], final1, "rank 1 resumed vs uninterrupted")
    assert final0["pl_mean"] > 0

    # And training moved them away from where they started (rank 0's weights, and rank 1's own).
    for start in (rank0["initial"], rank1["initial"]):
        moved = [key for key, value in start.items() if not torch.equal(final0[key], value)]
        assert any(key.startswith("G.") for key in moved) and any(key.startswith("D.") for key in moved)
    assert not torch.equal(final0["G_ema.mapping.w_avg"], rank0["initial"]["G.mapping.w_avg"])

    # G_ema's half-life counts the images of all processes: a step sees batch_size * world_size of them.
    beta = 0.5 ** (BATCH * WORLD_SIZE / (EMA_KIMG * 1000))
    for key, previous in rank0["before_last"].items():
        if previous.is_floating_point() and not key.endswith("w_avg") and ".noise_const" not in key:
            expected = previous.lerp(final0["G." + key.removeprefix("G_ema.")], 1 - beta)
            torch.testing.assert_close(final0[key], expected, rtol=1e-6, atol=1e-7, msg=key)
