"""Benchmark: one step of ganedit's adversarial fine-tuning engine (the step unlearn and merge repeat).

Prints one JSON object (design/performance.md, "How to measure"). A step is what the reference
rosinality training step does: a D step, a G step, lazy R1 (every 16) and path length (every 4) with
their own optimiser steps, style mixing 0.9, and the G EMA update. The medians are over a whole
number of 16-step cycles, so every lazy term is counted at its real frequency.

Settings of design/performance.md, with rosinality's default StyleGAN2 (latent 512, 8 mapping layers,
channel multiplier 2), random weights:
- 256 px, batch 16 (Adapt-then-Unlearn CelebA-HQ / AFHQ): reference 0.280 s / iteration, 57 images / s;
- 128 px, batch 32 (GAN Cocktail): reference 0.327 s / iteration, 98 images / s
(both on one H100; compare only with figures measured on the same GPU kind).

    python benchmarks/adversarial_step.py                   # CUDA, both settings
    python benchmarks/adversarial_step.py --autocast bfloat16
    python benchmarks/adversarial_step.py --device cpu --tiny   # smoke test on a 32 px model
"""

import argparse
import json
import statistics
import time

import torch
from common import device_description, peak_memory_gib, reset_peak_memory, synchronize

from ganedit.engine.adversarial import Trainer, TrainingConfig
from ganedit.generators.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

# (resolution, batch, reference seconds per iteration on an H100, design/performance.md)
SETTINGS = ((256, 16, 0.280), (128, 32, 0.327))
CYCLE = 16  # steps after which every lazy term has run at its frequency (R1 every 16, PL every 4)


def rosinality_channels(resolution: int, channel_multiplier: int = 2) -> list[int]:
    """rosinality's channel table, 4 px upwards: 512 up to 32 px, then 256 * cm, 128 * cm, 64 * cm, ..."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier}
    table.update({256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier})
    return [table[2**i] for i in range(2, resolution.bit_length())]


def build_pair(resolution: int, tiny: bool, device: torch.device) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    torch.manual_seed(0)
    channels = [32] * (resolution.bit_length() - 2) if tiny else rosinality_channels(resolution)
    latent = 32 if tiny else 512
    G = StyleGAN2Generator(
        StyleGAN2Generator.Config(
            z_dim=latent,
            w_dim=latent,
            c_dim=0,
            img_resolution=resolution,
            img_channels=3,
            channels=channels,
            mapping_layers=2 if tiny else 8,
        )
    )
    D = StyleGAN2Discriminator(
        StyleGAN2Discriminator.Config(c_dim=0, img_resolution=resolution, img_channels=3, channels=channels)
    )
    return G.to(device), D.to(device)


def time_steps(resolution: int, batch: int, args, device: torch.device) -> dict:
    G, D = build_pair(resolution, args.tiny, device)
    trainer = Trainer(G, D, TrainingConfig(batch_size=batch, autocast=args.autocast))
    real = torch.rand(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = real.to(device)
    for _ in range(args.warmup):
        trainer.train_step(real)
    reset_peak_memory(device)
    cycles = []
    for _ in range(args.cycles):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(CYCLE):
            trainer.train_step(real)
        synchronize(device)
        cycles.append((time.perf_counter() - start) / CYCLE)
    seconds = statistics.median(cycles)
    return {
        "resolution": resolution,
        "batch": batch,
        "generator_parameters": sum(p.numel() for p in G.parameters()),
        "discriminator_parameters": sum(p.numel() for p in D.parameters()),
        "seconds_per_step": seconds,
        "images_per_second": batch / seconds,
        "cycles_timed": len(cycles),
        "peak_memory_gib": peak_memory_gib(device),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="32 px, 32 channels: a smoke test of the same code")
    parser.add_argument("--autocast", choices=["bfloat16"], default=None)
    parser.add_argument("--warmup", type=int, default=None, help="steps before timing (default 16, tiny 2)")
    parser.add_argument("--cycles", type=int, default=None, help="timed cycles of 16 steps (default 5, tiny 1)")
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (2 if args.tiny else CYCLE)
    args.cycles = args.cycles or (1 if args.tiny else 5)
    device = torch.device(args.device)
    settings = [(32, 8, None)] if args.tiny else SETTINGS

    results = []
    for resolution, batch, reference in settings:
        result = time_steps(resolution, batch, args, device)
        if reference is not None:
            result["reference_seconds_per_step_h100"] = reference
            result["reference_images_per_second_h100"] = batch / reference
        results.append(result)
    name, _ = device_description(device)
    print(
        json.dumps(
            {
                "benchmark": "adversarial-step",
                "device": name,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "weights": "random (speed does not depend on weight values)",
                "step": "D step + G step, lazy R1 every 16 and path length every 4 on their own optimiser "
                "steps, style mixing 0.9, G EMA; median over whole 16-step cycles",
                "autocast": args.autocast,
                "timing": "torch.cuda.synchronize() around every timed cycle"
                if device.type == "cuda"
                else "wall clock",
                "results": results,
                "note": "reference figures are rosinality's step on one H100 (design/performance.md): compare "
                "ratios only when this ran on an H100",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
