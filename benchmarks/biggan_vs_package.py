"""Benchmark: ganedit's BigGAN-deep against the pytorch-pretrained-biggan package, same weights, one process.

Prints one JSON object (design/performance.md, "How to measure"). For each resolution, the package's
`BigGAN` is built from the published config.json, given a seeded random initialisation (speed does not
depend on the weights' values), saved as a pytorch-pretrained-biggan folder (config.json +
pytorch_model.bin) and loaded from there with `ganedit.load_model`. The script checks that both produce
the same images (and the same embedding gradient) for the same z, class vector and truncation, then
times, interleaved (ganedit, package, ganedit, package, ...; warm-up first; medians):

- `sample`: a forward pass with no grad, `G(z * t, onehot, t)`;
- `embed_tune`: forward + backward to the class embedding: the embedding [B, z_dim] is the leaf that
  requires grad, the generator is frozen, the loss is `images.mean()` (ganedit `G.from_embedding`,
  package `G.generator(cat(z, embedding), t)`: the same computation on both sides).

`ratio` is ganedit / package seconds per step (below 1: ganedit faster). The package is not a ganedit
dependency: `pip install pytorch-pretrained-biggan` to run this.

    python benchmarks/biggan_vs_package.py                                   # CUDA if present, else CPU
    python benchmarks/biggan_vs_package.py --device cpu --threads 2          # 128 and 256 px, batches 1, 4
    python benchmarks/biggan_vs_package.py --resolutions 128 --batch-sizes 1 --repeats 1  # smoke test
"""

import argparse
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from common import device_description, peak_memory_gib, reset_peak_memory, time_interleaved

import ganedit
from ganedit.generators.formats.biggan import PUBLISHED_CONFIGS

try:
    import pytorch_pretrained_biggan
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
except ImportError:
    pytorch_pretrained_biggan = None

