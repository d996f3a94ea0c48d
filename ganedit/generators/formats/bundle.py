"""What every checkpoint reader returns."""

from dataclasses import dataclass, field

import torch


@dataclass
class ModelBundle:
    """A loaded checkpoint: ready modules in eval mode plus what is known about them."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module | None
    format: str  # e.g. "biggan-deep (pytorch-pretrained-biggan)", "stylegan2 (rosinality .pt)"
    source: str  # the path that was read
    class_names: list[str] | None = None  # one name per class, where the checkpoint has them
    metadata: dict = field(default_factory=dict)  # provenance (ganedit files) and format extras


def plain_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict as contiguous CPU copies, floating point in float32: what a writer stores."""
    state = {}
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        state[key] = (tensor.float() if tensor.is_floating_point() else tensor).contiguous().clone()
    return state
