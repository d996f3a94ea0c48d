"""NVIDIA StyleGAN2 networks as plain tensors: `G_ema.<name>` and `D.<name>` in a safetensors file, with
each network's constructor arguments as JSON metadata (`G_ema_init_kwargs`, `D_init_kwargs`).

The names are those of `Generator.state_dict()` / `Discriminator.state_dict()` in NVlabs/stylegan2-ada-pytorch
(`training/networks.py`), FIR filter buffers included, and the arguments are what their constructors take,
so that `Generator(**init_kwargs).load_state_dict(tensors)` rebuilds the network in NVIDIA's code. The
conformance data's `*.state.safetensors` files have this layout. It is what remains of a network pickle
without the Python source a pickle carries (which ganedit neither executes nor ships).

ganedit writes it (`ganedit export --to nvidia-state`) and reads it back: NVIDIA's constructors derive the
channel widths from `channel_base` and `channel_max` and default what the arguments leave out.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ganedit.errors import CheckpointFormatError
from ganedit.generators.formats.bundle import ModelBundle, plain_state
from ganedit.generators.formats.nvidia_pickle import _without_filters
from ganedit.generators.ops import setup_filter
from ganedit.generators.registry import build, load_exact_state
from ganedit.generators.stylegan2 import (
    Conv2dLayer,
    DiscriminatorBlock,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
    SynthesisBlock,
    SynthesisLayer,
    block_resolutions,
)
from ganedit.store.atomic import atomic_write
from ganedit.store.checkpoint import read_header, read_tensors

FORMAT = "stylegan2 (nvidia state .safetensors)"
NETWORKS = {"G_ema": "generator", "D": "discriminator"}  # tensor prefix -> role; metadata `{prefix}_init_kwargs`
FIR_FILTER = [1.0, 3.0, 3.0, 1.0]  # NVIDIA's resample_filter: some of its layers always use it, whatever is asked
# The layers in which NVIDIA registers its FIR filter as a persistent buffer, `resample_filter` (ganedit's
# layers of the same names build theirs from the config instead).
FILTERED_LAYERS = (SynthesisBlock, SynthesisLayer, DiscriminatorBlock, Conv2dLayer)
# NVIDIA's constructor defaults, for arguments the metadata leaves out.
MAPPING_LAYERS, MAPPING_LR_MULTIPLIER = 8, 0.01
CHANNEL_BASE, CHANNEL_MAX = 32768, 512
MBSTD_GROUP_SIZE, MBSTD_NUM_CHANNELS = 4, 1
# The constructor arguments ganedit reads: per level of nesting, argument -> None (any value) or the one value
# ganedit supports. num_fp16_res, fp16_channels_last, w_avg_beta and freeze_layers only change how NVIDIA's
# code runs or trains (ganedit computes in float32).
GENERATOR_ARGUMENTS = {
    "z_dim": None, "c_dim": None, "w_dim": None, "img_resolution": None, "img_channels": None,
    "mapping_kwargs": {"num_layers": None, "lr_multiplier": None, "w_avg_beta": None},
    "synthesis_kwargs": {"channel_base": None, "channel_max": None, "num_fp16_res": None, "conv_clamp": None,
                         "fp16_channels_last": None, "architecture": "skip", "resample_filter": FIR_FILTER},
}  # fmt: skip
DISCRIMINATOR_ARGUMENTS = {
    "c_dim": None, "img_resolution": None, "img_channels": None, "architecture": "resnet", "channel_base": None,
    "channel_max": None, "num_fp16_res": None, "conv_clamp": None, "cmap_dim": None,
    "block_kwargs": {"freeze_layers": None, "fp16_channels_last": None, "resample_filter": FIR_FILTER},
    "mapping_kwargs": {"num_layers": None, "lr_multiplier": None},
    "epilogue_kwargs": {"mbstd_group_size": None, "mbstd_num_channels": None},
}  # fmt: skip


def nvidia_state_refusal(generator: StyleGAN2Generator, discriminator: StyleGAN2Discriminator | None) -> str | None:
    """Why NVIDIA's Generator / Discriminator cannot hold these networks, or None."""
    if generator.config.class_w_avg:
        return (
            "NVIDIA's Generator has one truncation centre, this generator one per class (mapping.w_avg_per_class, "
            "from merge)"
        )
    for role, network in (("generator", generator), ("discriminator", discriminator)):
        if network is None:
            continue
        if network.config.resample_filter != FIR_FILTER:
            return (
                f"NVIDIA's networks resample with the FIR filter {FIR_FILTER}, this {role} with "
                f"{network.config.resample_filter}"
            )
        if _channel_rule(network.config.channels) is None:
            return (
                f"NVIDIA's networks derive their widths as min(channel_base // resolution, channel_max), and this "
                f"{role}'s widths {network.config.channels} (from 4 px up) follow no such rule"
            )
    return None


