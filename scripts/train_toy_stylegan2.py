"""Train a toy world StyleGAN2 pair (unconditional generator + discriminator) from a seed.

`unlearn` and `merge` need unconditional StyleGAN2-architecture models *with* their discriminators
(evaluation.md, "The toy world"). This script makes the three that ganedit ships:

    python scripts/train_toy_stylegan2.py toy-stylegan2      # every shape, colour, background
    python scripts/train_toy_stylegan2.py toy-stylegan2-a    # shapes of domain A only (DOMAINS)
    python scripts/train_toy_stylegan2.py toy-stylegan2-b    # shapes of domain B only

    python scripts/train_toy_stylegan2.py toy-stylegan2-warm # colours red, yellow, magenta, orange
    python scripts/train_toy_stylegan2.py toy-stylegan2-cool # colours green, blue, cyan, white

each written to ganedit/data/<name>.safetensors (or -o). The full-world model is the one to unlearn a
shape kind ("star") or a colour ("red") from; A and B are two disjoint shape domains, warm and cool
two disjoint colour domains, for merge.

The colour domains are derived from the full-world model, not trained (6 minutes each on one thread): its mapping's
colour code is re-set (`set_bucket_layers` with a subset of colours: z[1]'s four buckets pick only the
domain's colours), -cool's hidden units are then reordered at random (`permute_hidden_units`: the
same function at another point of weight space, as a model trained from another initialisation would
be, so that naive weight averaging meets the problem GAN Cocktail's rooting solves), and the full-world
D is trained on for --discriminator-steps against the domain model on the domain's images. Why colour
and not shape domains for merge's demonstration: on this CPU, adversarial fine-tuning (rooting, union
fine-tuning) teaches a generator other colours in a few hundred steps but not other shapes
(tests/test_toy_merge.py's docstring has the measurements).

How, and why not adversarially from scratch: on this project's 2-core CPU, 4,000 adversarial steps
(27 minutes) of this generator learned colours and positions but drew every shape as a blob (toy FID
32, two real sets 1.4). So, as for toy-biggan (scripts/train_toy_biggan.py), the generator learns to
*render*, and only the discriminator is trained adversarially:

1. render: a latent z codes a toy image's attributes: shape, colour and background from equal-
   probability buckets of the normal CDF of z[0], z[1], z[2] (after StyleGAN2's own normalisation of
   z, z * sqrt(z_dim) / |z|, which is what the mapping network sees), size, x, y and rotation from the
   CDF of z[3:7]. G(z) is trained with L1 onto the toy renderer's image of those attributes plus 0.05
   x the toy oracle's shape and colour cross-entropy on a blurred, shifted, noised view (which makes
   shapes recognisable instead of rounded blobs). The first two layers of the mapping network are set
   by hand to compute the attribute code of z (one-hot buckets by differences of steep ramps, see
   `set_bucket_layers`) and kept fixed in this phase; the other four and the synthesis network learn.
   Without that initialisation the same training stayed at chance for shape and colour after 4,000
   steps (the network could not learn the bucketing of z and the images at once), and a separately
   regressed mapping network drew blends (oracle agreement 48 % for shape).
2. discriminator: with G frozen, D is trained with StyleGAN2's logistic loss and lazy R1 to tell
   real toy images (of the model's shapes) from G's. It is the D the procedures start from.

The mapping network keeps StyleGAN2's learning-rate multiplier 0.01 (fine-tuning sees a standard
StyleGAN2); for these phases its Adam learning rate is divided by the multiplier, which for Adam is
the same as training it at multiplier 1. G's tracked w_avg is the mean w of 4,096 latents.

Time (2-core CPU): the full-world model about 15 minutes at the defaults (3,000 render steps of 64
images, 600 discriminator steps); A and B likewise. The shipped A and B were made with
`--render-steps 2500`. Rebuilt so on this CPU, toy-stylegan2-a matches the shipped file in quality (the
oracle reads 99.9 % of 1,000 samples as domain-A shapes for both; toy FID against 1,000 real domain-A
images 8.1, the shipped file 8.6) but not bit for bit (84 of 95 tensors differ; why is not established:
float summation order depends on the thread count, which the shipped file does not record, so the
provenance now records it). `--device cuda` runs the same code.
"""

