"""The toy world's oracles: small CNNs that name every attribute of a toy image, and the toy FID.

Two oracles of the same architecture and heads are shipped, both trained by scripts/train_toy_oracle.py
on freshly drawn toy images:

- the forgiving oracle, ganedit/data/toy-oracle.safetensors (`load_oracle()`, judge `toy`): trained on
  blurred, noised and colour-jittered renderings, because it judges GAN samples, which are blurrier and
  noisier than renderings. It also accepts blob-like samples as shapes; the toy generators were trained
  against it and the procedures use it as their judge.
- the strict oracle, ganedit/data/toy-oracle-strict.safetensors (`load_oracle(strict=True)`, judge
  `toy-strict`): trained on clean renderings only (the renderer's own variety of size, position and
  rotation, nothing else), so it names a shape only where the shape is really drawn. It is the
  measure of that in tests and reports (scripts/measure_toy_world.py compares the two).

Both are differentiable with respect to their input, so procedures can back-propagate through them
(embed-tune does).

The toy FID is the Frechet distance between Gaussians fitted to the oracle's penultimate features
of two image sets, the toy world's stand-in for FID's Inception features.
"""

import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ganedit.errors import CheckpointFormatError, GaneditError
from ganedit.generators.ops import freeze
from ganedit.generators.registry import load_exact_state
from ganedit.judges.metrics import frechet_distance
from ganedit.store.atomic import atomic_write
from ganedit.toy.world import ATTRIBUTES, RESOLUTION, ToyBatch

ORACLE_PATH = Path(__file__).resolve().parents[1] / "data" / "toy-oracle.safetensors"
STRICT_ORACLE_PATH = ORACLE_PATH.with_name("toy-oracle-strict.safetensors")
TRAIN_COMMAND = "python scripts/train_toy_oracle.py"
CLEAN_VIEWS = "clean"  # the strict oracle's training record: "views": "clean" (renderings as drawn)
METADATA_KEY = "ganedit.toy_oracle"


@dataclasses.dataclass
class OracleConfig:
    widths: tuple[int, ...] = (16, 32, 64, 96)  # channels of the four stages (32, 16, 8, 4 px)
    labels: dict[str, list[str]] = dataclasses.field(  # attribute -> label names, one head each
        default_factory=lambda: {attribute: list(names) for attribute, names in ATTRIBUTES.items()}
    )


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm, ReLU: keeps the resolution."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ToyOracle(nn.Module):
    """Four convolutional stages (32 -> 16 -> 8 -> 4 px), global average pooling, one linear head per
    attribute. `features` is the pooled vector the heads read."""

    arch = "toy-oracle"

    def __init__(self, config: OracleConfig | None = None):
        super().__init__()
        self.config = config or OracleConfig()
        self.labels = self.config.labels
        self.training_record: dict = {}  # how the loaded weights were trained (see load_oracle)
        w1, w2, w3, w4 = self.config.widths
        self.trunk = nn.Sequential(
            conv_block(3, w1),  # 32 px
            nn.MaxPool2d(2),
            conv_block(w1, w2),  # 16 px
            conv_block(w2, w2),
            nn.MaxPool2d(2),
            conv_block(w2, w3),  # 8 px
            conv_block(w3, w3),
            nn.MaxPool2d(2),
            conv_block(w3, w4),  # 4 px
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.heads = nn.ModuleDict({attribute: nn.Linear(w4, len(names)) for attribute, names in self.labels.items()})

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding [N, F] of images [N, 3, H, W] in [-1, 1] (resized to 32 px if needed)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"the toy oracle expects images [N, 3, H, W], got {list(images.shape)}")
        if images.shape[-2:] != (RESOLUTION, RESOLUTION):
            images = F.interpolate(
                images, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True, align_corners=False
            )
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute: {attribute: [N, len(labels[attribute])]}."""
        features = self.features(images)
        return {attribute: head(features) for attribute, head in self.heads.items()}


def save_oracle(oracle: ToyOracle, path: Path | str, training: dict) -> Path:
    """Write the oracle's tensors (fp32) and config, plus `training` facts, to `path` atomically."""
    path = Path(path)
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in oracle.state_dict().items()}
    metadata = {METADATA_KEY: json.dumps({"config": dataclasses.asdict(oracle.config), "training": training})}
    return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def load_oracle(device: torch.device | str = "cpu", path: Path | str | None = None, strict: bool = False) -> ToyOracle:
    """A toy oracle in eval mode, its parameters frozen, every tensor checked against the architecture.

    device: where it is put.
    path:   the oracle file (None: the shipped one that `strict` names).
    strict: without a path, the strict oracle (trained on clean renderings only) instead of the
            forgiving one (module docstring).
    """
    path = Path(path) if path is not None else STRICT_ORACLE_PATH if strict else ORACLE_PATH
    retrain = TRAIN_COMMAND + (" --strict" if strict or path == STRICT_ORACLE_PATH else "")
    try:
        with safe_open(str(path), "pt") as stream:
            metadata = stream.metadata() or {}
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointFormatError(
            f"{path}: cannot read the toy oracle ({error}); recreate it with `{retrain}`"
        ) from None
    if METADATA_KEY not in metadata:
        raise CheckpointFormatError(f"{path}: not a toy oracle file (no {METADATA_KEY} metadata)")
    record = json.loads(metadata[METADATA_KEY])
    config = OracleConfig(widths=tuple(record["config"]["widths"]), labels=record["config"]["labels"])
    if config.labels != OracleConfig().labels:
        raise GaneditError(
            f"{path}: the toy oracle was trained on labels {config.labels}, which differ from this ganedit's "
            f"toy world; retrain it with `{retrain}`"
        )
    oracle = ToyOracle(config)
    load_exact_state(oracle, tensors, str(path), hint=f"retrain it with `{retrain}`")
    oracle.training_record = record["training"]
    if strict and oracle.training_record.get("views") != CLEAN_VIEWS:
        raise GaneditError(
            f"{path}: not a strict toy oracle (its training record does not say it saw {CLEAN_VIEWS} views only); "
            f"retrain it with `{retrain}`"
        )
    return freeze(oracle).to(device)


