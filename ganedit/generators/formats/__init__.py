"""Reading every checkpoint format ganedit supports, detected from the content, not the extension.

| what the bytes are                         | format                                            |
|--------------------------------------------|---------------------------------------------------|
| a folder with config.json                  | BigGAN-deep, pytorch-pretrained-biggan            |
| safetensors with ganedit metadata          | ganedit's own                                     |
| safetensors with G_ema_init_kwargs         | StyleGAN2, NVIDIA state (`ganedit export`)        |
| a torch.save file with BigGAN keys         | BigGAN-deep (`pytorch_model.bin`, config.json beside it) |
| a torch.save file with g / g_ema           | StyleGAN2, rosinality                             |
| a plain pickle                             | StyleGAN2, NVIDIA network pickle                  |

MODEL arguments are a path (file or folder) or a zoo name (`ganedit zoo list`).
"""

import itertools
import os
from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError, GaneditError
from ganedit.generators.formats.bundle import ModelBundle
from ganedit.generators.registry import file_data_errors

SUPPORTED = (
    "BigGAN-deep folders (config.json + pytorch_model.bin), StyleGAN2 rosinality .pt, "
    "StyleGAN2 NVIDIA .pkl or state .safetensors, ganedit .safetensors"
)
# torch.save's legacy (non-zip) files start with a pickled magic number.
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."
MAX_SAFETENSORS_HEADER = 100_000_000  # the largest header safetensors itself reads
IMAGE_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"RIFF": "a RIFF (WebP/WAV) file",
    b"BM": "a BMP image",
}


def load_model(
    model: str | Path,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
    allow_nonfinite: bool | None = None,
) -> ModelBundle:
    """Load a model by path or zoo name: generator, discriminator (or None), format, classes, metadata.

    Modules are returned in eval mode on `device`. Weights holding NaN or infinity are refused unless
    `allow_nonfinite` (None: the environment's GANEDIT_ALLOW_NONFINITE=1, which --allow-nonfinite sets).
    """
    path = resolve_model_path(model, offline=offline)
    if allow_nonfinite is None:
        allow_nonfinite = os.environ.get("GANEDIT_ALLOW_NONFINITE", "").lower() in ("1", "true", "yes")
    bundle = read_path(path, allow_nonfinite=allow_nonfinite)
    bundle.source = str(model)
    bundle.generator.to(device).eval()
    if bundle.discriminator is not None:
        bundle.discriminator.to(device).eval()
    return bundle


def load_generator(
    model: str | Path,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
    allow_nonfinite: bool | None = None,
) -> torch.nn.Module:
    """The generator of a model (path or zoo name), ready in eval mode on `device`."""
    return load_model(model, device, offline, allow_nonfinite).generator


def load_discriminator(
    model: str | Path,
    device: str | torch.device = "cpu",
    offline: bool | None = None,
    allow_nonfinite: bool | None = None,
) -> torch.nn.Module:
    """The discriminator of a model (path or zoo name), ready in eval mode on `device`."""
    bundle = load_model(model, device, offline, allow_nonfinite)
    if bundle.discriminator is None:
        raise GaneditError(
            f"{model}: this checkpoint ({bundle.format}) holds no discriminator; use a training checkpoint "
            "(rosinality with 'd', NVIDIA .pkl with 'D') or a ganedit file written with one"
        )
    return bundle.discriminator


def resolve_model_path(model: str | Path, offline: bool | None = None) -> Path:
    """A local path for MODEL: the path itself if it exists, else a zoo model (downloaded if needed)."""
    from ganedit.store import zoo

    path = Path(model).expanduser()
    if path.exists():
        return path
    name = str(model)
    if name in zoo.REGISTRY:
        if zoo.REGISTRY[name].kind == "judge":
            raise GaneditError(f"{name} is a judge (a classifier), not a generator; use it with --classifier toy")
        if zoo.REGISTRY[name].kind == "clip":
            raise GaneditError(f"{name} is a CLIP model, not a generator; use it with text-unlearn --clip {name}")
        return zoo.resolve(name, offline=offline)
    if "/" in name or "\\" in name or path.suffix:
        raise GaneditError(
            f"{name}: no such file or folder; check the path (or give a zoo name, see `ganedit zoo list`)"
        )
    zoo.lookup(name)  # raises with close matches
    raise AssertionError("unreachable")


