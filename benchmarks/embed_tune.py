"""Benchmark: embed-tune's AM step, the reference's way against ganedit's, in one process on one device.

Prints one JSON object (design/performance.md, "How to measure"). The work is one class at the
reference's settings: 3 starts x 200 steps (10 rounds x 20 steps) x 10 images, on BigGAN-deep-256 with
a ResNet-50 judge. Weights are random (speed does not depend on their values): the generator is built
from the published config, the judge through the test-only `random_weights_for_tests` path.

- reference way: the qilimk/biggan-am inner loop re-implemented on ganedit's modules (see
  `reference_step_seconds` for which reference behaviour each choice mirrors);
- ganedit way: `embed_tune` / `optimise` with all starts of a class in one batch, frozen weights, bf16
  autocast and `torch.compile`; the first class (compilation included), the steady state, and a
  many-class run (50 classes) are timed.

    python benchmarks/embed_tune.py                      # CUDA, full size (several minutes)
    python benchmarks/embed_tune.py --steps 20           # 20 steps per start, per-class figures extrapolated
    python benchmarks/embed_tune.py --device cpu --tiny  # smoke test of the same code on a tiny model
"""

import argparse
import json
import statistics
import sys
import time

import torch
from common import device_description, peak_memory_gib, reset_peak_memory, synchronize
from torch.utils.flop_counter import FlopCounterMode

from ganedit.generators.biggan_deep import BigGANDeep
from ganedit.generators.formats.biggan import PUBLISHED_CONFIGS
from ganedit.judges.classifiers import Preprocess, torchvision_judge
from ganedit.procedures import embed_tune as et

REFERENCE_STARTS = 3  # reference: 3 starts per class
REFERENCE_BATCH = 10  # reference: 10 latents per step
REFERENCE_STEPS = 200  # reference: n_iters 10 rounds x 20 steps on the same z batch
STEPS_PER_ROUND = 20
LR, WEIGHT_DECAY = 0.1, 0.9  # reference: Adam lr 0.1, its "decay rate" 0.9 as Adam weight decay
TINY_CONFIG = dict(
    output_dim=32,
    z_dim=16,
    class_embed_dim=16,
    channel_width=4,
    num_classes=1000,
    layers=[[False, 4, 4], [True, 4, 2], [True, 2, 1], [True, 1, 1]],
    attention_layer_position=2,
    eps=1e-4,
    n_stats=51,
)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (smoke test)")
    parser.add_argument("--tiny", action="store_true", help="a tiny BigGAN-deep and a ResNet-18 judge on 32 px images")
    parser.add_argument(
        "--steps",
        type=int,
        help=f"steps per start actually run (default {REFERENCE_STEPS}; tiny 4); figures per "
        f"class are extrapolated to {REFERENCE_STEPS}",
    )
    parser.add_argument("--reference-steps", type=int, help="steps timed on the reference side (default: --steps)")
    parser.add_argument("--classes", type=int, help="classes of the many-class run (default 50; tiny 3)")
    parser.add_argument("--starts-per-batch", type=int, default=REFERENCE_STARTS, help="of the many-class run")
    parser.add_argument("--repeats", type=int, help="timed repetitions of the steady-state class (default 3; tiny 2)")
    parser.add_argument("--precision", default="bf16", choices=et.PRECISIONS)
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, help="default: on for cuda, off for cpu (minutes there)"
    )
    parser.add_argument("--diversity", default="softmax", choices=et.DIVERSITY_SPACES, help="the same on both sides")
    args = parser.parse_args()
    tiny = args.tiny
    args.steps = args.steps or (4 if tiny else REFERENCE_STEPS)
    args.reference_steps = args.reference_steps or args.steps
    args.classes = args.classes or (3 if tiny else 50)
    args.repeats = args.repeats or (2 if tiny else 3)
    args.compile = args.device.startswith("cuda") if args.compile is None else args.compile
    if args.steps > STEPS_PER_ROUND and args.steps % STEPS_PER_ROUND:
        parser.error(f"--steps above {STEPS_PER_ROUND} must be a multiple of {STEPS_PER_ROUND}, got {args.steps}")
    return args


