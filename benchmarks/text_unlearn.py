"""Benchmark: one Text-to-Unlearn iteration at the real configuration's size.

Prints one JSON object (design/performance.md, "How to measure"). A StyleGAN2 at 256 px (rosinality
channels, z = w = 512, 8 mapping layers; random weights) and CLIP ViT-B/32 at its real architecture
(224 px, open_clip, random weights: speed does not depend on the values, and nothing is downloaded).
One iteration is ganedit's `text_unlearn` step: sample latents through the frozen mapping, G_f and G_t
forward, CLIP on both image batches (resize 256 -> 224 on tensors), the directional loss, optionally
LPIPS-style terms left out (the reference has none to compare with: the paper publishes no code),
backward into G_t's synthesis layers (mapping and toRGB frozen), Adam step.

Reported per batch size (NADA uses 2 to 8): median seconds per iteration over `--iterations` timed
iterations after `--warmup`, images (x_t) per second, peak memory; plus `--auto-layers` when given
(NADA's adaptive layer selection adds a W+ optimisation per iteration).

    python benchmarks/text_unlearn.py                       # CUDA: batches 2, 4, 8 at 256 px, ViT-B/32
    python benchmarks/text_unlearn.py --auto-layers 8       # with adaptive layer selection
    python benchmarks/text_unlearn.py --device cpu --tiny   # smoke test: 32 px model, batch 2
"""

import argparse
import json
import statistics
import time

import torch
from adversarial_step import build_pair
from common import device_description, peak_memory_gib, reset_peak_memory, synchronize

from ganedit.judges.clip import load_clip
from ganedit.procedures.text_unlearn import TextUnlearnSettings, text_unlearn


def time_batch(G, clip, batch: int, args, device: torch.device) -> dict:
    def run(iterations: int) -> float:
        settings = TextUnlearnSettings(
            concept="a person wearing eyeglasses", neutral="a person", steps=iterations, batch_size=batch,
            auto_layers=args.auto_layers,
        )  # fmt: skip
        synchronize(device)
        start = time.perf_counter()
        text_unlearn(G, [clip], settings)
        synchronize(device)
        return time.perf_counter() - start

    run(args.warmup)  # warm-up: kernels, allocator, cuDNN autotuning
    reset_peak_memory(device)
    # Each repetition is a whole run of `iterations` steps minus a run of one step (the set-up: copies of G).
    totals = [run(args.iterations) - run(1) for _ in range(args.repeats)]
    seconds = statistics.median(totals) / (args.iterations - 1)
    return {
        "batch_size": batch,
        "seconds_per_iteration": round(seconds, 5),
        "images_per_second": round(batch / seconds, 2),
        "peak_memory_gib": peak_memory_gib(device),
        "repeats": args.repeats,
        "iterations_timed": args.iterations - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--iterations", type=int, default=21, help="timed iterations per repetition (+1)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--auto-layers", type=int, default=0, help="k of adaptive layer selection (0 = off)")
    parser.add_argument("--clip", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--tiny", action="store_true", help="32 px generator, batch 2, few iterations")
    args = parser.parse_args()
    if args.tiny:
        args.resolution, args.batch_sizes, args.iterations, args.warmup, args.repeats = 32, [2], 3, 1, 1
    device = torch.device(args.device)
    G, _ = build_pair(args.resolution, args.tiny, device)
    G.requires_grad_(False)
    clip = load_clip(args.clip, device, random_weights_for_benchmarks=True)
    name, _ = device_description(device)
    result = {
        "benchmark": "text_unlearn",
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "generator": f"StyleGAN2 {args.resolution} px, random weights" + (" (tiny)" if args.tiny else ""),
        "clip": clip.name,
        "auto_layers": args.auto_layers,
        "results": [time_batch(G, clip, batch, args, device) for batch in args.batch_sizes],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
