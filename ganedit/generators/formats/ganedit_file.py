"""ganedit's own files as modules: write a generator (and discriminator), rebuild them from a file.

The file layout is ganedit.store.checkpoint's; here each network is described by its architecture and
config on the way out, and rebuilt from them, with its tensors loaded strictly, on the way in.
"""

from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError
from ganedit.generators.formats.bundle import ModelBundle
from ganedit.generators.registry import build, config_dict, load_exact_state
from ganedit.generators.sampling import num_classes
from ganedit.store.checkpoint import (
    FORMAT_NAME,
    NETWORKS,
    StoredNetwork,
    read_checkpoint,
    read_tensors,
    write_checkpoint,
)


def save_checkpoint(
    path: Path | str,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None = None,
    class_names: list[str] | None = None,
    provenance: dict | None = None,
    extra: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write generator (and discriminator) to `path` atomically (fp32 unless asked otherwise); return the path."""
    networks = {"G": _stored(generator)}
    if discriminator is not None:
        networks["D"] = _stored(discriminator)
    return write_checkpoint(path, networks, class_names, provenance, extra, dtype)


def _stored(module: torch.nn.Module) -> StoredNetwork:
    return StoredNetwork({"arch": module.arch, "config": config_dict(module)}, module.state_dict())


def read_ganedit_checkpoint(path: Path) -> ModelBundle:
    """Load a file written by `save_checkpoint` into a ModelBundle (modules in eval mode, on the CPU).

    Every network's architecture and config are checked (and the memory they need) before the network is
    built, and its tensor shapes against the file's header before any tensor is read.
    """
    stored = read_checkpoint(path)
    modules = {
        prefix: build(network.spec["arch"], network.spec["config"], f"{path} ({NETWORKS[prefix]})", network.shapes)
        for prefix, network in stored.networks.items()
    }
    _check_pair(modules, path)
    classes = num_classes(modules["G"])
    if stored.class_names is not None and len(stored.class_names) != classes:
        raise CheckpointFormatError(
            f"{path}: damaged ganedit metadata (ganedit.class_names lists {len(stored.class_names)} names for a "
            f"generator with {classes} classes); write the file again"
        )
    for prefix, module in modules.items():
        load_exact_state(module, read_tensors(path, prefix), str(path))
        module.eval()
    return ModelBundle(
        generator=modules["G"],
        discriminator=modules.get("D"),
        format=FORMAT_NAME,
        source=str(path),
        class_names=stored.class_names,
        metadata={"provenance": stored.provenance, **stored.extra},
    )


def _check_pair(modules: dict[str, torch.nn.Module], path: Path) -> None:
    """G must be a generator and D a discriminator of the same images (resolution, channels, classes)."""
    for prefix, module in modules.items():
        if module.arch.endswith("discriminator") != (prefix == "D"):
            raise CheckpointFormatError(
                f"{path}: damaged ganedit metadata ({NETWORKS[prefix]} records a {module.arch})"
            )
    if "D" in modules and modules["G"].arch.startswith("stylegan2"):
        generator, discriminator = modules["G"].config, modules["D"].config
        for name in ("img_resolution", "img_channels", "c_dim"):
            if getattr(generator, name) != getattr(discriminator, name):
                raise CheckpointFormatError(
                    f"{path}: damaged ganedit metadata (the generator's {name} is {getattr(generator, name)}, the "
                    f"discriminator's {getattr(discriminator, name)}); write the file again"
                )
