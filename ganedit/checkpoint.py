"""ganedit's own checkpoint format: safetensors plus JSON metadata, written atomically.

Layout of a file:
- tensors `G.<name>` (the generator's state dict) and, when present, `D.<name>` (the discriminator's);
- string metadata (every value JSON):
  `ganedit.format_version`, `ganedit.generator` ({"arch", "config"}), `ganedit.discriminator` (same,
  or absent), `ganedit.class_names` (list, or absent), `ganedit.provenance` (see provenance.py),
  `ganedit.extra` (format-specific facts carried over from the source, e.g. training arguments).

Loading never executes anything (safetensors), and rebuilds each module from its recorded
architecture and config, then loads its tensors strictly.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ganedit.atomic import atomic_write
from ganedit.errors import CheckpointFormatError
from ganedit.formats.bundle import ModelBundle
from ganedit.models import build, config_dict, load_exact_state

FORMAT_VERSION = "1"
FORMAT_NAME = "ganedit (safetensors)"


def save_checkpoint(
    path: Path | str,
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None = None,
    class_names: list[str] | None = None,
    provenance: dict | None = None,
    extra: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write generator (and discriminator) to `path` atomically; return the path.

    Floating-point tensors are stored in `dtype` (fp32 unless asked otherwise). The file appears under
    its final name only once it is complete: it is written to a temporary file in the same folder,
    flushed to disk and renamed.
    """
    path = Path(path)
    tensors = _prefixed_tensors("G.", generator, dtype)
    metadata = {
        "ganedit.format_version": FORMAT_VERSION,
        "ganedit.generator": json.dumps({"arch": generator.arch, "config": config_dict(generator)}),
        "ganedit.provenance": json.dumps(provenance or {}),
    }
    if discriminator is not None:
        tensors.update(_prefixed_tensors("D.", discriminator, dtype))
        metadata["ganedit.discriminator"] = json.dumps(
            {"arch": discriminator.arch, "config": config_dict(discriminator)}
        )
    if class_names is not None:
        metadata["ganedit.class_names"] = json.dumps(list(class_names))
    if extra:
        metadata["ganedit.extra"] = json.dumps(extra)

    return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def _prefixed_tensors(prefix: str, module: torch.nn.Module, dtype: torch.dtype) -> dict:
    tensors = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[prefix + name] = tensor.contiguous().clone()
    return tensors


def is_ganedit_checkpoint(path: Path) -> bool:
    """Whether `path` is a safetensors file carrying ganedit's metadata."""
    try:
        with safe_open(str(path), "pt") as stream:
            return "ganedit.format_version" in (stream.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def read_ganedit_checkpoint(path: Path) -> ModelBundle:
    """Load a file written by `save_checkpoint` into a ModelBundle (modules in eval mode, on the CPU)."""
    try:
        with safe_open(str(path), "pt") as stream:
            metadata = stream.metadata() or {}
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointFormatError(f"{path}: not a readable safetensors file ({error}); it may be truncated") from None
    if "ganedit.format_version" not in metadata:
        raise CheckpointFormatError(
            f"{path}: a safetensors file without ganedit metadata (no architecture recorded); "
            "convert the original checkpoint with `ganedit convert` instead"
        )
    if metadata["ganedit.format_version"] != FORMAT_VERSION:
        raise CheckpointFormatError(
            f"{path}: ganedit format version {metadata['ganedit.format_version']!r} is not supported "
            f"by this ganedit (reads version {FORMAT_VERSION}); upgrade ganedit"
        )
    try:
        generator = _rebuild(path, "G.", json.loads(metadata["ganedit.generator"]), tensors)
        discriminator = None
        if "ganedit.discriminator" in metadata:
            discriminator = _rebuild(path, "D.", json.loads(metadata["ganedit.discriminator"]), tensors)
        class_names = json.loads(metadata["ganedit.class_names"]) if "ganedit.class_names" in metadata else None
        provenance = json.loads(metadata.get("ganedit.provenance", "{}"))
        extra = json.loads(metadata.get("ganedit.extra", "{}"))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata ({error})") from None
    return ModelBundle(
        generator=generator,
        discriminator=discriminator,
        format=FORMAT_NAME,
        source=str(path),
        class_names=class_names,
        metadata={"provenance": provenance, **extra},
    )


def _rebuild(path: Path, prefix: str, spec: dict, tensors: dict) -> torch.nn.Module:
    module = build(spec["arch"], spec["config"])
    state = {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}
    load_exact_state(module, state, str(path))
    return module.eval()
