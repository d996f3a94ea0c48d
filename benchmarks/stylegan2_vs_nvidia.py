"""Benchmark: ganedit's StyleGAN2 against NVIDIA's stylegan2-ada-pytorch, same weights, one process.

Prints one JSON object (design/performance.md, "How to measure"). The peer is NVIDIA's own code, run from
a checkout of github.com/NVlabs/stylegan2-ada-pytorch given with `--peer PATH` (or GANEDIT_STYLEGAN2_ADA;
default: ../shared/stylegan2-ada-pytorch beside the repository) and put on sys.path; nothing of it is
copied into ganedit, and nothing in it is patched. For each setting, NVIDIA's `training.networks.Generator`
(unconditional, skip architecture) and `Discriminator` (resnet) are built as train.py builds them
(channel_base / channel_max, 8 mapping layers, conv_clamp 256 as every --cfg but --fp32 has it;
num_fp16_res 0, so that both sides compute in fp32, which ganedit's modules always do), given a seeded
random initialisation (NVIDIA's own init under `torch.manual_seed`, plus random biases and noise
strengths, which it initialises to 0; speed does not depend on the values), written as a network pickle
the way its training loop writes snapshots (a dict G, D, G_ema, augment_pipe, training_set_kwargs, each
network a `copy.deepcopy(...).eval().requires_grad_(False).cpu()`, pickled by its torch_utils.persistence)
and read back from that file with `ganedit.load_model` (G from G_ema, D from D; ganedit's restricted
unpickler executes none of the peer's code). Before timing, the script checks, and fails if not, that
both give the same images for the same z (noise_mode 'const', truncation 1), the same D logits on them,
and the same generator-step loss and gradients. Then, interleaved (ganedit, peer, peer, ganedit, ...; a
warm-up round first; medians):

- `sample`: `G(z, None, noise_mode='const')` with no grad; NVIDIA's G in eval mode, as its generate.py runs
  it (so its fused, grouped modulated convolution, the one ganedit always uses);
- `g_step`: the generator step, the core of `ganedit.engine.adversarial.Trainer.train_step`'s G step:
  G forward (noise 'random', as both training loops use), D forward, the non-saturating loss
  `softplus(-D(G(z))).mean()`, backward into G's parameters (D frozen, gradients set to None first);
  NVIDIA's networks in train mode, as its training loop runs them (so its non-fused modulated convolution
  and its w_avg tracking, both its own choices for training);
- `d_step`: the discriminator step: G forward without grad (train mode, as above), D on the fakes and on
  a fixed real batch, `softplus(D(fake)).mean() + softplus(-D(real)).mean()` backward into D's parameters.

Left out on both sides alike: the optimiser step (the same Adam over the same parameter count), style
mixing, R1 and path length (their lazy terms; benchmarks/adversarial_step.py times ganedit's whole step).
`ratio` is ganedit / peer seconds per step (below 1: ganedit faster).

What could be compared here, and what could not:

- NVIDIA's code runs on a CPU. Its custom ops `bias_act` and `upfirdn2d` take their reference (plain
  PyTorch) implementation whenever a tensor is not on CUDA, without trying to build their plugin; that
  reference path is slow on purpose (its own warning calls it the "slow reference implementation"), so a
  CPU ratio compares ganedit against the only path NVIDIA has there, not against its fast one. On a GPU its
  compiled CUDA plugins are the fair peer: `peer.ops` in the JSON says, per op, whether the plugin was
  built and used or whether the build failed and the op fell back to the reference path (it did on an H100
  with a recent PyTorch / CUDA, design/performance.md). Its GPU training also runs the four highest
  resolutions in fp16 (num_fp16_res 4), which this fp32 comparison leaves out. Its plugin builds print to
  stdout, so `torch_utils.custom_ops.verbosity` is set to 'none' (the JSON owns stdout). Checked with torch
  2.14.1 on a CPU: the import, the pickling and all three steps work unchanged (importing
  torch.utils.cpp_extension logs "No CUDA runtime is found" on stderr, nothing more).
- rosinality's stylegan2-pytorch (the reference of benchmarks/adversarial_step.py) cannot be run here: its
  op/fused_act.py and op/upfirdn2d.py call `torch.utils.cpp_extension.load` at import, compiling CUDA
  kernels, so without CUDA and nvcc it cannot even be imported. It is not compared.

Without a peer checkout (none given and none at the default path, or `--peer ''`), the script prints a
JSON object with `"peer": null` and the reason, and exits 0. If the peer fails (import, build, pickle,
load, the checks), the JSON says at which stage and how (`error`), and the exit status is 1.

    python benchmarks/stylegan2_vs_nvidia.py --peer ~/stylegan2-ada-pytorch            # CUDA if present
    python benchmarks/stylegan2_vs_nvidia.py --peer PATH --device cpu --threads 2      # small, batches 4, 8
    python benchmarks/stylegan2_vs_nvidia.py --peer PATH --settings tiny --batch-sizes 4 --repeats 1  # smoke
"""