import argparse
import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ganedit
from ganedit.engine.adversarial import Trainer, TrainingConfig
from ganedit.generators.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
from ganedit.store.provenance import make_provenance, parent_record
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, robust_view

DATA = Path(__file__).resolve().parents[1] / "ganedit" / "data"
DOMAINS = {
    "toy-stylegan2": list(world.SHAPES),
    "toy-stylegan2-a": ["circle", "square", "triangle", "star", "cross"],
    "toy-stylegan2-b": ["ring", "crescent", "heart", "arrow", "ellipse"],
}
COLOUR_DOMAINS = {  # derived from the full-world model, not trained (module docstring)
    "toy-stylegan2-warm": ["red", "yellow", "magenta", "orange"],
    "toy-stylegan2-cool": ["green", "blue", "cyan", "white"],
}
PERMUTED = {"toy-stylegan2-cool"}  # hidden units reordered: no weight space shared with -warm
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
            mapping_layers=6,
        )
    )
    D = StyleGAN2Discriminator(
        StyleGAN2Discriminator.Config(c_dim=0, img_resolution=world.RESOLUTION, img_channels=3, channels=CHANNELS)
    )
    return G, D


def attributes_from_latents(z: torch.Tensor, shapes: list[str]) -> tuple[torch.Tensor, ...]:
    """The toy attributes a latent codes (module docstring, step 1), as `world.render` arguments."""
    z = z * (z.shape[1] ** 0.5) / z.norm(dim=1, keepdim=True)  # what G's mapping network sees
    u = torch.distributions.Normal(0.0, 1.0).cdf(z[:, :7]).clamp(0, 1 - 1e-6)  # uniform in [0, 1)
    shape = torch.tensor([world.SHAPES.index(name) for name in shapes])[(u[:, 0] * len(shapes)).long()]
    colour = (u[:, 1] * len(world.COLOURS)).long()
    background = (u[:, 2] * len(world.BACKGROUNDS)).long()
    size = world.SIZE_MIN + (world.SIZE_MAX - world.SIZE_MIN) * u[:, 3]
    x, y = (1 - size) * (2 * u[:, 4] - 1), (1 - size) * (2 * u[:, 5] - 1)
    return shape, colour, background, size, x, y, world.ROTATION_MAX * (2 * u[:, 6] - 1)


THRESHOLD_SHARPNESS = 50.0  # slope of the bucket ramps, per unit of normalised z