@torch.no_grad()
def predict(oracle: ToyOracle, images: torch.Tensor, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """The oracle's label per attribute: {attribute: LongTensor [N]} (on the CPU)."""
    device = next(oracle.parameters()).device
    chunks = [oracle(chunk.to(device)) for chunk in images.split(batch_size)]
    return {
        attribute: torch.cat([logits[attribute].argmax(1).cpu() for logits in chunks]) for attribute in oracle.labels
    }


def accuracy(oracle: ToyOracle, batch: ToyBatch) -> dict[str, float]:
    """Fraction of a toy batch whose every attribute the oracle names correctly, per attribute."""
    predictions = predict(oracle, batch.images)
    return {
        attribute: (predictions[attribute] == truth.cpu()).float().mean().item()
        for attribute, truth in batch.labels().items()
    }


@torch.no_grad()
def toy_fid(images_a: torch.Tensor, images_b: torch.Tensor, oracle: ToyOracle, batch_size: int = 500) -> float:
    """Toy FID: Frechet distance between the oracle features of two image sets in [-1, 1].

    Like FID it is biased upwards for small sets; compare values only at equal sample counts (1,000 or
    more per set is a good default).
    """
    return frechet_distance(_features(images_a, oracle, batch_size), _features(images_b, oracle, batch_size))


def _features(images: torch.Tensor, oracle: ToyOracle, batch_size: int) -> torch.Tensor:
    device = next(oracle.parameters()).device
    return torch.cat([oracle.features(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


def robust_view(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """A random Gaussian blur (sigma 0.5-1.2 px), shift (up to 2 px) and noise (std 0.05) of a batch.

    What the toy generators' training scripts show the oracle, so that a generator cannot satisfy it
    with fine, adversarial texture but has to draw the shape.
    """
    import torchvision.transforms.functional as TF

    sigma = 0.5 + 0.7 * float(torch.rand(1, generator=rng))
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=rng))
    noise = 0.05 * torch.randn(images.shape, generator=rng).to(images.device)
    view = TF.gaussian_blur(images, kernel_size=5, sigma=sigma)
    return torch.roll(view, shifts=(dy, dx), dims=(2, 3)) + noise
