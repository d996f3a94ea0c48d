"""Train a toy world StyleGAN2 pair (unconditional generator + discriminator) from a seed.

`unlearn` and `merge` need unconditional StyleGAN2-architecture models *with* their discriminators
(evaluation.md, "The toy world"). This script makes the three that ganedit ships:

    python scripts/train_toy_stylegan2.py toy-stylegan2      # every shape, colour, background
    python scripts/train_toy_stylegan2.py toy-stylegan2-a    # shapes of domain A only (DOMAINS)
    python scripts/train_toy_stylegan2.py toy-stylegan2-b    # shapes of domain B only

each written to ganedit/data/<name>.safetensors (or -o). The full-world model is the one to unlearn a
shape kind ("star") or a colour ("red") from; A and B are the two disjoint domains merge combines.

How, and why not adversarially from scratch: on this project's 2-core CPU, 4,000 adversarial steps
(27 minutes) of this generator learned colours and positions but drew every shape as a blob (toy FID
32, two real sets 1.4). So, as for toy-biggan (scripts/train_toy_biggan.py), the generator learns to
*render*, and only the discriminator is trained adversarially:

1. render: z codes a toy image's attributes: shape = argmax of z[0:S] over the model's S shapes, colour
   = argmax of the next 8, background = argmax of the next 3, size, x, y and rotation from the normal
   CDF of the next 4, all read from z after StyleGAN2's own normalisation (z * sqrt(z_dim) / |z|, which
   argmax ignores). G(z) is L1-regressed onto the toy renderer's image of those attributes. Per-pixel
   noise is random while training, so G learns to draw the same image whatever the noise.
2. sharpen: the same L1 plus 0.05 x the toy oracle's shape and colour cross-entropy on a blurred,
   shifted, noised view of each image, which turns rounded blobs into recognisable shapes.
3. discriminator: with G frozen (its EMA), D is trained with StyleGAN2's logistic loss and lazy R1 to
   tell real toy images (of the model's shapes) from G's. It is the D the procedures start from.

G's mapping network has StyleGAN2's learning-rate multiplier 0.01 (kept in the file: fine-tuning sees
a standard StyleGAN2); while rendering its Adam learning rate is divided by that multiplier, which for
Adam is the same as training it at multiplier 1. G's tracked w_avg is the mean w of 4,096 latents.

Time (2-core CPU, sharing it with other work): full world about 25 minutes at the defaults
(4,000 + 1,500 + 600 steps); A and B, with half the shapes, about 12 minutes each at
`--render-steps 2500 --sharpen-steps 1000`. `--device cuda` runs the same code.
"""

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ganedit
from ganedit.models.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganedit.provenance import make_provenance
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, robust_view
from ganedit.training.adversarial import Trainer, TrainingConfig

DATA = Path(__file__).resolve().parents[1] / "ganedit" / "data"
DOMAINS = {
    "toy-stylegan2": list(world.SHAPES),
    "toy-stylegan2-a": ["circle", "square", "triangle", "star", "cross"],
    "toy-stylegan2-b": ["ring", "crescent", "heart", "arrow", "ellipse"],
}
SHARPEN_WEIGHT = 0.05
CHANNELS = [64, 64, 48, 32]  # at 4, 8, 16, 32 px
LATENT = 64


def build_pair() -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    G = StyleGAN2Generator(
        StyleGAN2Generator.Config(
            z_dim=LATENT,
            w_dim=LATENT,
            c_dim=0,
            img_resolution=world.RESOLUTION,
            img_channels=3,
            channels=CHANNELS,
            mapping_layers=4,
        )
    )
    D = StyleGAN2Discriminator(
        StyleGAN2Discriminator.Config(c_dim=0, img_resolution=world.RESOLUTION, img_channels=3, channels=CHANNELS)
    )
    return G, D


def attributes_from_latents(z: torch.Tensor, shapes: list[str]) -> tuple[torch.Tensor, ...]:
    """The toy attributes a latent codes (module docstring, step 1), as `world.render` arguments."""
    z = z * (z.shape[1] ** 0.5) / z.norm(dim=1, keepdim=True)  # what G's mapping network sees
    normal_cdf = torch.distributions.Normal(0.0, 1.0).cdf
    s, c, b = len(shapes), len(world.COLOURS), len(world.BACKGROUNDS)
    shape = torch.tensor([world.SHAPES.index(name) for name in shapes])[z[:, :s].argmax(dim=1)]
    colour = z[:, s : s + c].argmax(dim=1)
    background = z[:, s + c : s + c + b].argmax(dim=1)
    size, x, y, rotation = normal_cdf(z[:, s + c + b : s + c + b + 4]).unbind(dim=1)
    size = world.SIZE_MIN + (world.SIZE_MAX - world.SIZE_MIN) * size
    x, y = (1 - size) * (2 * x - 1), (1 - size) * (2 * y - 1)
    return shape, colour, background, size, x, y, world.ROTATION_MAX * (2 * rotation - 1)