PHASES = ("sample", "embed_tune")
TOLERANCE = 1e-3  # max abs difference of images in [-1, 1] allowed between the two implementations
DEFAULTS = {  # per device type: batch sizes a user would run there, timed repetitions
    "cpu": {"batch_sizes": [1, 4], "repeats": 3},
    "cuda": {"batch_sizes": [8, 32], "repeats": 10},
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256], choices=[128, 256, 512])
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: cpu 1 4, cuda 8 32")
    parser.add_argument("--repeats", type=int, help="timed repetitions per side (default: cpu 3, cuda 10)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    defaults = DEFAULTS["cuda" if args.device.startswith("cuda") else "cpu"]
    args.batch_sizes = args.batch_sizes or defaults["batch_sizes"]
    args.repeats = args.repeats or defaults["repeats"]
    if min(args.batch_sizes) < 1 or args.repeats < 1:
        parser.error("--batch-sizes and --repeats must be positive")
    return args


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """A seeded random initialisation of the package's model whose outputs are finite and not trivial.

    Weights N(0, 0.02), small random biases; each spectral-norm u, v from 20 power iterations, so sigma
    is the weight's top singular value (as in trained weights); batch-norm statistics around 0 and 1;
    attention gamma non-zero so that the attention path counts in the comparison.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal(tensor: torch.Tensor, mean: float, std: float) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std + mean)

    for name, tensor in model.state_dict(keep_vars=True).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight_orig":
            normal(tensor, 0.0, 0.02)
        elif leaf == "bias" and not name.endswith("generator.bn.bias"):
            normal(tensor, 0.0, 0.02)
        elif name == "embeddings.weight":
            normal(tensor, 0.0, 0.3)
        elif name.endswith("generator.bn.weight"):
            normal(tensor, 1.0, 0.1)
        elif name.endswith("generator.bn.bias"):
            normal(tensor, 0.0, 0.1)
        elif leaf == "running_means":
            normal(tensor, 0.0, 0.1)
        elif leaf == "running_vars":
            tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)  # U(0.5, 1.5)
        elif leaf == "gamma":
            tensor.fill_(0.5)
    for module in model.modules():
        if hasattr(module, "weight_orig"):
            weight = module.weight_orig.flatten(1)
            v = F.normalize(torch.randn(weight.shape[1], generator=generator), dim=0)
            for _ in range(20):
                u = F.normalize(weight @ v, dim=0)
                v = F.normalize(weight.t() @ u, dim=0)
            module.weight_u.copy_(u)
            module.weight_v.copy_(v)


def build_pair(resolution: int, folder: Path, seed: int, device: torch.device):
    """(ganedit model, package model): the package's from the published config, ganedit's from its folder."""
    config_dict = PUBLISHED_CONFIGS[f"biggan-deep-{resolution}"]
    package_model = BigGAN(BigGANConfig.from_dict(config_dict)).eval()
    randomise(package_model, seed)
    (folder / "config.json").write_text(json.dumps(package_model.config.to_dict()), encoding="utf-8")
    torch.save(package_model.state_dict(), folder / "pytorch_model.bin")
    ganedit_model = ganedit.load_model(folder, device=device).generator.eval()
    package_model.to(device)
    for model in (ganedit_model, package_model):
        model.requires_grad_(False)  # frozen generator: embed-tune computes no weight gradients
    return ganedit_model, package_model


def inputs(batch: int, truncation: float, seed: int, device: torch.device):
    """z [B, 128] already scaled by the truncation (truncated at 2), one-hot classes [B, 1000]."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 128, generator=generator).clamp(-2, 2) * truncation
    classes = torch.randint(0, 1000, (batch,), generator=generator)
    return z.to(device), F.one_hot(classes, 1000).float().to(device)


def sample_step(model, z, onehot, truncation) -> torch.Tensor:
    with torch.no_grad():
        return model(z, onehot, truncation)


def embed_tune_step(model, z, embedding, truncation) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and the gradient of images.mean() with respect to the embedding [B, z_dim]."""
    leaf = embedding.detach().clone().requires_grad_(True)
    if hasattr(model, "from_embedding"):  # ganedit
        images = model.from_embedding(z, leaf, truncation)
    else:  # the package: what its forward does after the embedding lookup
        images = model.generator(torch.cat((z, leaf), dim=1), truncation)
    images.mean().backward()
    return images.detach(), leaf.grad


def compare(ganedit_model, package_model, args, device) -> dict:
    """Max abs differences of images and embedding gradients; asserts images agree within TOLERANCE."""
    z, onehot = inputs(2, args.truncation, args.seed + 1, device)
    ours, theirs = (
        sample_step(ganedit_model, z, onehot, args.truncation),
        sample_step(package_model, z, onehot, args.truncation),
    )
    if not (torch.isfinite(ours).all() and torch.isfinite(theirs).all()):
        raise AssertionError("non-finite images from the random initialisation")
    embedding = package_model.embeddings(onehot)
    _, grad_ours = embed_tune_step(ganedit_model, z, embedding, args.truncation)
    _, grad_theirs = embed_tune_step(package_model, z, embedding, args.truncation)
    image_diff = (ours - theirs).abs().max().item()
    if image_diff >= TOLERANCE:
        raise AssertionError(f"ganedit and the package differ by {image_diff:.3g} (tolerance {TOLERANCE})")
    return {
        "max_abs_diff": image_diff,
        "image_std": theirs.std().item(),
        "max_abs_diff_embedding_grad": (grad_ours - grad_theirs).abs().max().item(),
        "embedding_grad_max": grad_theirs.abs().max().item(),
    }


def time_resolution(models: dict, resolution: int, max_abs_diff: float, args, device) -> list[dict]:
    """One result per (batch size, phase) for the two models {"ganedit": ..., "package": ...}."""
    results, t = [], args.truncation
    for batch in args.batch_sizes:
        z, onehot = inputs(batch, t, args.seed + 2, device)
        embedding = models["package"].embeddings(onehot)
        for phase in PHASES:
            if phase == "sample":
                steps = {side: partial(sample_step, model, z, onehot, t) for side, model in models.items()}
            else:
                steps = {side: partial(embed_tune_step, model, z, embedding, t) for side, model in models.items()}
            seconds = time_interleaved(steps, args.repeats, device)
            results.append(
                {
                    "resolution": resolution,
                    "batch_size": batch,
                    "phase": phase,
                    "ganedit_s_per_step": seconds["ganedit"],
                    "package_s_per_step": seconds["package"],
                    "ganedit_images_per_s": batch / seconds["ganedit"],
                    "package_images_per_s": batch / seconds["package"],
                    "ratio": seconds["ganedit"] / seconds["package"],
                    "max_abs_diff": max_abs_diff,
                }
            )
    return results


def main() -> None:
    if pytorch_pretrained_biggan is None:
        sys.exit("pytorch-pretrained-biggan is not installed; run `pip install pytorch-pretrained-biggan` first")
    args = parse_arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name, _ = device_description(device)
    results, checks = [], {}
    reset_peak_memory(device)
    for resolution in args.resolutions:
        with tempfile.TemporaryDirectory() as folder:
            ganedit_model, package_model = build_pair(resolution, Path(folder), args.seed, device)
        checks[str(resolution)] = compare(ganedit_model, package_model, args, device)
        models = {"ganedit": ganedit_model, "package": package_model}
        results += time_resolution(models, resolution, checks[str(resolution)]["max_abs_diff"], args, device)
    print(
        json.dumps(
            {
                "benchmark": "biggan_vs_package",
                "device": name,
                "torch": torch.__version__,
                "cuda": torch.version.cuda,
                "package": "pytorch-pretrained-biggan",
                "threads": torch.get_num_threads(),
                "settings": {
                    "resolutions": args.resolutions,
                    "batch_sizes": args.batch_sizes,
                    "repeats": args.repeats,
                    "truncation": args.truncation,
                    "seed": args.seed,
                    "precision": "fp32",
                },
                "checks": checks,
                "results": results,
                "peak_memory_gib": peak_memory_gib(device),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
