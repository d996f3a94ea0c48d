"""Perceptual distances between pairs of images: LPIPS, and its toy-world counterpart.

`load_perceptual(spec)` gives a frozen module mapping two batches of images in [-1, 1] to [N] distances,
differentiable in both:

| spec         | distance                                                                                  |
|--------------|-------------------------------------------------------------------------------------------|
| `lpips-alex` | LPIPS v0.1 (Zhang et al. 2018, the `lpips` package) on AlexNet: learned linear weights     |
| `lpips-vgg`  | the same on VGG16                                                                         |
| `toy`        | the LPIPS formula on the toy oracle's features: per conv stage, unit-normalise channels,  |
|              | squared difference summed over channels, averaged over positions; summed over stages,     |
|              | every channel weighted 1 (LPIPS' "baseline" without learned weights)                      |

The AlexNet / VGG trunk weights are torchvision's (downloaded once into `torch.hub.get_dir()/checkpoints`,
hash-checked); offline and missing, the error names the file and where to put it. LPIPS' own linear
weights ship inside the `lpips` package.

`mean_pairwise_distance(distance, images)` is a set's diversity as the AM paper (Li et al. 2020) reports
it: the mean distance over all pairs of its images.
"""

import os

import torch
from torch import nn

from ganedit.errors import GaneditError
from ganedit.generators.ops import freeze
from ganedit.judges.classifiers import hub_checkpoints

SPECS = ("lpips-alex", "lpips-vgg", "toy")


class LPIPSDistance(nn.Module):
    def __init__(self, network: str):
        super().__init__()
        import warnings

        import lpips

        self.name = f"lpips-{network}"
        with warnings.catch_warnings():  # lpips asks torchvision for its trunk with the deprecated `pretrained=True`
            warnings.simplefilter("ignore", UserWarning)
            self.model = freeze(lpips.LPIPS(net=network, verbose=False))

    def train(self, mode: bool = True) -> "LPIPSDistance":
        return super().train(False)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(a, b, normalize=False).flatten()  # lpips expects [-1, 1]


class ToyPerceptualDistance(nn.Module):
    """LPIPS' formula (uniform channel weights) on the outputs of the toy oracle's convolutional stages."""

    def __init__(self, oracle: nn.Module):
        super().__init__()
        self.name = "toy (LPIPS formula on toy-oracle features)"
        self.oracle = freeze(oracle)

    def train(self, mode: bool = True) -> "ToyPerceptualDistance":
        return super().train(False)

    def _stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs, x = [], images
        for layer in self.oracle.trunk:
            x = layer(x)
            if isinstance(layer, nn.Sequential):  # a conv block (conv, batch norm, ReLU)
                outputs.append(x)
        return outputs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        distance = 0
        for fa, fb in zip(self._stages(a), self._stages(b), strict=True):
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            distance = distance + ((fa - fb) ** 2).sum(dim=1).mean(dim=(1, 2))
        return distance


def load_perceptual(spec: str, device: str | torch.device = "cpu") -> nn.Module:
    if spec == "toy":
        from ganedit.toy.oracle import load_oracle

        return ToyPerceptualDistance(load_oracle(device)).to(device)
    if spec not in SPECS:
        raise GaneditError(f"unknown perceptual distance {spec!r}; choose one of: {', '.join(SPECS)}")
    network = spec.removeprefix("lpips-")
    _require_trunk_weights(network)
    try:
        return LPIPSDistance(network).to(device)
    except (OSError, RuntimeError) as error:
        raise GaneditError(f"cannot load LPIPS ({spec}): {str(error).splitlines()[0][:160]}") from None


def _require_trunk_weights(network: str) -> None:
    import torchvision.models as models

    from ganedit.store.zoo import is_offline

    weights = models.AlexNet_Weights.IMAGENET1K_V1 if network == "alex" else models.VGG16_Weights.IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    if is_offline() and not (hub_checkpoints() / filename).is_file():
        raise GaneditError(
            f"LPIPS lpips-{network}: trunk weights {filename} not found in {hub_checkpoints()} and offline mode is on; "
            f"download {weights.url} into that folder (or go online once)"
        )


@torch.no_grad()
def mean_pairwise_distance(distance: nn.Module, images: torch.Tensor, batch_size: int = 64) -> float:
    """The mean of `distance` over all H (H - 1) / 2 unordered pairs of images [H, 3, h, w] (H >= 2):
    the AM paper's diversity of a class, with LPIPS as `distance` (higher = more diverse)."""
    if len(images) < 2:
        raise ValueError(f"a mean pairwise distance needs at least 2 images, got {len(images)}")
    device = next(distance.parameters()).device
    first, second = torch.triu_indices(len(images), len(images), offset=1)
    total = 0.0
    for start in range(0, len(first), batch_size):
        a, b = first[start : start + batch_size], second[start : start + batch_size]
        total += float(distance(images[a].to(device), images[b].to(device)).float().sum())
    return total / len(first)
