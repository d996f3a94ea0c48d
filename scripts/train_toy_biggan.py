"""Train the toy world's class-conditional BigGAN-deep generator (`toy-biggan`) from a seed.

The generator has the BigGAN-deep architecture of `ganedit.generators.biggan_deep` at 32 px and has two
designed-in defects (evaluation.md), so that embed-tune has something real to fix:

- a mode-collapsed class: COLLAPSED_SHAPE ("star") is only ever drawn in COLLAPSED_COLOUR ("red");
- an unseen class: UNSEEN_SHAPE ("heart") is a label of the toy oracle that the generator never saw
  (it has 9 classes, every toy shape but that one, in the toy world's order).

How it is trained, and why not adversarially: a GAN of this size needs hours of a 2-core CPU to learn
even this world, and its own, uncontrolled mode collapse would blur the designed-in one. Instead the
generator learns to *render*: the latent z codes the free attributes of a toy image (colour from
z[0:8], background from z[8:11], size, position and rotation from the normal CDF of z[11:15]; the
other dimensions are ignored), and G(z, class) is regressed (L1) onto the toy world's rendering of
that class with those attributes. So z -> image is a deterministic map with exactly the variety the
world has, except where the defects remove it, and training takes minutes. Everything else is
BigGAN-deep as published: batch statistics while training, then the spectral-norm vectors converged by
power iteration and the batch-norm "standing statistics" computed for each of the 51 truncation levels
t = j/50 the way BigGAN-deep's were (the average, over many batches of z = t * truncated_normal(-2, 2)
and random classes, of each batch's mean and variance). Truncation shrinks z towards 0 and so narrows
size, position and rotation towards their middle values, as it narrows a GAN's samples.

Run:  python scripts/train_toy_biggan.py            (writes ganedit/data/toy-biggan.safetensors)
Time: on this project's 2-core CPU about 20 minutes for the render phase (6,000 steps of 64 images,
      standing statistics included) and 11 minutes for the sharpen phase (3,000 steps), measured with
      another job sharing the CPU. Not yet timed on a GPU (`--device cuda` runs the same code).
      The shipped file was made in two invocations: `--sharpen-steps 0` first, then
      `--render-result <that file>`; the sharpen phase starts from the same weights either way.
"""

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import ganedit
from ganedit.generators.biggan_deep import BigGANDeep, SpectralNormParameters
from ganedit.generators.sampling import sample_latents
from ganedit.store.provenance import make_provenance
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, robust_view

OUTPUT = Path(__file__).resolve().parents[1] / "ganedit" / "data" / "toy-biggan.safetensors"
COLLAPSED_SHAPE, COLLAPSED_COLOUR = "star", "red"
UNSEEN_SHAPE = "heart"
SHARPEN_WEIGHT = 0.05  # weight of the oracle's shape cross-entropy in the sharpen phase
CLASS_NAMES = [shape for shape in world.SHAPES if shape != UNSEEN_SHAPE]

# BigGAN-deep at 32 px: 4 -> 8 -> 16 -> 32, channels 64, 64, 32, 16; attention at 16 px.
CONFIG = BigGANDeep.Config(
    z_dim=128,
    class_embed_dim=128,
    channel_width=16,
    num_classes=len(CLASS_NAMES),
    layers=[[False, 4, 4], [True, 4, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2], [True, 2, 1]],
    attention_layer_position=4,
    eps=1e-4,
    n_stats=51,
    output_dim=32,
)