def build_models(tiny: bool, device: torch.device) -> tuple[BigGANDeep, torch.nn.Module, str]:
    """Random BigGAN-deep-256 and ResNet-50 (tiny: a 32 px BigGAN-deep and a ResNet-18 fed 32 px images)."""
    torch.manual_seed(0)
    config = BigGANDeep.Config(**(TINY_CONFIG if tiny else PUBLISHED_CONFIGS["biggan-deep-256"]))
    # Construction draws the weights and sets each layer's spectral-norm u, v by one power-iteration step.
    generator = BigGANDeep(config).eval()
    with torch.no_grad():  # a spread-out embedding table, as a trained model has (it sets the clamp box)
        generator.embeddings.weight.normal_(0, 0.3)
    judge = torchvision_judge("resnet18" if tiny else "resnet50", random_weights_for_tests=True)
    if tiny:
        judge.preprocess = Preprocess(None, config.output_dim)  # no resize to 224: keeps the CPU run small
    return generator.to(device), judge.to(device), judge.name


def rounds_and_steps(steps_per_start: int) -> tuple[int, int]:
    """(rounds, steps per round) for `steps_per_start` steps, with the reference's 20 steps per round."""
    if steps_per_start <= STEPS_PER_ROUND:
        return 1, steps_per_start
    return steps_per_start // STEPS_PER_ROUND, STEPS_PER_ROUND


def initial_embeddings(generator: BigGANDeep, classes: int) -> torch.Tensor:
    """The `mean` initialisation for `classes` classes x 3 starts: [classes * 3, z_dim]."""
    targets = list(range(classes))
    init = et.initial_embeddings(generator, None, targets, targets, "mean", REFERENCE_STARTS, 1.0, seed=0)
    return init.flatten(0, 1)


def reference_step_seconds(generator, judge, args, device) -> tuple[list[float], int]:
    """Per-step wall times of the reference's loop for one class, and the FLOPs of one of its steps.

    Mirrors github.com/qilimk/biggan-am: one start after another, each its own Adam over one embedding;
    a fresh batch of 10 latents every 20 steps; fp32; G and the classifier keep `requires_grad`, so every
    backward also computes weight gradients nobody uses; `torch.cuda.empty_cache()` after every step.
    """
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    init = initial_embeddings(generator, 1).to(device)
    labels = torch.zeros(REFERENCE_BATCH, dtype=torch.long, device=device)
    pairs = et.pair_indices(1, 1, REFERENCE_BATCH, 0)[0, 0].to(device)
    generator.requires_grad_(True)  # reference: parameters left trainable, weight gradients computed
    judge.requires_grad_(True)
    times = []

    def step(embedding, optimiser, z):
        loss = et.am_loss(generator, judge, embedding, z, labels, lo, hi, 1.0, args.diversity, 0.1, pairs, "fp32")
        optimiser.zero_grad()
        loss.sum().backward()  # reference: backward through G and C with their weights requiring grad
        generator.zero_grad()  # the weight gradients are thrown away
        judge.zero_grad()
        optimiser.step()
        if device.type == "cuda":
            torch.cuda.empty_cache()  # reference: cache flushed every step

    for start in range(REFERENCE_STARTS):  # reference: starts one after another, batch 10 each
        embedding = init[start : start + 1].clone().requires_grad_(True)  # [1, D]
        optimiser = torch.optim.Adam([embedding], lr=LR, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY)
        for index in range(args.reference_steps):
            if index % STEPS_PER_ROUND == 0:  # reference: new z batch each outer round
                z = et.round_latents(generator, 1, 1, REFERENCE_BATCH, start * 1000 + index, 1.0)[0].to(device)
            synchronize(device)
            began = time.perf_counter()
            step(embedding, optimiser, z)
            synchronize(device)
            times.append(time.perf_counter() - began)
    with FlopCounterMode(display=False) as counter:
        step(embedding, optimiser, z)
    generator.requires_grad_(False)
    judge.requires_grad_(False)
    return times, counter.get_total_flops()