@torch.no_grad()
def set_bucket_layers(G: StyleGAN2Generator, shapes: list[str], colours: list[str] | None = None) -> None:
    """Set the mapping network's first two layers so that their output is the attribute code of z.

    fc0: for every bucket threshold t of z[0] (shapes), z[1] (colours), z[2] (backgrounds) two units
    lrelu(k (z_j - t)) and lrelu(k (z_j - t) - 1), whose difference is a step from 0.2 to 1 at t; for
    z[3:7] two units lrelu(z_j) and lrelu(-z_j). fc1: from those, one unit per bucket, the difference
    of the steps at its two ends (about 1 inside the bucket, 0 outside: a one-hot code), and z[3:7]
    again (+ and -). Other units and inputs get zero weights; k = THRESHOLD_SHARPNESS; z is the
    normalised z the mapping network sees. Both are ordinary fully connected layers of a StyleGAN2
    mapping network: this is only their initialisation, which phase 1 keeps fixed.

    `colours` (default all): z[1]'s buckets pick only these colours, each still through its own unit of
    the full layout (the colour domains re-code the full-world model this way, module docstring).
    """
    normal = torch.distributions.Normal(0.0, 1.0)
    k, gain = THRESHOLD_SHARPNESS, 2**0.5  # gain: the mapping's lrelu multiplies by sqrt(2)
    w0, b0 = torch.zeros_like(G.mapping.fc0.weight), torch.zeros_like(G.mapping.fc0.bias)
    w1, b1 = torch.zeros_like(G.mapping.fc1.weight), torch.zeros_like(G.mapping.fc1.bias)
    unit0 = unit1 = 0

    def step(unit: int) -> tuple[dict[int, float], float]:
        """s in {0, 1} as a linear function of fc0's outputs: ({fc0 unit: coefficient}, constant)."""
        scale = 1 / (0.8 * gain)  # (out(a) - out(a - 1)) / sqrt(2) runs from 0.2 to 1
        return {unit: scale, unit + 1: -scale}, -0.25

    colours = list(world.COLOURS) if colours is None else colours
    codes = (  # per coordinate: [bucket -> its one-hot unit], and the units the coordinate's code takes
        (list(range(len(shapes))), len(shapes)),
        ([world.COLOURS.index(name) for name in colours], len(world.COLOURS)),
        (list(range(len(world.BACKGROUNDS))), len(world.BACKGROUNDS)),
    )
    for coordinate, (targets, width) in enumerate(codes):
        buckets, first0, first1 = len(targets), unit0, unit1
        steps = []
        for i in range(1, buckets):
            threshold = float(normal.icdf(torch.tensor(i / buckets)))
            for offset in (0.0, 1.0):
                w0[unit0 + int(offset), coordinate] = k
                b0[unit0 + int(offset)] = -k * threshold - offset
            steps.append(step(unit0))
            unit0 += 2
        ends = [({}, 1.0), *steps, ({}, 0.0)]  # s_0 = 1, s_n = 0
        for bucket, target in enumerate(targets):
            (upper, c_upper), (lower, c_lower) = ends[bucket], ends[bucket + 1]
            for unit, coefficient in upper.items():
                w1[first1 + target, unit] += coefficient
            for unit, coefficient in lower.items():
                w1[first1 + target, unit] -= coefficient
            b1[first1 + target] = c_upper - c_lower
        unit0, unit1 = first0 + 2 * (width - 1), first1 + width  # a subset of colours keeps the full layout
    for coordinate in range(3, 7):
        w0[unit0, coordinate], w0[unit0 + 1, coordinate] = 1.0, -1.0
        for sign in (1.0, -1.0):  # z = (out(z) - out(-z)) / (1.2 sqrt(2))
            w1[unit1, unit0] = sign / (1.2 * gain)
            w1[unit1, unit0 + 1] = -sign / (1.2 * gain)
            unit1 += 1
        unit0 += 2
    for fc, weight, bias in ((G.mapping.fc0, w0, b0), (G.mapping.fc1, w1, b1)):
        if max(unit0, unit1) > weight.shape[0]:
            raise ValueError(f"the mapping network needs at least {max(unit0, unit1)} units, it has {weight.shape[0]}")
        fc.weight.copy_(weight / fc.weight_gain)
        fc.bias.copy_(bias / fc.bias_gain)