def attributes_from_latents(z: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The toy attributes a latent codes (see the module docstring), as `world.render` arguments."""
    normal_cdf = torch.distributions.Normal(0.0, 1.0).cdf
    colour = z[:, 0 : len(world.COLOURS)].argmax(dim=1)
    colour = torch.where(classes == CLASS_NAMES.index(COLLAPSED_SHAPE), world.COLOURS.index(COLLAPSED_COLOUR), colour)
    background = z[:, 8 : 8 + len(world.BACKGROUNDS)].argmax(dim=1)
    size = world.SIZE_MIN + (world.SIZE_MAX - world.SIZE_MIN) * normal_cdf(z[:, 11])
    x = (1 - size) * (2 * normal_cdf(z[:, 12]) - 1)
    y = (1 - size) * (2 * normal_cdf(z[:, 13]) - 1)
    rotation = world.ROTATION_MAX * (2 * normal_cdf(z[:, 14]) - 1)
    shape = torch.tensor([world.SHAPES.index(name) for name in CLASS_NAMES])[classes]
    return shape, colour, background, size, x, y, rotation


@torch.no_grad()
def power_iteration(model: nn.Module, steps: int = 1) -> None:
    """Update the stored spectral-norm vectors u, v (what PyTorch's spectral_norm does in training)."""
    for module in model.modules():
        if isinstance(module, SpectralNormParameters):
            weight = module.weight_orig.flatten(1)
            for _ in range(steps):
                module.weight_v.copy_(F.normalize(weight.t() @ module.weight_u, dim=0, eps=1e-12))
                module.weight_u.copy_(F.normalize(weight @ module.weight_v, dim=0, eps=1e-12))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
        ema_param.lerp_(param, 1 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def standing_statistics(generator: BigGANDeep, batches: int, batch_size: int, seed: int) -> None:
    """Fill every batch norm's [51, C] tables with the average batch statistics at each truncation."""
    norms = [m for m in generator.modules() if hasattr(m, "batch_statistics")]
    sums = {m: [torch.zeros_like(m.running_means), torch.zeros_like(m.running_vars)] for m in norms}
    row = {"index": 0}

    def record(module, inputs, _output):
        x = inputs[0]
        sums[module][0][row["index"]] += x.mean(dim=(0, 2, 3))
        sums[module][1][row["index"]] += x.var(dim=(0, 2, 3), unbiased=False)

    hooks = [m.register_forward_hook(record) for m in norms]
    generator.use_batch_statistics(True)
    device = next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    for index in range(generator.config.n_stats):
        row["index"] = index
        truncation = index / (generator.config.n_stats - 1)
        for _ in range(batches):
            z = sample_latents(generator, batch_size, int(torch.randint(2**31, (1,), generator=rng)), truncation)
            classes = torch.randint(generator.config.num_classes, (batch_size,), generator=rng)
            generator(z.to(device), classes.to(device), max(truncation, 1e-6))
    for hook in hooks:
        hook.remove()
    generator.use_batch_statistics(False)
    for module in norms:
        module.running_means.copy_(sums[module][0] / batches)
        module.running_vars.copy_(sums[module][1] / batches)


def train(
    phase: str, generator: BigGANDeep, steps: int, lr: float, batch_size: int, seed: int, device: torch.device
) -> tuple[BigGANDeep, dict]:
    """Fit `generator` (in place) and return its exponential moving average (EMA), u/v converged.

    phase "render": L1 between G(z, class) and the toy rendering of the attributes z codes.
    phase "sharpen": the same L1 plus SHARPEN_WEIGHT x the toy oracle's cross-entropy for the class's
    shape. L1 alone leaves the corners of small shapes rounded (a square drawn as a blob); the oracle
    term makes each class's shape recognisable without changing what z codes. The oracle sees a
    randomly blurred, shifted and noised view of each image (`robust_view`), so that the generator
    cannot satisfy it with fine, adversarial texture but has to draw the shape.
    """
    oracle = load_oracle(device) if phase == "sharpen" else None
    rng = torch.Generator().manual_seed(seed)
    generator = generator.to(device).requires_grad_(True).use_batch_statistics(True).train()
    ema = copy.deepcopy(generator).requires_grad_(False)
    optimiser = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    shape_of_class = torch.tensor([world.SHAPES.index(name) for name in CLASS_NAMES], device=device)
    log, start = {}, time.time()
    for step in range(steps):
        z = torch.randn(batch_size, CONFIG.z_dim, generator=rng).clamp(-2, 2)
        classes = torch.randint(CONFIG.num_classes, (batch_size,), generator=rng)
        target = world.render(*attributes_from_latents(z, classes)).to(device)
        power_iteration(generator)
        images = generator(z.to(device), classes.to(device), 1.0)
        l1 = F.l1_loss(images, target)
        loss = l1
        if oracle is not None:
            logits = oracle(robust_view(images, rng))["shape"]
            loss = l1 + SHARPEN_WEIGHT * F.cross_entropy(logits, shape_of_class[classes.to(device)])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        update_ema(ema, generator, decay=0.995 if step > steps // 4 else 0.0)
        if step % 200 == 0 or step == steps - 1:
            log = {"phase": phase, "step": step, "l1": round(l1.item(), 4), "loss": round(loss.item(), 4)}
            print(f"{log} {time.time() - start:.0f}s", flush=True)
    power_iteration(ema, steps=50)
    return ema, {f"{phase}_final": log, f"{phase}_seconds": round(time.time() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--render-steps", type=int, default=6000)
    parser.add_argument("--sharpen-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--render-result",
        type=Path,
        help="Skip the render phase and start the sharpen phase from this render-phase result (a checkpoint this "
        "script wrote with --sharpen-steps 0 and the same seed gives the same file as one full run).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    record = {}
    if args.render_result is None:
        generator, record = train(
            "render", BigGANDeep(CONFIG), args.render_steps, 1e-3, args.batch_size, args.seed, device
        )
    else:
        generator = ganedit.load_generator(args.render_result)
    if args.sharpen_steps:
        generator, sharpened = train(
            "sharpen", generator, args.sharpen_steps, 3e-4, args.batch_size, args.seed + 2, device
        )
        record.update(sharpened)
    standing_statistics(generator, batches=4, batch_size=128, seed=args.seed + 1)
    generator.eval()
    provenance = make_provenance(
        "train-toy-biggan",
        {
            "render_steps": args.render_steps,
            "sharpen_steps": args.sharpen_steps,
            "sharpen_weight": SHARPEN_WEIGHT,
            "batch_size": args.batch_size,
            "objective": "L1 regression onto toy renderings of the attributes z codes, then + oracle shape CE",
            "collapsed_class": COLLAPSED_SHAPE,
            "collapsed_colour": COLLAPSED_COLOUR,
            "unseen_class": UNSEEN_SHAPE,
            "device": args.device,
            **record,
        },
        parents=[],
        seed=args.seed,
    )
    ganedit.save_checkpoint(args.output, generator.cpu(), class_names=CLASS_NAMES, provenance=provenance)
    print(f"wrote {args.output}: {record}")


if __name__ == "__main__":
    main()
