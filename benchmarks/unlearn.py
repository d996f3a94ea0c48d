"""Benchmark: Adapt-then-Unlearn stage 2, the repulsion term's cost beside the reference's reload-every-step.

Prints one JSON object (design/performance.md, "How to measure"). Three kinds of stage-2 step, each
ganedit's engine step (`Trainer.train_step`: D step, G step, lazy R1 every 16 and path length every 4,
style mixing 0.9, G EMA), median over whole 16-step cycles, in this process on one device, the cycles
interleaved (one of each kind per round) so that drift of a shared machine falls on all three alike:

- `step_plain`: no extra generator loss (the training step alone);
- `step_repulsion`: plus ganedit's `Repulsion` (EL2, alpha 5, weight 100) from K = 5 adapted models
  held on the device as flat tensors (ganedit.procedures.unlearn);
- `step_reference_reload`: plus the repulsion computed the way the reference (atriguha/Adapt_Unlearn,
  Unlearning_CelebA/unlearn_main.py, `calc_difference_param_new`) computes it: the K adapted generators
  rebuilt from checkpoint files at every generator step, re-implemented here on ganedit's modules.

`repulsion_overhead` = step_repulsion / step_plain - 1 (target: under 0.10);
`speedup_vs_reference` = step_reference_reload / step_repulsion (target: at least 5 at 256 px on a GPU).
The adapted models are the starting G plus small Gaussian perturbations: speed does not depend on the
values (weights are random as in adversarial_step.py).

    python benchmarks/unlearn.py                        # CUDA, 256 px batch 16 (CelebA-HQ / AFHQ setting)
    python benchmarks/unlearn.py --autocast bfloat16
    python benchmarks/unlearn.py --checkpoint-contents g_ema   # reference files holding G_ema only
    python benchmarks/unlearn.py --device cpu --tiny    # smoke test on a 32 px model, batch 4
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from adversarial_step import CYCLE, build_pair
from common import device_description, peak_memory_gib, reset_peak_memory, synchronize
from torch import nn

from ganedit.engine.adversarial import Trainer, TrainingConfig
from ganedit.generators.stylegan2 import StyleGAN2Generator
from ganedit.procedures.unlearn import Repulsion, UnlearnSettings, flat, model_from_flat, trainable

K = 5  # adapted models (methods.md section 3; the reference's ckpt_gens_repel lists 5 files)
ALPHA, GAMMA, WEIGHT = 5.0, 1.0, 100.0  # EL2: WEIGHT * exp(-ALPHA * d); the reference's fixed weight is 100
PERTURBATION = 0.01  # std of the adapted models' offsets from the original (values do not affect speed)
# design/performance.md, on one H100: the reference's training step at 256 px batch 16, and its stage-2
# iteration (that step plus K = 5 generators reloaded from disk at every generator step: +1.35 s)
REFERENCE_H100 = {"training_step_seconds": 0.280, "stage_2_iteration_seconds": 1.63, "reload_extra_seconds": 1.35}


class ReferenceReloadRepulsion:
    """The reference's repulsion (`calc_difference_param_new` + its EL2 form), on ganedit's modules.

    Which reference behaviour each choice mirrors:
    - at every generator step, for each of the K checkpoint paths (`for ckpt_gen in ckpt_gens`), a new
      generator is constructed (random init on the CPU) and moved to the device
      (`Generator(256, 512, 8, channel_multiplier=2).to(device)`);
    - the whole checkpoint file is read with `torch.load` and no map_location, so its tensors come back
      on the device they were saved from (the reference's files were saved from CUDA training), and
      only its "g_ema" entry is used, `load_state_dict(ckpt["g_ema"], strict=False)`; the files are the
      stage-1 script's full training checkpoints (g, d, g_ema, g_optim, d_optim) unless
      --checkpoint-contents g_ema;
    - the parameter count of both models is summed and compared at every load (the reference's assert);
    - the rebuilt generators keep requires_grad=True, so backward also computes (and throws away) the
      gradients of all K adapted copies, as in the reference, and all K stay alive until backward;
    - d_ref = sum over parameter names p of (sum_k mse(theta_N,k,p, theta_p)) / P / 2 * K with
      nn.MSELoss per tensor (a per-tensor mean, so K / (2P) times the sum over p and k, P the number of
      parameter tensors), accumulated in a Python dict keyed by name and a Python sum, as the reference;
    - the loss is the EL2 form, weight * exp(-alpha * d_ref) (reference: a fixed 100).
    Not mirrored: the EWC sum the reference computes on the CPU (stage 1, and stage 2 only with
    --ewc_loss); the reference's cost here is therefore if anything a lower bound. The files are read
    from the OS page cache after the first step (hot), again the reference's best case.
    """

    def __init__(self, paths: list[Path], config: StyleGAN2Generator.Config, device: torch.device):
        self.paths, self.config, self.device = paths, config, device

    def distance(self, G: nn.Module) -> torch.Tensor:
        mse = nn.MSELoss()
        parameter_difference = {}
        for path in self.paths:
            fine_tuned = StyleGAN2Generator(self.config).to(self.device)
            checkpoint = torch.load(path, weights_only=True)  # no map_location: back to the saving device
            fine_tuned.load_state_dict(checkpoint["g_ema"], strict=False)
            num_params = sum(p.numel() for p in G.parameters())
            assert num_params == sum(p.numel() for p in fine_tuned.parameters())
            for (name, weight), (fine_tuned_name, fine_tuned_weight) in zip(
                G.named_parameters(), fine_tuned.named_parameters(), strict=True
            ):
                if name == fine_tuned_name:
                    op = mse(fine_tuned_weight, weight)
                    parameter_difference[name] = parameter_difference.get(name, 0) + op
        value = 0
        for difference in parameter_difference.values():
            value = value + difference / len(parameter_difference) / 2 * len(self.paths)
        return value

    def __call__(self, G: nn.Module) -> torch.Tensor:
        return WEIGHT * torch.exp(-ALPHA * self.distance(G))


def training_config(args, batch: int) -> TrainingConfig:
    """The reference's step (rosinality defaults, as adversarial_step.py), or ganedit's stage-2 settings."""
    if args.stage2_settings == "ganedit":
        return replace(UnlearnSettings(batch_size=batch).training("unlearn", seed=0), autocast=args.autocast)
    return TrainingConfig(batch_size=batch, autocast=args.autocast)


def allocated_gib(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None


def warmed_up_trainer(resolution: int, config: TrainingConfig, real, extra, args, device) -> Trainer:
    """A trainer on a fresh pair (the same seeded weights every time), after `args.warmup` steps."""
    trainer = Trainer(*build_pair(resolution, args.tiny, device), config)
    for _ in range(args.warmup):
        trainer.train_step(real, extra_generator_loss=extra)
    return trainer


def time_interleaved(variants: dict, real, args, device) -> dict:
    """Seconds per step of each variant, median over whole 16-step cycles.

    The cycles are interleaved (one cycle of every variant per round), so drift of the machine (another
    job on a shared CPU, clocks) falls on all variants alike and their ratios stay fair. `variants`:
    name -> (trainer, extra generator loss or None). On CUDA, a variant's working memory is the peak
    allocated during its cycles above what was allocated when they started (all variants' resident state).
    """
    cycles = {name: [] for name in variants}
    working, last_losses = dict.fromkeys(variants), {}
    for _ in range(args.cycles):
        for name, (trainer, extra) in variants.items():
            reset_peak_memory(device)
            base = allocated_gib(device)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(CYCLE):
                last_losses[name] = trainer.train_step(real, extra_generator_loss=extra)
            synchronize(device)
            cycles[name].append((time.perf_counter() - start) / CYCLE)
            if device.type == "cuda":
                working[name] = max(working[name] or 0.0, peak_memory_gib(device) - base)
    results = {}
    for name, (trainer, _) in variants.items():
        seconds = statistics.median(cycles[name])
        results[name] = {
            "seconds_per_step": seconds,
            "images_per_second": trainer.config.batch_size / seconds,
            "cycle_seconds_per_step": cycles[name],
            "cycles_timed": len(cycles[name]),
            "working_memory_gib": working[name],
            "last_losses": last_losses[name],
        }
    return results


def write_reference_checkpoints(
    directory: Path, G: nn.Module, adapted: list[torch.Tensor], trainer: Trainer, contents: str
) -> list[Path]:
    """K checkpoint files as the reference's stage 1 writes them (stylegan2_ewc_train.py, torch.save of
    g, d, g_ema, g_optim, d_optim, ada_aug_p, from CUDA tensors on a GPU run); `contents` "g_ema": that
    entry alone. The optimiser states are `trainer`'s after its steps (Adam moments for every parameter,
    as the reference's, restored from the pre-training checkpoint)."""
    paths = []
    for k, vector in enumerate(adapted):
        state = model_from_flat(G, vector).state_dict()
        checkpoint = {"g_ema": state}
        if contents == "full":
            checkpoint.update(
                g=state,
                d=trainer.D.state_dict(),
                g_optim=trainer.opt_G.state_dict(),
                d_optim=trainer.opt_D.state_dict(),
                ada_aug_p=0.0,
            )
        path = directory / f"adapted_{k}.pt"
        torch.save(checkpoint, path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="32 px, 32 channels, batch 4: a smoke test")
    parser.add_argument("--autocast", choices=["bfloat16"], default=None)
    parser.add_argument("--warmup", type=int, default=None, help="steps before timing (default 16, tiny 2)")
    parser.add_argument("--cycles", type=int, default=None, help="timed rounds, one 16-step cycle of each (default 5)")
    parser.add_argument(
        "--checkpoint-contents",
        choices=["full", "g_ema"],
        default="full",
        help="what the reference's adapted checkpoint files hold: its full stage-1 training checkpoints "
        "(default) or G_ema's state dict alone",
    )
    parser.add_argument(
        "--stage2-settings",
        choices=["reference", "ganedit"],
        default="reference",
        help="engine settings of all three steps: the reference's step (path length on, as "
        "adversarial_step.py; default) or ganedit's unlearn stage 2 (UnlearnSettings: path length off)",
    )
    parser.add_argument("--tmpdir", default=None, help="where the reference's checkpoint files are written")
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (2 if args.tiny else CYCLE)
    args.cycles = args.cycles or 5
    device = torch.device(args.device)
    resolution, batch = (32, 4) if args.tiny else (256, 16)
    config = training_config(args, batch)
    real = torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = real.to(device)

    G0, D0 = build_pair(resolution, args.tiny, device)  # the starting weights (every trainer starts here)
    original = flat(trainable(G0)).detach().clone()
    parameters = {"generator": original.numel(), "generator_tensors": len(trainable(G0))}
    parameters["discriminator"] = sum(p.numel() for p in D0.parameters())
    del D0

    # The K adapted models: the starting G plus small perturbations, resident on the device as flat tensors.
    rng = torch.Generator().manual_seed(2)
    adapted = [original.cpu() + PERTURBATION * torch.randn(original.shape, generator=rng) for _ in range(K)]
    adapted = [a.to(device) for a in adapted]
    repulsion = Repulsion(original, adapted, "el2", alpha=ALPHA, gamma=GAMMA, weight=WEIGHT)

    with tempfile.TemporaryDirectory(prefix="ganedit-unlearn-benchmark-", dir=args.tmpdir) as directory:
        plain = warmed_up_trainer(resolution, config, real, None, args, device)
        # The reference's adapted checkpoint files, with optimiser states that have Adam moments.
        paths = write_reference_checkpoints(Path(directory), G0, adapted, plain, args.checkpoint_contents)
        file_mib = sum(path.stat().st_size for path in paths) / len(paths) / 2**20
        reference_loss = ReferenceReloadRepulsion(paths, G0.config, device)
        # Both compute a distance between the starting G and the adapted models: with perturbations of
        # the same std in every tensor, d_ref = (K^2 / 2) * d exactly in expectation (ganedit.procedures.unlearn).
        with torch.no_grad():
            d_reference = float(reference_loss.distance(G0))
            d_ganedit = float(repulsion.raw_distance(flat(trainable(G0))))
        del G0

        variants = {
            "step_plain": (plain, None),
            "step_repulsion": (warmed_up_trainer(resolution, config, real, repulsion, args, device), repulsion),
            "step_reference_reload": (
                warmed_up_trainer(resolution, config, real, reference_loss, args, device),
                reference_loss,
            ),
        }
        resident = allocated_gib(device)
        results = time_interleaved(variants, real, args, device)
        peak = max(r["working_memory_gib"] for r in results.values()) if resident is not None else None
        del variants, plain

    plain, with_repulsion, with_reload = (
        results[name] for name in ("step_plain", "step_repulsion", "step_reference_reload")
    )
    name, _ = device_description(device)
    reference_figures = None
    if not args.tiny:
        reference_figures = {**REFERENCE_H100, "note": "design/performance.md, one H100: compare only on an H100"}
    print(
        json.dumps(
            {
                "benchmark": "unlearn-repulsion",
                "device": name,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "weights": "random; adapted models = starting G + N(0, 0.01^2) per parameter (speed does not "
                "depend on weight values)",
                "resolution": resolution,
                "batch": batch,
                "parameters": parameters,
                "adapted_models": K,
                "repulsion": {"kind": "el2", "alpha": ALPHA, "gamma": GAMMA, "weight": WEIGHT},
                "stage2_settings": args.stage2_settings,
                "training_config": asdict(config),
                "autocast": args.autocast,
                "reference_checkpoint_contents": args.checkpoint_contents,
                "reference_checkpoint_file_mib": file_mib,
                "step": "D step + G step, lazy R1 every 16 and path length every 4 (when on) on their own "
                "optimiser steps, style mixing 0.9, G EMA; median over whole 16-step cycles after warm-up, "
                "one cycle of each variant per round (interleaved)",
                "timing": "torch.cuda.synchronize() around every timed cycle"
                if device.type == "cuda"
                else "wall clock",
                "warmup_steps": args.warmup,
                "resident_memory_gib": resident,
                "peak_memory_gib": resident + peak if resident is not None else None,
                "memory_note": "all three trainers (G, D, G_ema, Adam states) and the adapted models stay "
                "resident during the interleaved cycles: resident_memory_gib is all of it, each variant's "
                "working_memory_gib the peak above that during its own cycles",
                "step_plain": plain,
                "step_repulsion": with_repulsion,
                "step_reference_reload": with_reload,
                "repulsion_overhead": with_repulsion["seconds_per_step"] / plain["seconds_per_step"] - 1,
                "reference_reload_extra_seconds_per_step": with_reload["seconds_per_step"] - plain["seconds_per_step"],
                "speedup_vs_reference": with_reload["seconds_per_step"] / with_repulsion["seconds_per_step"],
                "targets": {"repulsion_overhead": "< 0.10", "speedup_vs_reference": ">= 5 at 256 px on a GPU"},
                "distance_check": {
                    "reference_d": d_reference,
                    "ganedit_d": d_ganedit,
                    "ratio": d_reference / d_ganedit,
                    "expected_ratio": K**2 / 2,
                },
                "reference_figures_h100": reference_figures,
                "note": "all three steps ran in this process on this device; the tiny setting is a smoke test, "
                "not a target measurement",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