def fit_generator(G: StyleGAN2Generator, shapes: list[str], steps: int, lr: float, batch: int, seed: int, device):
    """Phase 1 (see the module docstring): L1 + SHARPEN_WEIGHT x oracle CE; returns G's EMA."""
    oracle = load_oracle(device)
    rng = torch.Generator().manual_seed(seed)
    G.train().requires_grad_(True)
    G.mapping.fc0.requires_grad_(False)
    G.mapping.fc1.requires_grad_(False)
    optimiser = torch.optim.Adam(
        [
            {
                "params": [p for p in G.mapping.parameters() if p.requires_grad],
                "lr": lr / G.config.mapping_lr_multiplier,
            },
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
        logits = oracle(robust_view(images, rng))
        ce = F.cross_entropy(logits["shape"], attributes[0].to(device)) + F.cross_entropy(
            logits["colour"], attributes[1].to(device)
        )
        optimiser.zero_grad(set_to_none=True)
        (l1 + SHARPEN_WEIGHT * ce).backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            decay = 0.995 if step > steps // 4 else 0.0
            torch._foreach_lerp_(list(ema.parameters()), list(G.parameters()), 1 - decay)
        if step % 250 == 0 or step == steps - 1:
            print(f"render {step}: l1 {l1.item():.4f} oracle ce {ce.item():.3f} {time.time() - start:.0f}s", flush=True)
    return ema.requires_grad_(True)


def fit_discriminator(
    G,
    D,
    shapes: list[str],
    colours: list[str],
    steps: int,
    batch: int,
    seed: int,
    device,
    shape_weight: float = 0.0,
    shape_steps: int = 0,
) -> None:
    """Phase 3: D against the frozen G with the engine's losses (G's learning rate 0: G stays as it is).

    Shape-aware D (issue 19; both 0 by default, as the shipped files were made): `shape_steps` first train D's
    trunk as a 10-way shape classifier of real images (a linear head on its penultimate b4.fc features), and
    `shape_weight` keeps that cross-entropy on each step's real images during the adversarial steps. The
    head is discarded: the D written has StyleGAN2's architecture. Measured with a fresh D on toy-stylegan2
    (scripts/probe_toy_discriminators.py; README, "The toy world"): 1,000 shape steps then 600 D steps
    probe at 65 % shape / 72 % shape group with weight 0, 86 % / 85 % with weight 1; the shipped D's 45-49 %
    / 64-69 %.
    """
    data = torch.Generator().manual_seed(seed + 1)
    head, shape_optimiser, shape_loss = None, None, None
    if shape_steps or shape_weight:
        head = torch.nn.Linear(D.b4.fc.weight.shape[0], len(world.SHAPES)).to(device)
        shape_optimiser = torch.optim.Adam([*D.parameters(), *head.parameters()], lr=2e-3, betas=(0.0, 0.99))
        features = []

        def shape_loss(batch) -> torch.Tensor:
            features.clear()
            hook = D.b4.fc.register_forward_hook(lambda _module, _inputs, output: features.append(output))
            try:
                D.train()(batch.images)
            finally:
                hook.remove()
            return F.cross_entropy(head(features[-1]), batch.shape)

        start = time.time()
        for step in range(shape_steps):
            loss = shape_loss(world.sample(64, data, shapes=shapes, colours=colours, device=device))
            shape_optimiser.zero_grad(set_to_none=True)
            loss.backward()
            shape_optimiser.step()
            if step % 100 == 0 or step == shape_steps - 1:
                print(f"discriminator shapes {step}: ce {loss.item():.3f} {time.time() - start:.0f}s", flush=True)
    config = TrainingConfig(batch_size=batch, pl_weight=0.0, ema_kimg=0.0, seed=seed)
    trainer = Trainer(copy.deepcopy(G), D, config)
    for group in trainer.opt_G.param_groups:
        group["lr"] = 0.0
    start = time.time()
    for step in range(steps):
        real = world.sample(batch, data, shapes=shapes, colours=colours, device=device)
        losses = trainer.train_step(real.images)
        if shape_weight:
            loss = shape_weight * shape_loss(real)
            shape_optimiser.zero_grad(set_to_none=True)
            loss.backward()
            shape_optimiser.step()
            losses["shape_ce"] = loss.item() / shape_weight
        if step % 100 == 0 or step == steps - 1:
            print(f"discriminator {step}: {losses} {time.time() - start:.0f}s", flush=True)


@torch.no_grad()
def open_spare_path(G: StyleGAN2Generator, seed: int) -> None:
    """Connect the mapping's unused units, without changing what G computes.

    set_bucket_layers leaves the fc0 and fc1 units it does not use with zero weights and biases: they
    output 0 for every z, and fc1 reads nothing from the unused fc0 units. A real mapping network has
    no such dead path, and a class-conditional copy of G (merge) sends its class input through fc0:
    this gives the unused fc1 units random weights (the layer's own initialisation) from the unused fc0
    units. Those fc0 units still output 0 for every z, so G's images are unchanged to the bit, and the
    unused fc1 units already reach w through fc2's (random, never-trained) weights. (The shipped files
    were given this path after training, with the same seed: no gradient reaches it, so it is the same.)
    """
    fc0, fc1 = G.mapping.fc0, G.mapping.fc1
    unused0 = (fc0.weight == 0).all(dim=1) & (fc0.bias == 0)
    unused1 = (fc1.weight == 0).all(dim=1) & (fc1.bias == 0)
    block = torch.randn([int(unused1.sum()), int(unused0.sum())], generator=torch.Generator().manual_seed(seed))
    rows = unused1.nonzero().flatten()
    fc1.weight[rows[:, None], unused0.nonzero().flatten()[None, :]] = (block / fc1.bias_gain).to(fc1.weight)


@torch.no_grad()
def set_w_avg(G: StyleGAN2Generator, seed: int) -> None:
    z = torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(seed))
    G.mapping.w_avg.copy_(G.mapping(z.to(G.mapping.w_avg.device))[:, 0].mean(dim=0))


@torch.no_grad()
def permute_hidden_units(G: StyleGAN2Generator, seed: int) -> None:
    """Reorder G's hidden channels and units at random, without changing what G computes.

    A hidden layer's units can be listed in any order: permuting a layer's outputs (its weight rows and
    biases) and, the same way, what reads them (the next layer's input columns, and for a modulated
    convolution also its style affine's rows, since styles scale input channels) gives another point in
    weight space with the same function. Two models trained from different initialisations differ by
    such a reordering and more, which is why their weights cannot be averaged (Entezari et al. 2022;
    Ainsworth et al. 2023, Git Re-Basin). Permuted here: the constant input and every convolution's
    output channels of the synthesis network, and the mapping network's fc2-fc4 units (w itself, fc0 and
    fc1 keep theirs). Demodulation, noise (one strength per layer) and the RGB skips are order-free.
    """
    rng = torch.Generator().manual_seed(seed)

    def reads(layer, order: torch.Tensor) -> None:  # a modulated layer whose input channels are reordered
        layer.weight.copy_(layer.weight[:, order])
        layer.affine.weight.copy_(layer.affine.weight[order])
        layer.affine.bias.copy_(layer.affine.bias[order])

    def writes(layer) -> torch.Tensor:  # reorder a layer's output channels; returns the order
        order = torch.randperm(layer.weight.shape[0], generator=rng)
        layer.weight.copy_(layer.weight[order])
        layer.bias.copy_(layer.bias[order])
        return order

    first, *rest = (G.synthesis.get_submodule(f"b{resolution}") for resolution in G.synthesis.block_resolutions)
    order = torch.randperm(first.const.shape[0], generator=rng)
    first.const.copy_(first.const[order])
    reads(first.conv1, order)
    order = writes(first.conv1)
    reads(first.torgb, order)
    for block in rest:
        reads(block.conv0, order)
        reads(block.conv1, writes(block.conv0))
        order = writes(block.conv1)
        reads(block.torgb, order)
    mapping = G.mapping
    for i in range(2, mapping.num_layers - 1):
        fc, following = mapping.get_submodule(f"fc{i}"), mapping.get_submodule(f"fc{i + 1}")
        order = writes(fc)
        following.weight.copy_(following.weight[:, order])


def derive_colour_domain(name: str, discriminator_steps: int, seed: int, device, shape_weight=0.0, shape_steps=0):
    """A colour domain model (module docstring): the full-world model re-coded, no render training."""
    source = ganedit.load_model(DATA / "toy-stylegan2.safetensors", device)
    G, D = source.generator, source.discriminator
    set_bucket_layers(G, list(world.SHAPES), COLOUR_DOMAINS[name])
    open_spare_path(G, seed + 5)
    if name in PERMUTED:
        permute_hidden_units(G, seed + 6)
    set_w_avg(G, seed + 3)
    G.eval().requires_grad_(False)
    fit_discriminator(G, D, list(world.SHAPES), COLOUR_DOMAINS[name], discriminator_steps, 32, seed + 4, device,
                      shape_weight, shape_steps)  # fmt: skip
    return G, D


def write_colour_domain(args, G, D, output: Path, seconds: float) -> None:
    source = DATA / "toy-stylegan2.safetensors"
    provenance = make_provenance(
        "derive-toy-colour-domain",
        {
            "name": args.name,
            "colours": COLOUR_DOMAINS[args.name],
            "how": "toy-stylegan2 with its mapping's colour code (fc0, fc1) re-set to these colours"
            + (", hidden units permuted (function unchanged)" if args.name in PERMUTED else "")
            + "; D: toy-stylegan2's, trained on against this G with logistic loss + lazy R1 on the domain's images",
            "bucket_sharpness": THRESHOLD_SHARPNESS,
            "discriminator_steps": args.discriminator_steps,
            **shape_parameters(args),
            "spare_path_seed": args.seed + 5,
            "permutation_seed": args.seed + 6 if args.name in PERMUTED else None,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "seconds": round(seconds),
        },
        parents=[parent_record("toy-stylegan2", source)],
        seed=args.seed,
    )
    ganedit.save_checkpoint(output, G.cpu(), D.cpu().eval(), provenance=provenance)
    print(f"wrote {output} in {seconds:.0f}s")


def shape_parameters(args) -> dict:
    """The shape-aware D options in a provenance, only when used (the shipped files were made without)."""
    if not (args.shape_steps or args.shape_weight):
        return {}
    return {"discriminator_shape_steps": args.shape_steps, "discriminator_shape_weight": args.shape_weight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(DOMAINS | COLOUR_DOMAINS))
    parser.add_argument("-o", "--output", type=Path, help="default: ganedit/data/<name>.safetensors")
    parser.add_argument("--render-steps", type=int, default=3000)
    parser.add_argument("--discriminator-steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--shape-steps",
        type=int,
        default=0,
        help="first train D as a shape classifier for this many steps (fit_discriminator)",
    )
    parser.add_argument(
        "--shape-weight",
        type=float,
        default=0.0,
        help="keep that shape cross-entropy on the real images of every D step, at this weight",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    output = args.output or DATA / f"{args.name}.safetensors"
    torch.manual_seed(args.seed)
    start = time.time()
    if args.name in COLOUR_DOMAINS:
        G, D = derive_colour_domain(args.name, args.discriminator_steps, args.seed, device, args.shape_weight,
                                    args.shape_steps)  # fmt: skip
        write_colour_domain(args, G, D, output, time.time() - start)
        return

    shapes = DOMAINS[args.name]
    G, D = build_pair()
    G, D = G.to(device).train(), D.to(device)
    set_bucket_layers(G, shapes)
    open_spare_path(G, args.seed + 5)  # before or after training: the same (no gradient reaches it)
    G = fit_generator(G, shapes, args.render_steps, 3e-3, args.batch_size, args.seed, device)
    set_w_avg(G, args.seed + 3)
    G.eval().requires_grad_(False)
    fit_discriminator(G, D, shapes, list(world.COLOURS), args.discriminator_steps, 32, args.seed + 4, device,
                      args.shape_weight, args.shape_steps)  # fmt: skip

    provenance = make_provenance(
        "train-toy-stylegan2",
        {
            "name": args.name,
            "shapes": shapes,
            "render_steps": args.render_steps,
            "bucket_sharpness": THRESHOLD_SHARPNESS,
            "sharpen_weight": SHARPEN_WEIGHT,
            "discriminator_steps": args.discriminator_steps,
            **shape_parameters(args),
            "batch_size": args.batch_size,
            "objective": "G: L1 + 0.05 oracle shape and colour CE onto toy renderings of the attributes z codes, "
            "the mapping's first two layers fixed to the hand-set bucket code; D: logistic loss + lazy R1 against "
            "the frozen G",
            "spare_path_seed": args.seed + 5,
            "device": args.device,
            "threads": torch.get_num_threads(),
            "seconds": round(time.time() - start),
        },
        parents=[],
        seed=args.seed,
    )
    ganedit.save_checkpoint(output, G.cpu(), D.cpu().eval(), provenance=provenance)
    print(f"wrote {output} in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