def read_path(path: Path, allow_nonfinite: bool = False) -> ModelBundle:
    """Read a local checkpoint file or folder, dispatching on its content; weights must be finite unless
    `allow_nonfinite`. Whatever is wrong with the file is a one-line GaneditError naming it."""
    try:
        with file_data_errors(str(path)):
            bundle = _read_by_content(path)
    except OSError as error:
        raise GaneditError(
            f"{path}: cannot read ({error.strerror or error}); check that it exists and is readable"
        ) from None
    if not allow_nonfinite:
        _refuse_nonfinite(bundle, path)
    return bundle


def _read_by_content(path: Path) -> ModelBundle:
    from ganedit.generators.formats.biggan import read_biggan_folder
    from ganedit.generators.formats.ganedit_file import read_ganedit_checkpoint
    from ganedit.generators.formats.nvidia_pickle import read_nvidia_pickle
    from ganedit.generators.formats.nvidia_state import is_nvidia_state, read_nvidia_state
    from ganedit.generators.formats.rosinality import read_rosinality
    from ganedit.store.checkpoint import read_header

    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointFormatError(
                f"{path}: a folder without config.json; a BigGAN-deep model folder holds config.json and "
                "pytorch_model.bin (as pytorch-pretrained-biggan publishes them)"
            )
        return read_biggan_folder(path)
    with open(path, "rb") as stream:
        head = stream.read(64)
    if not head:
        raise CheckpointFormatError(f"{path}: the file is empty (truncated download?); download it again")
    if _looks_like_safetensors(head):
        header_length, size = int.from_bytes(head[:8], "little"), path.stat().st_size
        if header_length > size - 8:
            raise CheckpointFormatError(
                f"{path}: the safetensors file is truncated or damaged (its header alone needs {header_length + 8:,} "
                f"bytes, the file has {size:,}); download it again"
            )
        metadata, _ = read_header(path)
        if "ganedit.format_version" in metadata:
            return read_ganedit_checkpoint(path)
        if is_nvidia_state(metadata):
            return read_nvidia_state(path)
        raise CheckpointFormatError(
            f"{path}: a safetensors file without ganedit metadata, so its architecture is unknown; "
            "convert the original checkpoint with `ganedit convert`"
        )
    if head.startswith(b"PK\x03\x04") or head.startswith(LEGACY_TORCH_MAGIC):
        if _is_biggan_state_dict(path):
            return read_biggan_folder(path)
        return read_rosinality(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return read_nvidia_pickle(path)
    for signature, what in IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            raise CheckpointFormatError(f"{path}: this is {what}, not a model checkpoint; supported: {SUPPORTED}")
    raise CheckpointFormatError(f"{path}: not a checkpoint format ganedit can read; supported: {SUPPORTED}")


def _looks_like_safetensors(head: bytes) -> bool:
    """safetensors: an 8-byte little-endian header length (at most MAX_SAFETENSORS_HEADER), then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= MAX_SAFETENSORS_HEADER


def _refuse_nonfinite(bundle: ModelBundle, path: Path) -> None:
    """Refuse weights holding NaN or infinity, naming the first such tensor (parameters before buffers, which
    may be derived from them)."""
    for role, module in (("generator", bundle.generator), ("discriminator", bundle.discriminator)):
        if module is None:
            continue
        for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                what = "NaN" if torch.isnan(tensor).any() else "infinity"
                raise CheckpointFormatError(
                    f"{path}: the {role} tensor {name} holds {what}, so the model cannot generate (a diverged "
                    "training run or a damaged file); pass --allow-nonfinite to load it anyway (to inspect it)"
                )


def _is_biggan_state_dict(path: Path) -> bool:
    """Peek at a torch.save file (memory-mapped, weights-only): does it hold BigGAN-deep keys?"""
    import argparse
    import zipfile

    from ganedit.store.safe_torch import safe_torch_load

    contents = safe_torch_load(path, allowed_globals=(argparse.Namespace,), mmap=zipfile.is_zipfile(path))
    return (
        isinstance(contents, dict)
        and "embeddings.weight" in contents
        and any(str(key).startswith("generator.") for key in contents)
    )