import argparse
import copy
import json
import os
import pickle
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
from common import device_description, peak_memory_gib, reset_peak_memory, time_interleaved

import ganedit
from ganedit.engine.adversarial import discriminator_loss, generator_loss

PEER = "NVlabs/stylegan2-ada-pytorch"
PEER_ENV = "GANEDIT_STYLEGAN2_ADA"
DEFAULT_PEER = Path(__file__).resolve().parents[1].parent / "shared" / "stylegan2-ada-pytorch"
PHASES = ("sample", "g_step", "d_step")
TOLERANCE = 1e-3  # max abs difference allowed: images in [-1, 1]; logits, loss, gradients relative to their scale
# Network settings: train.py's channel_base / channel_max (channels = min(channel_base // res, channel_max)).
SETTINGS = {
    "tiny": dict(resolution=32, z_dim=64, w_dim=64, mapping_layers=2, channel_base=2048, channel_max=64),
    "small": dict(resolution=64, z_dim=512, w_dim=512, mapping_layers=8, channel_base=8192, channel_max=256),
    "config-f-256": dict(resolution=256, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512),
}
CONV_CLAMP = 256  # train.py's conv_clamp in G and D (every --cfg; it drops the clamp only with --fp32)
MBSTD_GROUP = 4  # train.py's minibatch-stddev group (--cfg stylegan2: 4; auto: min(batch per GPU, 4))
DEFAULTS = {  # per device type: settings, batch sizes a user would run there, timed repetitions
    "cpu": {"settings": ["small"], "batch_sizes": [4, 8], "repeats": 3},
    "cuda": {"settings": ["config-f-256"], "batch_sizes": [16, 32], "repeats": 10},
}
NOT_COMPARED = {
    "rosinality/stylegan2-pytorch": "op/fused_act.py and op/upfirdn2d.py call torch.utils.cpp_extension.load at "
    "import (CUDA kernels), so it cannot be imported without CUDA and nvcc",
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer",
        help=f"a stylegan2-ada-pytorch checkout (default: ${PEER_ENV}, else {DEFAULT_PEER}); '' for none",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: cpu small, cuda config-f-256")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="default: cpu 4 8, cuda 16 32")
    parser.add_argument("--repeats", type=int, help="timed repetitions per side (default: cpu 3, cuda 10)")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    defaults = DEFAULTS["cuda" if args.device.startswith("cuda") else "cpu"]
    args.settings = args.settings or defaults["settings"]
    args.batch_sizes = args.batch_sizes or defaults["batch_sizes"]
    args.repeats = args.repeats or defaults["repeats"]
    if min(args.batch_sizes) < 1 or args.repeats < 1:
        parser.error("--batch-sizes and --repeats must be positive")
    if any(batch % min(batch, MBSTD_GROUP) for batch in args.batch_sizes):
        parser.error(f"batch sizes must be multiples of the minibatch-stddev group ({MBSTD_GROUP}) or below it")
    args.peer, args.no_peer_reason = find_peer(args.peer)
    if args.peer is not None and not (args.peer / "training" / "networks.py").is_file():
        parser.error(f"{args.peer} is not a stylegan2-ada-pytorch checkout (no training/networks.py)")
    return args


def find_peer(given: str | None) -> tuple[Path | None, str | None]:
    """(the peer checkout, None) or (None, why there is none): --peer, then $GANEDIT_STYLEGAN2_ADA, then the default."""
    for value, source in ((given, "--peer"), (os.environ.get(PEER_ENV), PEER_ENV)):
        if value is not None:
            if value == "":
                return None, f"no peer: {source} is empty"
            return Path(value).expanduser().resolve(), None
    if (DEFAULT_PEER / "training" / "networks.py").is_file():
        return DEFAULT_PEER, None
    return None, (
        f"no {PEER} checkout: pass --peer PATH or set {PEER_ENV} (the default {DEFAULT_PEER} does not hold one); "
        "`git clone https://github.com/NVlabs/stylegan2-ada-pytorch` gives one"
    )


def peer_description(peer: Path) -> dict:
    """Where the peer is, its git commit and whether its tracked files are modified (None where not a git checkout)."""

    def git(*arguments: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(peer), *arguments], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "name": PEER,
        "path": str(peer),
        "commit": git("rev-parse", "HEAD"),
        "modified": None if status is None else bool(status),
    }