def nvidia_init_kwargs(network: StyleGAN2Generator | StyleGAN2Discriminator) -> dict:
    """The constructor arguments of NVIDIA's Generator or Discriminator that build `network` (one that
    nvidia_state_refusal accepts), with num_fp16_res 0: float32 throughout, as ganedit computes."""
    config = network.config
    channel_base, channel_max = _channel_rule(config.channels)
    sizes = {"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
             "conv_clamp": config.conv_clamp}  # fmt: skip
    mapping = {"num_layers": config.mapping_layers, "lr_multiplier": config.mapping_lr_multiplier}
    images = {"img_resolution": config.img_resolution, "img_channels": config.img_channels}
    if isinstance(network, StyleGAN2Generator):
        return {"z_dim": config.z_dim, "c_dim": config.c_dim, "w_dim": config.w_dim, **images,
                "mapping_kwargs": mapping, "synthesis_kwargs": sizes}  # fmt: skip
    return {
        "c_dim": config.c_dim,
        **images,
        "architecture": "resnet",
        **sizes,
        "cmap_dim": config.cmap_dim,
        **({"mapping_kwargs": mapping} if config.c_dim else {}),
        "epilogue_kwargs": {
            "mbstd_group_size": config.mbstd_group_size,
            "mbstd_num_channels": config.mbstd_num_channels,
        },
    }


def nvidia_state(network: StyleGAN2Generator | StyleGAN2Discriminator) -> dict[str, torch.Tensor]:
    """`network`'s tensors under NVIDIA's names: ganedit's state dict plus NVIDIA's filter buffers."""
    state = plain_state(network)
    for name, layer in network.named_modules():
        if isinstance(layer, FILTERED_LAYERS):
            state[f"{name}.resample_filter"] = setup_filter(FIR_FILTER)
    return dict(sorted(state.items()))


def write_nvidia_state(
    path: Path, generator: StyleGAN2Generator, discriminator: StyleGAN2Discriminator | None
) -> dict[str, dict]:
    """Write the networks to `path` (safetensors) atomically; return the init kwargs it records, per prefix."""
    networks = {"G_ema": generator, "D": discriminator}
    tensors, kwargs = {}, {}
    for prefix, network in networks.items():
        if network is not None:
            tensors.update((f"{prefix}.{name}", tensor) for name, tensor in nvidia_state(network).items())
            kwargs[prefix] = nvidia_init_kwargs(network)
    metadata = {f"{prefix}_init_kwargs": json.dumps(value) for prefix, value in kwargs.items()}
    atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))
    return kwargs


def is_nvidia_state(metadata: dict[str, str]) -> bool:
    """Whether a safetensors header's metadata is that of an NVIDIA state file."""
    return "G_ema_init_kwargs" in metadata


def read_nvidia_state(path: Path) -> ModelBundle:
    """Read an NVIDIA state file: the generator from `G_ema.*`, the discriminator from `D.*` (if any)."""
    metadata, shapes = read_header(path)
    modules, kwargs = {}, {}
    for prefix, role in NETWORKS.items():
        key = f"{prefix}_init_kwargs"
        if key not in metadata:
            continue
        try:
            kwargs[prefix] = json.loads(metadata[key])
        except (ValueError, RecursionError) as error:
            raise CheckpointFormatError(f"{path}: {key} is not valid JSON ({error}); export the model again") from None
        where = f"{path} ({prefix})"
        arguments = GENERATOR_ARGUMENTS if prefix == "G_ema" else DISCRIMINATOR_ARGUMENTS
        _check_arguments(kwargs[prefix], arguments, where)
        config = (_generator_config if prefix == "G_ema" else _discriminator_config)(kwargs[prefix], where)
        state = _without_filters(read_tensors(path, prefix), FIR_FILTER, path)
        arch = StyleGAN2Generator.arch if prefix == "G_ema" else StyleGAN2Discriminator.arch
        modules[role] = build(arch, config, where, {name: tensor.shape for name, tensor in state.items()})
        load_exact_state(modules[role], state, where)
    strays = [name for name in shapes if not name.startswith(tuple(f"{prefix}." for prefix in kwargs))]
    if strays:
        raise CheckpointFormatError(
            f"{path}: tensor {strays[0]!r} belongs to no network the metadata describes ({', '.join(kwargs)})"
        )
    return ModelBundle(
        generator=modules["generator"].eval(),
        discriminator=modules["discriminator"].eval() if "discriminator" in modules else None,
        format=FORMAT,
        source=str(path),
        metadata={f"{prefix}_init_kwargs": value for prefix, value in kwargs.items()},
    )


