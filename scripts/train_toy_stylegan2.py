"""Train a toy world StyleGAN2 (generator + discriminator) adversarially, from a seed.

The unlearn and merge procedures need unconditional StyleGAN2-architecture models *with* their
discriminators: one on the full toy world (to unlearn a shape kind or a colour) and two on disjoint
groups of shapes (the two domains merge combines). This script trains any of them with ganedit's own
adversarial engine (`ganedit.training.adversarial.Trainer`: non-saturating loss, lazy R1, path length,
style mixing, G EMA) on freshly drawn toy images, and writes a ganedit checkpoint with both networks.

    python scripts/train_toy_stylegan2.py --name toy-stylegan2 -o ganedit/data/toy-stylegan2.safetensors
    python scripts/train_toy_stylegan2.py --name toy-stylegan2-a --shapes circle,square,triangle,star,cross -o ...

Time and quality: on a 2-core CPU a step takes about 0.4 s at the defaults. The defaults' 4,000 steps
(27 minutes there) learn the colours, backgrounds, sizes and positions but not yet the shapes: the
oracle calls most samples circles or ellipses, and the toy FID against real toy images is 32 (two real
sets: 1.4). The models to ship need a much longer run, on a GPU; none is shipped yet.
"""

import argparse
import time
from pathlib import Path

import torch

import ganedit
from ganedit.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganedit.provenance import make_provenance
from ganedit.toy import world
from ganedit.training.adversarial import Trainer, TrainingConfig


def build_pair(channels: list[int], latent: int) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    G = StyleGAN2Generator(
        StyleGAN2Generator.Config(
            z_dim=latent,
            w_dim=latent,
            c_dim=0,
            img_resolution=world.RESOLUTION,
            img_channels=3,
            channels=channels,
            mapping_layers=2,
        )
    )
    D = StyleGAN2Discriminator(
        StyleGAN2Discriminator.Config(c_dim=0, img_resolution=world.RESOLUTION, img_channels=3, channels=channels)
    )
    return G, D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="what the model is called in provenance")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--shapes", default=None, help="comma-separated toy shapes to train on (default: all)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--channels", default="64,64,48,32", help="widths at 4, 8, 16, 32 px")
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    shapes = args.shapes.split(",") if args.shapes else None
    device = torch.device(args.device)

    torch.manual_seed(args.seed)
    G, D = build_pair([int(width) for width in args.channels.split(",")], args.latent)
    config = TrainingConfig(batch_size=args.batch_size, ema_kimg=2.0, seed=args.seed)
    trainer = Trainer(G.to(device), D.to(device), config)
    data = torch.Generator().manual_seed(args.seed + 1)
    start = time.time()
    for step in range(args.steps):
        losses = trainer.train_step(world.sample(args.batch_size, data, shapes=shapes).images)
        if step % 200 == 0 or step == args.steps - 1:
            print(
                {"step": step, **{k: round(v, 4) for k, v in losses.items()}}, f"{time.time() - start:.0f}s", flush=True
            )

    provenance = make_provenance(
        "train-toy-stylegan2",
        {
            "name": args.name,
            "shapes": shapes or world.SHAPES,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "channels": args.channels,
            "latent": args.latent,
            "training": vars(config),
            "device": args.device,
            "seconds": round(time.time() - start),
        },
        parents=[],
        seed=args.seed,
    )
    ganedit.save_checkpoint(args.output, trainer.G_ema.cpu(), trainer.D.cpu(), provenance=provenance)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