def ganedit_class_seconds(generator, judge, args, device, classes=1, starts_per_batch=None) -> float:
    """Wall time of `optimise` on `classes` classes x 3 starts, all starts of a class in one batch."""
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    init = initial_embeddings(generator, classes)
    targets = torch.arange(classes).repeat_interleave(REFERENCE_STARTS)
    rounds, steps = rounds_and_steps(args.steps)
    synchronize(device)
    began = time.perf_counter()
    with et.frozen(generator), et.frozen(judge):
        et.optimise(
            generator,
            judge,
            init,
            targets,
            lo,
            hi,
            rounds=rounds,
            steps=steps,
            batch_size=REFERENCE_BATCH,
            lr=LR,
            weight_decay=WEIGHT_DECAY,
            diversity=args.diversity,
            diversity_weight=0.1,
            truncation=1.0,
            seed=0,
            precision=args.precision,
            compile=args.compile,
            starts_per_batch=starts_per_batch,
        )
    synchronize(device)
    return time.perf_counter() - began


def embed_tune_seconds(generator, judge, args, device, targets, starts_per_batch=None) -> float:
    """Wall time of the whole procedure (initialisation, optimisation, held-out evaluation, edited copy)."""
    rounds, steps = rounds_and_steps(args.steps)
    synchronize(device)
    began = time.perf_counter()
    settings = et.EmbedTuneSettings(
        starts=REFERENCE_STARTS,
        rounds=rounds,
        steps=steps,
        batch_size=REFERENCE_BATCH,
        diversity=args.diversity,
        precision=args.precision,
        compile=args.compile,
        starts_per_batch=starts_per_batch,
    )
    et.embed_tune(generator, judge, targets, settings)
    synchronize(device)
    return time.perf_counter() - began


def ganedit_step_flops(generator, judge, args, device) -> int:
    """FLOPs of one ganedit step (3 starts x 10 images, no weight gradients), counted in eager mode."""
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    embeddings = initial_embeddings(generator, 1).to(device).requires_grad_(True)
    z = et.round_latents(generator, 1, REFERENCE_STARTS, REFERENCE_BATCH, 0, 1.0)[0].to(device)
    labels = torch.zeros(REFERENCE_STARTS * REFERENCE_BATCH, dtype=torch.long, device=device)
    pairs = et.pair_indices(1, 1, REFERENCE_BATCH, 0)[0, 0].to(device)
    with et.frozen(generator), et.frozen(judge), FlopCounterMode(display=False) as counter:
        loss = et.am_loss(generator, judge, embeddings, z, labels, lo, hi, 1.0, args.diversity, 0.1, pairs, "fp32")
        loss.sum().backward()
    return counter.get_total_flops()


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def tflops(flops: int, seconds: float) -> float:
    return flops / seconds / 1e12


