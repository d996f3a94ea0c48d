"""Reader for BigGAN-deep checkpoints in the `pytorch-pretrained-biggan` format.

A model is a folder holding `config.json` and `pytorch_model.bin` (a pickled state dict of tensors,
read weights-only). The package's legacy downloads name the two files `<name>-config.json` and
`<name>-pytorch_model.bin`; given such a `.bin`, the reader looks for `<name>-config.json` beside it.
A folder written by ganedit (`write_biggan_folder`) may also hold `class_names.json`, one name per class,
which the package ignores.
"""

import itertools
import json
from dataclasses import asdict
from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError, GaneditError
from ganedit.generators.biggan_deep import BigGANDeep
from ganedit.generators.formats.bundle import ModelBundle, plain_state
from ganedit.generators.registry import build, load_exact_state
from ganedit.store.atomic import atomic_write, make_folder
from ganedit.store.safe_torch import safe_torch_load

FORMAT = "biggan-deep (pytorch-pretrained-biggan)"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
CLASS_NAMES_NAME = "class_names.json"


def _published_config(output_dim: int, mults: list[int]) -> dict:
    """config.json of a published model: blocks alternate keep-resolution / upsample, mults per pair."""
    layers = []
    for in_mult, out_mult in itertools.pairwise(mults):
        layers += [[False, in_mult, in_mult], [True, in_mult, out_mult]]
    return {
        "output_dim": output_dim,
        "z_dim": 128,
        "class_embed_dim": 128,
        "channel_width": 128,
        "num_classes": 1000,
        "layers": layers,
        "attention_layer_position": 8,
        "eps": 1e-4,
        "n_stats": 51,
    }


# The config.json files published with the package's three models (50.4M / 55.9M / 56.2M parameters).
PUBLISHED_CONFIGS = {
    "biggan-deep-128": _published_config(128, [16, 16, 8, 4, 2, 1]),
    "biggan-deep-256": _published_config(256, [16, 16, 8, 8, 4, 2, 1]),
    "biggan-deep-512": _published_config(512, [16, 16, 8, 8, 4, 2, 1, 1]),
}


def read_biggan_folder(path: Path) -> ModelBundle:
    """Load a pytorch-pretrained-biggan model from its folder, or from its `.bin` file, in eval mode.

    Parameters are left trainable; spectral-norm vectors and batch-norm statistics are buffers that the
    module never changes.
    """
    path = Path(path)
    config_path, weights_path = _locate_files(path)

    try:
        raw_config = json.loads(config_path.read_text(encoding="utf-8"))
    except RecursionError:
        raise CheckpointFormatError(
            f"{config_path}: nested too deeply to be a BigGAN-deep config; use the config.json published with the model"
        ) from None
    except ValueError as error:  # invalid JSON or UTF-8
        raise CheckpointFormatError(
            f"{config_path}: not valid JSON ({error}); use the config.json published with the model"
        ) from None
    config = BigGANDeep.Config.from_json_dict(raw_config, source=str(config_path))

    state_dict = safe_torch_load(weights_path)
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise CheckpointFormatError(
            f"{weights_path}: expected a state dict of tensors, got {type(state_dict).__name__}; "
            "use the pytorch_model.bin published with the model"
        )

    hint = f"use the config.json published with these weights, not {config_path}"
    shapes = {key: tensor.shape for key, tensor in state_dict.items()}
    generator = build(BigGANDeep.arch, asdict(config), str(weights_path), shapes, hint)
    load_exact_state(generator, state_dict, str(weights_path), hint)
    generator.eval()

    return ModelBundle(
        generator=generator,
        discriminator=None,
        format=FORMAT,
        source=str(path),
        class_names=_class_names(config_path.parent, config.num_classes),
        metadata={"config": asdict(config)},
    )


def _locate_files(path: Path) -> tuple[Path, Path]:
    """(config.json, pytorch_model.bin) for a model folder or for the path of its weights file."""
    how_to_fix = f"a pytorch-pretrained-biggan model is a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}"
    if path.is_dir():
        config_path, weights_path = path / CONFIG_NAME, path / WEIGHTS_NAME
    elif path.is_file():
        weights_path = path
        prefix = path.name[: -len(WEIGHTS_NAME)] if path.name.endswith("-" + WEIGHTS_NAME) else ""
        config_path = path.parent / (prefix + CONFIG_NAME)
        if prefix and not config_path.is_file():
            config_path = path.parent / CONFIG_NAME
    else:
        raise CheckpointFormatError(f"{path}: no such file or folder; {how_to_fix}")

    if not config_path.is_file():
        raise CheckpointFormatError(
            f"{config_path.parent}: no {config_path.name} beside the weights; {how_to_fix}: "
            "put the model's config.json there"
        )
    if not weights_path.is_file():
        raise CheckpointFormatError(
            f"{path}: no {WEIGHTS_NAME}; {how_to_fix}: put the model's weights there under that name"
        )
    return config_path, weights_path