def _generator_config(kwargs: dict, where: str) -> dict:
    mapping, synthesis = kwargs.get("mapping_kwargs", {}), kwargs.get("synthesis_kwargs", {})
    resolution = _required(kwargs, "img_resolution", where)
    return {
        "z_dim": _required(kwargs, "z_dim", where),
        "w_dim": _required(kwargs, "w_dim", where),
        "c_dim": _required(kwargs, "c_dim", where),
        "img_resolution": resolution,
        "img_channels": _required(kwargs, "img_channels", where),
        "channels": _channels(synthesis, resolution),
        "mapping_layers": mapping.get("num_layers", MAPPING_LAYERS),
        "mapping_lr_multiplier": mapping.get("lr_multiplier", MAPPING_LR_MULTIPLIER),
        "conv_clamp": synthesis.get("conv_clamp"),
        "resample_filter": FIR_FILTER,
    }


def _discriminator_config(kwargs: dict, where: str) -> dict:
    mapping, epilogue = kwargs.get("mapping_kwargs", {}), kwargs.get("epilogue_kwargs", {})
    resolution, c_dim = _required(kwargs, "img_resolution", where), _required(kwargs, "c_dim", where)
    channels = _channels(kwargs, resolution)
    cmap_dim = kwargs.get("cmap_dim")
    if cmap_dim is None:  # NVIDIA's default: the 4 px width
        cmap_dim = channels[0]
    return {
        "c_dim": c_dim,
        "img_resolution": resolution,
        "img_channels": _required(kwargs, "img_channels", where),
        "channels": channels,
        "cmap_dim": cmap_dim if c_dim else 0,
        "mapping_layers": mapping.get("num_layers", MAPPING_LAYERS) if c_dim else 0,
        "mapping_lr_multiplier": mapping.get("lr_multiplier", MAPPING_LR_MULTIPLIER),
        "mbstd_group_size": epilogue.get("mbstd_group_size", MBSTD_GROUP_SIZE),
        "mbstd_num_channels": epilogue.get("mbstd_num_channels", MBSTD_NUM_CHANNELS),
        "conv_clamp": kwargs.get("conv_clamp"),
        "resample_filter": FIR_FILTER,
    }


def _channels(sizes: dict, resolution: int) -> list[int]:
    """NVIDIA's widths from 4 px up: min(channel_base // res, channel_max)."""
    base, most = sizes.get("channel_base", CHANNEL_BASE), sizes.get("channel_max", CHANNEL_MAX)
    return [min(base // res, most) for res in block_resolutions(resolution)]


def _channel_rule(channels: list[int]) -> tuple[int, int] | None:
    """(channel_base, channel_max) that NVIDIA's rule turns into `channels` (widths from 4 px up), or None.

    The smallest channel_base that gives every resolution at least its width is the only candidate: a larger
    one that also fits would give the same widths.
    """
    resolutions = [4 << index for index in range(len(channels))]
    channel_max = max(channels)
    channel_base = max(width * res for width, res in zip(channels, resolutions, strict=True))
    fits = all(min(channel_base // res, channel_max) == width for width, res in zip(channels, resolutions, strict=True))
    return (channel_base, channel_max) if fits else None


def _check_arguments(kwargs: object, arguments: dict, where: str, prefix: str = "") -> None:
    """Refuse constructor arguments ganedit does not read, and supported ones at a value it does not support."""
    if not isinstance(kwargs, dict):
        raise CheckpointFormatError(f"{where}: {prefix or 'init_kwargs'} must be a JSON object, got {kwargs!r:.60}")
    for name, value in kwargs.items():
        if name not in arguments:
            raise CheckpointFormatError(
                f"{where}: constructor argument {prefix}{name} is not one ganedit reads ({', '.join(arguments)})"
            )
        expected = arguments[name]
        if isinstance(expected, dict):
            _check_arguments(value, expected, where, f"{prefix}{name}.")
        elif expected is not None and value != expected:
            raise CheckpointFormatError(
                f"{where}: {prefix}{name} is {value!r:.60}; ganedit reads StyleGAN2 with {name} {expected!r} only"
            )


def _required(kwargs: dict, name: str, where: str) -> object:
    if name not in kwargs:
        raise CheckpointFormatError(f"{where}: the init kwargs lack {name!r}; export the model again")
    return kwargs[name]