def fit_generator(
    G: StyleGAN2Generator, shapes: list[str], phase: str, steps: int, lr: float, batch: int, seed: int, device
) -> StyleGAN2Generator:
    """Phases 1 and 2: fit G in place; return its EMA."""
    oracle = load_oracle(device) if phase == "sharpen" else None
    rng = torch.Generator().manual_seed(seed)
    G.train().requires_grad_(True)
    mapping = list(G.mapping.parameters())
    optimiser = torch.optim.Adam(
        [
            {"params": mapping, "lr": lr / G.config.mapping_lr_multiplier},
            {"params": list(G.synthesis.parameters()), "lr": lr},
        ],
        betas=(0.5, 0.99),
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    ema = copy.deepcopy(G).requires_grad_(False)
    start = time.time()
    for step in range(steps):
        z = torch.randn(batch, G.z_dim, generator=rng)
        attributes = attributes_from_latents(z, shapes)
        target = world.render(*attributes).to(device)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**62, [], generator=rng)))
            images = G(z.to(device), noise_mode="random")
        l1 = F.l1_loss(images, target)
        loss = l1
        if oracle is not None:
            logits = oracle(robust_view(images, rng))
            loss = l1 + SHARPEN_WEIGHT * (
                F.cross_entropy(logits["shape"], attributes[0].to(device))
                + F.cross_entropy(logits["colour"], attributes[1].to(device))
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            decay = 0.995 if step > steps // 4 else 0.0
            torch._foreach_lerp_(list(ema.parameters()), list(G.parameters()), 1 - decay)
        if step % 250 == 0 or step == steps - 1:
            print(f"{phase} {step}: l1 {l1.item():.4f} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    return ema


def fit_discriminator(G, D, shapes: list[str], steps: int, batch: int, seed: int, device) -> None:
    """Phase 3: D against the frozen G with the engine's losses (G's learning rate 0: G stays as it is)."""
    config = TrainingConfig(batch_size=batch, pl_weight=0.0, ema_kimg=0.0, seed=seed)
    trainer = Trainer(copy.deepcopy(G), D, config)
    for group in trainer.opt_G.param_groups:
        group["lr"] = 0.0
    data = torch.Generator().manual_seed(seed + 1)
    start = time.time()
    for step in range(steps):
        losses = trainer.train_step(world.sample(batch, data, shapes=shapes).images)
        if step % 100 == 0 or step == steps - 1:
            print(f"discriminator {step}: {losses} {time.time() - start:.0f}s", flush=True)


@torch.no_grad()
def set_w_avg(G: StyleGAN2Generator, seed: int) -> None:
    z = torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(seed))
    G.mapping.w_avg.copy_(G.mapping(z.to(G.mapping.w_avg.device))[:, 0].mean(dim=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DOMAINS))
    parser.add_argument("-o", "--output", type=Path, help="default: ganedit/data/<name>.safetensors")
    parser.add_argument("--render-steps", type=int, default=4000)
    parser.add_argument("--sharpen-steps", type=int, default=1500)
    parser.add_argument("--discriminator-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    shapes, device = DOMAINS[args.name], torch.device(args.device)
    output = args.output or DATA / f"{args.name}.safetensors"

    torch.manual_seed(args.seed)
    G, D = build_pair()
    G, D = G.to(device).train(), D.to(device)
    start = time.time()
    G = fit_generator(G, shapes, "render", args.render_steps, 2e-3, args.batch_size, args.seed, device)
    if args.sharpen_steps:
        G = fit_generator(G, shapes, "sharpen", args.sharpen_steps, 5e-4, args.batch_size, args.seed + 2, device)
    set_w_avg(G, args.seed + 3)
    G.eval().requires_grad_(False)
    fit_discriminator(G, D, shapes, args.discriminator_steps, 32, args.seed + 4, device)

    provenance = make_provenance(
        "train-toy-stylegan2",
        {
            "name": args.name,
            "shapes": shapes,
            "render_steps": args.render_steps,
            "sharpen_steps": args.sharpen_steps,
            "sharpen_weight": SHARPEN_WEIGHT,
            "discriminator_steps": args.discriminator_steps,
            "batch_size": args.batch_size,
            "objective": "G: L1 regression onto toy renderings of the attributes z codes, then + oracle shape and "
            "colour CE; D: logistic loss + lazy R1 against the frozen G",
            "device": args.device,
            "seconds": round(time.time() - start),
        },
        parents=[],
        seed=args.seed,
    )
    ganedit.save_checkpoint(output, G.cpu(), D.cpu().eval(), provenance=provenance)
    print(f"wrote {output} in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