def _class_names(folder: Path, num_classes: int) -> list[str] | None:
    """The names in the folder's class_names.json, else ImageNet's for a 1000-class model, else None."""
    path = folder / CLASS_NAMES_NAME
    if not path.is_file():
        return _imagenet_class_names() if num_classes == 1000 else None
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as error:
        raise CheckpointFormatError(f"{path}: not valid JSON ({error}); remove it or export the model again") from None
    if not (isinstance(names, list) and len(names) == num_classes and all(isinstance(name, str) for name in names)):
        raise CheckpointFormatError(
            f"{path}: expected a list of {num_classes} class names (one per class of {CONFIG_NAME}); remove it or "
            "export the model again"
        )
    return names


PACKAGE_FIRST_MULT = 16  # pytorch-pretrained-biggan's gen_z makes 16 x channel_width channels at 4x4, always


def biggan_folder_refusal(generator: BigGANDeep) -> str | None:
    """Why pytorch-pretrained-biggan's BigGAN cannot be built for this generator (even widened), or None."""
    layers = generator.config.layers
    first = layers[0][1]
    steps = _widening_steps(first)
    if steps is None or len(layers) < steps or any(layer[1:] != [first, first] for layer in layers[:steps]):
        return (
            f"pytorch-pretrained-biggan's Generator starts from {PACKAGE_FIRST_MULT} x channel_width channels at 4x4 "
            f"whatever its config says, and this model's first block takes {first} x channel_width (layers[0] is "
            f"{layers[0]}); ganedit widens a model to fit only when {PACKAGE_FIRST_MULT} / {first} is a power of "
            "two and as many leading blocks keep their width"
        )
    return None


def _widening_steps(first: int) -> int | None:
    """How many leading blocks must halve the channels to go from PACKAGE_FIRST_MULT to `first` (None: cannot)."""
    ratio, steps = PACKAGE_FIRST_MULT // first if first else 0, 0
    if ratio * first != PACKAGE_FIRST_MULT or ratio & (ratio - 1):
        return None
    while ratio > 1:
        ratio //= 2
        steps += 1
    return steps