def main() -> None:
    args = parse_arguments()
    device = torch.device(args.device)
    generator, judge, judge_name = build_models(args.tiny, device)
    images_per_step = REFERENCE_STARTS * REFERENCE_BATCH
    per_class_scale = REFERENCE_STEPS / args.steps

    reset_peak_memory(device)
    reference_times, reference_flops = reference_step_seconds(generator, judge, args, device)
    reference_memory = peak_memory_gib(device)
    reference_step = statistics.median(reference_times[1:] if len(reference_times) > 1 else reference_times)
    reference_class = reference_step * REFERENCE_STARTS * REFERENCE_STEPS

    reset_peak_memory(device)
    graphs_before = compiled_graphs()
    first_class_wall = embed_tune_seconds(generator, judge, args, device, [0])
    steady = [ganedit_class_seconds(generator, judge, args, device) for _ in range(args.repeats)]
    warm_class_wall = embed_tune_seconds(generator, judge, args, device, [1])
    ganedit_memory = peak_memory_gib(device)
    graphs_after_first_class = compiled_graphs() - graphs_before
    ganedit_step = statistics.median(steady) / args.steps
    ganedit_class = ganedit_step * REFERENCE_STEPS

    many_class_wall = embed_tune_seconds(
        generator, judge, args, device, list(range(2, 2 + args.classes)), args.starts_per_batch
    )
    graphs_after_many = compiled_graphs() - graphs_before
    ganedit_flops = ganedit_step_flops(generator, judge, args, device)
    name, peak = device_description(device)

    report = {
        "benchmark": "embed-tune",
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "weights": "random (speed does not depend on weight values); judge built with "
        "torchvision_judge(random_weights_for_tests=True), a test-only path",
        "settings": {
            "generator": "tiny BigGAN-deep (32 px)" if args.tiny else "biggan-deep-256 (PUBLISHED_CONFIGS)",
            "judge": judge_name + (" fed 32 px images" if args.tiny else ""),
            "starts_per_class": REFERENCE_STARTS,
            "images_per_start_step": REFERENCE_BATCH,
            "reference_steps_per_start": REFERENCE_STEPS,
            "steps_per_start_run": args.steps,
            "reference_side_steps_per_start_run": args.reference_steps,
            "per_class_figures": "median seconds per step x steps of one class at the reference's settings"
            + ("" if args.steps == REFERENCE_STEPS else f"; steps scaled down, extrapolated x{per_class_scale:g}"),
            "diversity": f"{args.diversity}, alpha 0.1 (both sides)",
            "precision": args.precision,
            "compile": args.compile,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "timing": "torch.cuda.synchronize() around every timed region; medians"
            if device.type == "cuda"
            else "wall clock; medians",
        },
        "reference_way": {
            "how": "starts one after another, batch 10, fp32, weight gradients computed and zeroed, "
            "cache flushed every step",
            "seconds_per_step": reference_step,
            "steps_timed": len(reference_times),
            "seconds_per_class": reference_class,
            "images_per_second": REFERENCE_BATCH / reference_step,
            "peak_memory_gib": reference_memory,
            "flop_per_step": reference_flops,
            "tflops_achieved": tflops(reference_flops, reference_step),
        },
        "ganedit_way": {
            "how": f"embed_tune/optimise: 3 starts in one batch of {images_per_step}, frozen weights, "
            f"{args.precision}, compile {'on' if args.compile else 'off'}",
            "first_class_wall_seconds": first_class_wall,
            "warm_class_wall_seconds": warm_class_wall,
            "warmup_seconds": first_class_wall - warm_class_wall,
            "wall_seconds_note": f"whole embed_tune call for one class at {args.steps} steps per start: "
            "initialisation, optimisation, held-out evaluation; the first one includes compilation",
            "seconds_per_step": ganedit_step,
            "class_repeats_timed": args.repeats,
            "seconds_per_class": ganedit_class,
            "images_per_second": images_per_step / ganedit_step,
            "peak_memory_gib": ganedit_memory,
            "flop_per_step": ganedit_flops,
            "tflops_achieved": tflops(ganedit_flops, ganedit_step),
            "compiled_graphs": graphs_after_first_class,
        },
        "many_class_run": {
            "classes": args.classes,
            "starts_per_batch": args.starts_per_batch,
            "steps_per_start_run": args.steps,
            "wall_seconds": many_class_wall,
            "seconds_per_class": many_class_wall / args.classes,
            "versus_classes_x_first_class_wall": many_class_wall / (args.classes * first_class_wall),
            "compiled_graphs_added": graphs_after_many - graphs_after_first_class,
            "note": "whole embed_tune call (evaluation included), after the single-class runs",
        },
        "speedup_per_class": reference_class / ganedit_class,
        "target": "speedup_per_class >= 10 on BigGAN-deep-256 (design/performance.md)",
        "flop_source": "torch.utils.flop_counter.FlopCounterMode on one eager step (matmuls and convolutions); "
        "design/performance.md gives ~5.2 TFLOP per 30-image ganedit step at 256 px",
        "device_peak_tflops_bf16_dense": peak,
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