def import_peer(peer: Path) -> dict:
    """The peer's modules, imported from its checkout (placed first on sys.path)."""
    sys.path.insert(0, str(peer))
    import dnnlib
    from torch_utils import custom_ops
    from torch_utils.ops import bias_act, upfirdn2d
    from training import networks

    custom_ops.verbosity = "none"  # its plugin builds print to stdout, which carries the JSON
    return {"dnnlib": dnnlib, "networks": networks, "ops": {"bias_act": bias_act, "upfirdn2d": upfirdn2d}}


def peer_ops(ops: dict, device: torch.device) -> dict:
    """Per custom op, which implementation the peer ran."""
    described = {}
    for name, module in ops.items():
        if not module._inited:
            described[name] = (
                "reference (plain PyTorch): tensors not on CUDA never try the plugin"
                if device.type != "cuda"
                else "not called"
            )
        elif module._plugin is not None:
            described[name] = "cuda plugin (compiled)"
        else:
            described[name] = "reference (plain PyTorch): the CUDA plugin failed to build (see stderr)"
    return described


def build_peer_pair(peer: dict, setting: dict, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """NVIDIA's G and D, as train.py constructs them (EasyDict kwargs), with a seeded random initialisation."""
    easy = peer["dnnlib"].EasyDict
    common = dict(channel_base=setting["channel_base"], channel_max=setting["channel_max"], num_fp16_res=0)
    torch.manual_seed(seed)
    G = peer["networks"].Generator(
        z_dim=setting["z_dim"],
        c_dim=0,
        w_dim=setting["w_dim"],
        img_resolution=setting["resolution"],
        img_channels=3,
        mapping_kwargs=easy(num_layers=setting["mapping_layers"]),
        synthesis_kwargs=easy(**common, conv_clamp=CONV_CLAMP),
    )
    D = peer["networks"].Discriminator(
        c_dim=0,
        img_resolution=setting["resolution"],
        img_channels=3,
        **common,
        conv_clamp=CONV_CLAMP,
        block_kwargs=easy(),
        mapping_kwargs=easy(),
        epilogue_kwargs=easy(mbstd_group_size=MBSTD_GROUP),
    )
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # what NVIDIA initialises to zero: biases (around their init) and noise strengths
        for module in (G, D):
            for name, parameter in module.named_parameters():
                if name.endswith("bias") or name.endswith("noise_strength"):
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return G, D


def write_network_pickle(G: torch.nn.Module, D: torch.nn.Module, resolution: int, path: Path) -> None:
    """A network pickle as training/training_loop.py writes a snapshot (G_ema a copy of G: same weights)."""
    G_ema = copy.deepcopy(G).eval()
    snapshot = dict(
        training_set_kwargs=dict(
            class_name="training.dataset.ImageFolderDataset",
            path="(none: random weights)",
            resolution=resolution,
            use_labels=False,
            max_size=None,
            xflip=False,
        )
    )
    for name, module in (("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", None)):
        if module is not None:
            module = copy.deepcopy(module).eval().requires_grad_(False).cpu()
        snapshot[name] = module
    with open(path, "wb") as stream:
        pickle.dump(snapshot, stream)


def prepare(phase: str, models: dict) -> None:
    """Modes and gradient flags for a phase, on both sides: eval for sampling, train for the training steps."""
    for G, D in models.values():
        G.train(phase != "sample")
        D.train(phase != "sample")
        G.requires_grad_(phase == "g_step")
        D.requires_grad_(phase == "d_step")


def sample_step(G, z) -> torch.Tensor:
    with torch.no_grad():
        return G(z, None, noise_mode="const")


def generator_step(G, D, z, noise_mode: str) -> torch.Tensor:
    """Non-saturating G loss, backward into G's parameters (gradients set to None first, as zero_grad does)."""
    for parameter in G.parameters():
        parameter.grad = None
    loss = generator_loss(D, G(z, None, noise_mode=noise_mode))
    loss.backward()
    return loss.detach()


def discriminator_step(G, D, z, real, noise_mode: str) -> torch.Tensor:
    """Logistic D loss on fakes (G without grad) and a real batch, backward into D's parameters."""
    for parameter in D.parameters():
        parameter.grad = None
    with torch.no_grad():
        fake = G(z, None, noise_mode=noise_mode)
    loss = discriminator_loss(D, real, fake)
    loss.backward()
    return loss.detach()


def inputs(batch: int, z_dim: int, resolution: int, seed: int, device: torch.device):
    """z [B, z_dim] and a fixed 'real' batch [B, 3, R, R] in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, z_dim, generator=generator)
    real = torch.rand(batch, 3, resolution, resolution, generator=generator) * 2 - 1
    return z.to(device), real.to(device)


def relative_difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()


def compare(models: dict, setting: dict, seed: int, device: torch.device) -> dict:
    """Max abs differences of images, logits, G-step loss and gradients; asserts they agree within TOLERANCE."""
    z, _ = inputs(MBSTD_GROUP, setting["z_dim"], setting["resolution"], seed + 2, device)
    prepare("sample", models)
    images = {side: sample_step(G, z) for side, (G, _) in models.items()}
    if not all(torch.isfinite(image).all() for image in images.values()):
        raise AssertionError("non-finite images from the random initialisation")
    with torch.no_grad():
        logits = {side: D(images["peer"], None) for side, (_, D) in models.items()}
    prepare("g_step", models)  # train mode: the peer's non-fused modulated convolution
    losses, gradients = {}, {}
    for side, (G, D) in models.items():
        losses[side] = generator_step(G, D, z, "const")
        gradients[side] = {name: parameter.grad for name, parameter in G.named_parameters()}
    if set(gradients["ganedit"]) != set(gradients["peer"]):
        raise AssertionError("ganedit's and the peer's generators name their parameters differently")
    names = sorted(gradients["peer"])
    flat = {side: torch.cat([gradients[side][name].flatten() for name in names]) for side in gradients}
    checks = {
        "max_abs_diff": (images["ganedit"] - images["peer"]).abs().max().item(),
        "image_std": images["peer"].std().item(),
        "max_abs_diff_logits": (logits["ganedit"] - logits["peer"]).abs().max().item(),
        "logits_max": logits["peer"].abs().max().item(),
        "g_loss": losses["peer"].item(),
        "abs_diff_g_loss": (losses["ganedit"] - losses["peer"]).abs().item(),
        "max_abs_diff_g_grad": (flat["ganedit"] - flat["peer"]).abs().max().item(),
        "g_grad_max": flat["peer"].abs().max().item(),
    }
    problems = {
        "images": checks["max_abs_diff"],
        "D logits (relative)": relative_difference(logits["ganedit"], logits["peer"]),
        "G loss (relative)": relative_difference(losses["ganedit"], losses["peer"]),
        "G gradients (relative)": relative_difference(flat["ganedit"], flat["peer"]),
    }
    for what, difference in problems.items():
        if not difference < TOLERANCE:
            raise AssertionError(f"ganedit and the peer differ in {what} by {difference:.3g} (tolerance {TOLERANCE})")
    return checks


def time_setting(models: dict, name: str, setting: dict, max_abs_diff: float, args, device) -> list[dict]:
    """One result per (batch size, phase) for the two pairs {"ganedit": (G, D), "peer": (G, D)}."""
    results = []
    for batch in args.batch_sizes:
        z, real = inputs(batch, setting["z_dim"], setting["resolution"], args.seed + 3, device)
        for phase in args.phases:
            prepare(phase, models)
            if phase == "sample":
                steps = {side: partial(sample_step, G, z) for side, (G, _) in models.items()}
            elif phase == "g_step":
                steps = {side: partial(generator_step, G, D, z, "random") for side, (G, D) in models.items()}
            else:
                steps = {side: partial(discriminator_step, G, D, z, real, "random") for side, (G, D) in models.items()}
            seconds = time_interleaved(steps, args.repeats, device)
            results.append(
                {
                    "setting": name,
                    "resolution": setting["resolution"],
                    "batch_size": batch,
                    "phase": phase,
                    "ganedit_s_per_step": seconds["ganedit"],
                    "peer_s_per_step": seconds["peer"],
                    "ganedit_images_per_s": batch / seconds["ganedit"],
                    "peer_images_per_s": batch / seconds["peer"],
                    "ratio": seconds["ganedit"] / seconds["peer"],
                    "max_abs_diff": max_abs_diff,
                }
            )
    return results


def network_description(G: torch.nn.Module, D: torch.nn.Module, setting: dict) -> dict:
    resolutions = [2**i for i in range(2, setting["resolution"].bit_length())]
    return {
        **setting,
        "channels": [min(setting["channel_base"] // res, setting["channel_max"]) for res in resolutions],
        "conv_clamp": CONV_CLAMP,
        "mbstd_group_size": MBSTD_GROUP,
        "generator_parameters": sum(p.numel() for p in G.parameters()),
        "discriminator_parameters": sum(p.numel() for p in D.parameters()),
    }


def main() -> None:
    args = parse_arguments()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name, _ = device_description(device)
    report = {
        "benchmark": "stylegan2_vs_nvidia",
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "peer": None,
        "not_compared": NOT_COMPARED,
    }
    if args.peer is None:
        print(json.dumps({**report, "reason": args.no_peer_reason}, indent=2))
        return
    report["peer"] = peer_description(args.peer)
    report["settings"] = {
        "settings": args.settings,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "phases": args.phases,
        "seed": args.seed,
        "precision": "fp32 (peer: num_fp16_res 0)",
        "truncation": 1.0,
        "noise_mode": {"sample": "const", "g_step": "random", "d_step": "random", "checks": "const"},
    }
    stage, peer, networks, checks, results = (
        "importing the peer (dnnlib, torch_utils, training.networks)",
        None,
        {},
        {},
        [],
    )
    try:
        peer = import_peer(args.peer)
        reset_peak_memory(device)
        for setting_name in args.settings:
            setting = SETTINGS[setting_name]
            stage = f"{setting_name}: building the peer's Generator and Discriminator"
            peer_G, peer_D = build_peer_pair(peer, setting, args.seed)
            networks[setting_name] = network_description(peer_G, peer_D, setting)
            with tempfile.TemporaryDirectory() as folder:
                stage = f"{setting_name}: writing the peer's network pickle"
                path = Path(folder) / "network-snapshot.pkl"
                write_network_pickle(peer_G, peer_D, setting["resolution"], path)
                stage = f"{setting_name}: reading the network pickle with ganedit.load_model"
                bundle = ganedit.load_model(path, device=device)
            models = {
                "ganedit": (bundle.generator, bundle.discriminator),
                "peer": (peer_G.to(device), peer_D.to(device)),
            }
            stage = f"{setting_name}: comparing outputs (images, D logits, G-step loss and gradients)"
            checks[setting_name] = compare(models, setting, args.seed, device)
            stage = f"{setting_name}: timing"
            results += time_setting(models, setting_name, setting, checks[setting_name]["max_abs_diff"], args, device)
    except Exception as error:  # the JSON says what failed, where, and what had run by then
        report["peer"]["ops"] = None if peer is None else peer_ops(peer["ops"], device)
        report.update(networks=networks, checks=checks, results=results)
        report["error"] = {"stage": stage, "type": type(error).__name__, "message": str(error).strip()}
        print(json.dumps(report, indent=2))
        sys.exit(1)
    report["peer"]["ops"] = peer_ops(peer["ops"], device)
    report.update(networks=networks, checks=checks, results=results, peak_memory_gib=peak_memory_gib(device))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