def package_layout(generator: BigGANDeep) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config and state dict of `generator` as pytorch-pretrained-biggan builds it: the same network, or,
    when its first block is narrower than the package's fixed 16 x channel_width, the same network widened
    with zero channels.

    A block keeps the first `out` channels of its input on the skip path and (as the package does) halves
    when in != out. So the first k blocks (in = out = f x ch, k = log2(16 / f)) become in = 16 / 2^j, out =
    16 / 2^(j+1) (x ch), j = 0..k-1: gen_z makes 16 x ch channels whose extra ones are zero rows, each
    widened block's extra channels (input, bottleneck, output) have zero weights, zero biases and neutral
    batch-norm statistics, and every spectral norm's u and v are padded with zeros, so sigma is unchanged.
    The extra channels then stay exactly zero and are never read: the images are the model's own.
    """
    config, state = asdict(generator.config), plain_state(generator)
    first = config["layers"][0][1]
    steps = _widening_steps(first) if first != PACKAGE_FIRST_MULT else 0
    if steps:
        width = config["channel_width"]
        real = first * width
        state = dict(state)
        _widen_linear_out(state, "generator.gen_z", real, PACKAGE_FIRST_MULT * width, positions=16)
        for j in range(steps):
            mult_in, mult_out = PACKAGE_FIRST_MULT >> j, PACKAGE_FIRST_MULT >> (j + 1)
            config["layers"][j] = [config["layers"][j][0], mult_in, mult_out]
            _widen_block(state, f"generator.layers.{j}", mult_in * width, mult_out * width)
    return config, state


def _widen_block(state: dict, prefix: str, channels_in: int, channels_out: int) -> None:
    """Block `prefix` widened to channels_in -> channels_out (bottleneck channels_in / 4), its own in the corner."""
    wide_middle = channels_in // 4
    _widen_norm(state, f"{prefix}.bn_0", channels_in)
    _widen_conv(state, f"{prefix}.conv_0", wide_middle, channels_in)
    for index in (1, 2, 3):
        _widen_norm(state, f"{prefix}.bn_{index}", wide_middle)
    _widen_conv(state, f"{prefix}.conv_1", wide_middle, wide_middle)
    _widen_conv(state, f"{prefix}.conv_2", wide_middle, wide_middle)
    _widen_conv(state, f"{prefix}.conv_3", channels_out, wide_middle)


def _pad(tensor: torch.Tensor, shape: list[int], fill: float = 0.0) -> torch.Tensor:
    """`tensor` in the leading corner of a `shape` tensor filled with `fill`."""
    out = torch.full(shape, fill, dtype=tensor.dtype)
    out[tuple(slice(0, size) for size in tensor.shape)] = tensor
    return out


def _widen_conv(state: dict, prefix: str, out_channels: int, in_channels: int) -> None:
    weight = state[f"{prefix}.weight_orig"]  # [O, I, k, k]
    kernel = list(weight.shape[2:])
    state[f"{prefix}.weight_orig"] = _pad(weight, [out_channels, in_channels, *kernel])
    state[f"{prefix}.bias"] = _pad(state[f"{prefix}.bias"], [out_channels])
    state[f"{prefix}.weight_u"] = _pad(state[f"{prefix}.weight_u"], [out_channels])
    v = state[f"{prefix}.weight_v"].view(weight.shape[1], *kernel)  # v indexes W.reshape(O, -1)'s columns
    state[f"{prefix}.weight_v"] = _pad(v, [in_channels, *kernel]).flatten()


def _widen_norm(state: dict, prefix: str, channels: int) -> None:
    for name, fill in (("running_means", 0.0), ("running_vars", 1.0)):
        stats = state[f"{prefix}.{name}"]  # [n_stats, C]
        state[f"{prefix}.{name}"] = _pad(stats, [stats.shape[0], channels], fill)
    for linear in ("scale", "offset"):  # condition -> per-channel gain and bias (no bias of their own)
        _widen_linear_out(state, f"{prefix}.{linear}", state[f"{prefix}.{linear}.weight_u"].numel(), channels)


def _widen_linear_out(state: dict, prefix: str, real: int, channels: int, positions: int = 1) -> None:
    """A spectrally normalised linear layer's outputs widened from `real` to `channels` per position; gen_z's
    outputs are laid out position-major (4 x 4 positions, then channels), as the package reshapes them."""
    weight = state[f"{prefix}.weight_orig"]  # [positions * real, in]
    wide = weight.new_zeros([positions, channels, weight.shape[1]])
    wide[:, :real] = weight.view(positions, real, -1)
    state[f"{prefix}.weight_orig"] = wide.view(positions * channels, -1)
    u = state[f"{prefix}.weight_u"].new_zeros([positions, channels])
    u[:, :real] = state[f"{prefix}.weight_u"].view(positions, real)
    state[f"{prefix}.weight_u"] = u.flatten()
    if f"{prefix}.bias" in state:
        bias = state[f"{prefix}.bias"].new_zeros([positions, channels])
        bias[:, :real] = state[f"{prefix}.bias"].view(positions, real)
        state[f"{prefix}.bias"] = bias.flatten()


def write_biggan_folder(folder: Path, generator: BigGANDeep, class_names: list[str] | None) -> list[Path]:
    """Write `generator` as a pytorch-pretrained-biggan model folder, atomically file by file: config.json and
    pytorch_model.bin (what `BigGAN.from_pretrained(folder)` loads), and class_names.json when the model has
    names. Returns the files written."""
    names_path = folder / CLASS_NAMES_NAME
    if class_names is None and names_path.exists():
        raise GaneditError(
            f"{names_path} belongs to another model (this one has no class names) and would name its classes when "
            "the folder is read; remove it, or export into a new folder"
        )
    make_folder(folder)
    layout, state = package_layout(generator)  # widened with zero channels where the package needs it
    config = json.dumps(layout, indent=2, sort_keys=True) + "\n"  # as the package writes it
    files = [atomic_write(folder / CONFIG_NAME, lambda temporary: Path(temporary).write_text(config, encoding="utf-8"))]
    files.append(atomic_write(folder / WEIGHTS_NAME, lambda temporary: torch.save(state, temporary)))
    if class_names is not None:
        names = json.dumps(list(class_names), indent=1) + "\n"
        files.append(atomic_write(names_path, lambda temporary: Path(temporary).write_text(names, encoding="utf-8")))
    return files


def _imagenet_class_names() -> list[str]:
    """The 1000 ImageNet category names (BigGAN class k is ImageNet class k), bundled with torchvision."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
