"""ganedit's own checkpoint format: safetensors plus JSON metadata, written atomically.

Layout of a file:
- tensors `G.<name>` (the generator's state dict) and, when present, `D.<name>` (the discriminator's);
- string metadata (every value JSON):
  `ganedit.format_version`, `ganedit.generator` ({"arch", "config"}), `ganedit.discriminator` (same,
  or absent), `ganedit.class_names` (list, or absent), `ganedit.provenance` (see provenance.py),
  `ganedit.extra` (format-specific facts carried over from the source, e.g. training arguments).

This module reads and writes tensors and metadata only; rebuilding modules from a file's recorded
architecture belongs to the generators (ganedit.generators.formats.ganedit_file). Loading never
executes anything (safetensors).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ganedit.errors import CheckpointFormatError
from ganedit.store.atomic import atomic_write

FORMAT_VERSION = "1"
FORMAT_NAME = "ganedit (safetensors)"
NETWORKS = {"G": "ganedit.generator", "D": "ganedit.discriminator"}


@dataclass
class StoredNetwork:
    spec: dict  # {"arch": ..., "config": {...}}
    state: dict[str, torch.Tensor]


@dataclass
class StoredCheckpoint:
    networks: dict[str, StoredNetwork]  # "G" and, when present, "D"
    class_names: list[str] | None
    provenance: dict
    extra: dict


def write_checkpoint(
    path: Path | str,
    networks: dict[str, StoredNetwork],
    class_names: list[str] | None = None,
    provenance: dict | None = None,
    extra: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write the networks ("G", optionally "D") to `path` atomically; return the path.

    Floating-point tensors are stored in `dtype`. The file appears under its final name only once it
    is complete: it is written to a temporary file in the same folder, flushed to disk and renamed.
    """
    tensors = {}
    metadata = {"ganedit.format_version": FORMAT_VERSION, "ganedit.provenance": json.dumps(provenance or {})}
    for prefix, network in networks.items():
        for name, tensor in network.state.items():
            tensor = tensor.detach().to("cpu")
            tensors[f"{prefix}.{name}"] = (
                (tensor.to(dtype) if tensor.is_floating_point() else tensor).contiguous().clone()
            )
        metadata[NETWORKS[prefix]] = json.dumps(network.spec)
    if class_names is not None:
        metadata["ganedit.class_names"] = json.dumps(list(class_names))
    if extra:
        metadata["ganedit.extra"] = json.dumps(extra)
    return atomic_write(Path(path), lambda temporary: save_file(tensors, temporary, metadata=metadata))


def is_ganedit_checkpoint(path: Path) -> bool:
    """Whether `path` is a safetensors file carrying ganedit's metadata."""
    try:
        with safe_open(str(path), "pt") as stream:
            return "ganedit.format_version" in (stream.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def read_checkpoint(path: Path) -> StoredCheckpoint:
    """The tensors and metadata of a file written by `write_checkpoint` (one-line errors otherwise)."""
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
        networks = {
            prefix: StoredNetwork(
                json.loads(metadata[key]),
                {name[len(prefix) + 1 :]: t for name, t in tensors.items() if name.startswith(prefix + ".")},
            )
            for prefix, key in NETWORKS.items()
            if key in metadata or prefix == "G"
        }
        class_names = json.loads(metadata["ganedit.class_names"]) if "ganedit.class_names" in metadata else None
        provenance = json.loads(metadata.get("ganedit.provenance", "{}"))
        extra = json.loads(metadata.get("ganedit.extra", "{}"))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata ({error})") from None
    return StoredCheckpoint(networks, class_names, provenance, extra)
