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
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ganedit.errors import CheckpointFormatError
from ganedit.store.atomic import atomic_write
from ganedit.store.safe_torch import first_line

FORMAT_VERSION = "1"
FORMAT_NAME = "ganedit (safetensors)"
NETWORKS = {"G": "ganedit.generator", "D": "ganedit.discriminator"}
DAMAGED = "the safetensors file is truncated or damaged"


@dataclass
class StoredNetwork:
    spec: dict  # {"arch": ..., "config": {...}}
    state: dict[str, torch.Tensor]  # what `write_checkpoint` writes; `read_checkpoint` leaves it to `read_tensors`
    shapes: dict[str, list[int]] = field(default_factory=dict)  # read: the file's tensor shapes (its header)


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


def read_header(path: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """The metadata and the tensor shapes of a safetensors file, from its header: no tensor is read.

    A file that safetensors cannot open (cut short, or its header damaged) is a one-line error.
    """
    try:
        with safe_open(str(path), "pt") as stream:
            metadata = stream.metadata() or {}
            shapes = {name: list(stream.get_slice(name).get_shape()) for name in stream.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointFormatError(f"{path}: {DAMAGED} ({first_line(error)}); download it again") from None
    return metadata, shapes


def read_checkpoint(path: Path) -> StoredCheckpoint:
    """The metadata of a file written by `write_checkpoint`, checked, and its networks' specs and tensor
    shapes; their tensors are not read yet (`read_tensors`), so that the specs can be checked first."""
    metadata, shapes = read_header(path)
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
    if NETWORKS["G"] not in metadata:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata (no {NETWORKS['G']} entry)")
    networks = {}
    for prefix, key in NETWORKS.items():
        if key in metadata:
            spec = _json_entry(metadata, key, path, {})
            if not (
                isinstance(spec, dict) and isinstance(spec.get("arch"), str) and isinstance(spec.get("config"), dict)
            ):
                raise CheckpointFormatError(
                    f"{path}: damaged ganedit metadata ({key} must be an object with 'arch' and 'config', got "
                    f"{_shown(spec)})"
                )
            own = {name[len(prefix) + 1 :]: shape for name, shape in shapes.items() if name.startswith(prefix + ".")}
            networks[prefix] = StoredNetwork(spec, {}, own)
    strays = [name for name in shapes if not any(name.startswith(prefix + ".") for prefix in networks)]
    if strays:
        raise CheckpointFormatError(
            f"{path}: damaged ganedit file: tensor {strays[0]!r} belongs to no network its metadata records "
            f"({', '.join(NETWORKS[prefix] for prefix in networks)})"
        )
    class_names = _json_entry(metadata, "ganedit.class_names", path, None)
    if class_names is not None and not (
        isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)
    ):
        raise CheckpointFormatError(
            f"{path}: damaged ganedit metadata (ganedit.class_names must be a list of strings, got "
            f"{_shown(class_names)})"
        )
    provenance = _json_entry(metadata, "ganedit.provenance", path, {})
    extra = _json_entry(metadata, "ganedit.extra", path, {})
    for key, value in (("ganedit.provenance", provenance), ("ganedit.extra", extra)):
        if not isinstance(value, dict):
            raise CheckpointFormatError(
                f"{path}: damaged ganedit metadata ({key} must be an object, got {_shown(value)})"
            )
    problem = _recipe_problem(provenance.get("recipe", {}))
    if problem:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata (the provenance's recipe {problem})")
    return StoredCheckpoint(networks, class_names, provenance, extra)


def read_tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of one network ("G" or "D") of a ganedit file, without the prefix."""
    try:
        with safe_open(str(path), "pt") as stream:
            return {
                name[len(prefix) + 1 :]: stream.get_tensor(name)
                for name in stream.keys()
                if name.startswith(prefix + ".")
            }
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointFormatError(f"{path}: {DAMAGED} ({first_line(error)}); download it again") from None


def _json_entry(metadata: dict[str, str], key: str, path: Path, default: object) -> object:
    """The JSON value of a metadata entry (`default` when absent), or a one-line error."""
    if key not in metadata:
        return default
    try:
        return json.loads(metadata[key])
    except RecursionError:
        raise CheckpointFormatError(
            f"{path}: damaged ganedit metadata ({key} is nested too deeply to be ganedit's); write the file again"
        ) from None
    except ValueError as error:
        raise CheckpointFormatError(f"{path}: damaged ganedit metadata ({key} is not valid JSON: {error})") from None


def _recipe_problem(recipe: object) -> str | None:
    """What is wrong with the recipe a file's provenance records, or None. It is written as TOML by `ganedit
    info --recipe` (values, lists and one level of tables; null only as a table's value), and `ganedit eval`
    reads its eval_samples and settings.seed."""
    from ganedit.settings import SEED_RANGE

    if not isinstance(recipe, dict):
        return f"must be an object, got {_shown(recipe)}"
    settings = recipe.get("settings", {})
    if not isinstance(settings, dict):
        return f"settings must be an object, got {_shown(settings)}"
    for table, where in ((recipe, ""), (settings, "settings.")):
        for key, value in table.items():
            if not (value is None or (table is recipe and key == "settings") or _toml_writable(value)):
                return f"{where}{key} cannot be written as TOML: {_shown(value)}"
    samples = recipe.get("eval_samples")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        return f"eval_samples must be a positive integer, got {_shown(samples)}"
    seed = settings.get("seed")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]
    ):
        return f"settings.seed must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {_shown(seed)}"
    return None


def _toml_writable(value: object) -> bool:
    """A TOML value: a string, a number, a boolean, or a list or inline table of them (no null)."""
    if isinstance(value, (str, int, float)):  # bool is an int
        return True
    if isinstance(value, list):
        return all(_toml_writable(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _toml_writable(item) for key, item in value.items())
    return False


def _shown(value: object, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
