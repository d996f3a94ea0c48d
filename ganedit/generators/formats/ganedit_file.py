"""ganedit's own files as modules: write a generator (and discriminator), rebuild them from a file.

The file layout is ganedit.store.checkpoint's; here each network is described by its architecture and
config on the way out, and rebuilt from them, with its tensors loaded strictly, on the way in.
"""

from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError
from ganedit.generators.formats.bundle import ModelBundle
from ganedit.generators.registry import build, config_dict, load_exact_state
from ganedit.store.checkpoint import FORMAT_NAME, StoredNetwork, read_checkpoint, write_checkpoint


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
    """Load a file written by `save_checkpoint` into a ModelBundle (modules in eval mode, on the CPU)."""
    stored = read_checkpoint(path)
    try:
        modules = {prefix: build(n.spec["arch"], n.spec["config"]) for prefix, n in stored.networks.items()}
    except (KeyError, TypeError) as error:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata ({error})") from None
    for prefix, module in modules.items():
        load_exact_state(module, stored.networks[prefix].state, str(path))
        module.eval()
    return ModelBundle(
        generator=modules["G"],
        discriminator=modules.get("D"),
        format=FORMAT_NAME,
        source=str(path),
        class_names=stored.class_names,
        metadata={"provenance": stored.provenance, **stored.extra},
    )
