"""StyleGAN2 checkpoints of rosinality/stylegan2-pytorch (`torch.save` of a dict), read without their code.

Training checkpoints hold `g`, `d`, `g_ema`, optimiser states, `args` (an argparse.Namespace) and
`ada_aug_p`; converted ones hold `g_ema` and `latent_avg`. The generator is built from `g_ema` (or `g`
when a checkpoint has no EMA copy), the discriminator from `d` when present. Every size (resolution,
channel widths, style width, mapping depth, FIR taps) is read from the tensors themselves.

Tensors are renamed into ganedit's StyleGAN2 layout (see ganedit.generators.stylegan2) and reshaped; no
value changes, because rosinality and NVIDIA store weights the same way. Two things are not in the
tensors: the mapping learning-rate multiplier (rosinality's `lr_mlp`, 0.01 in its Generator and never
changed by its training script) and, in checkpoints without `latent_avg`, the truncation centre, which
is then estimated the way rosinality's own `mean_latent` does it (W_AVG_SAMPLES z's from a fixed seed)
and recorded as such in the bundle's metadata.
"""

import argparse
import dataclasses
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ganedit.errors import ArchitectureMismatchError, CheckpointFormatError
from ganedit.generators.formats.bundle import ModelBundle, plain_state
from ganedit.generators.ops import filter_taps, setup_filter
from ganedit.generators.registry import build, load_exact_state
from ganedit.generators.stylegan2 import MAX_RESOLUTION, StyleGAN2Discriminator, StyleGAN2Generator
from ganedit.store.safe_torch import safe_torch_load

FORMAT = "stylegan2 (rosinality .pt)"
MAPPING_LR_MULTIPLIER = 0.01  # rosinality's lr_mlp
W_AVG_SAMPLES = 4096  # z's averaged after mapping when a checkpoint stores no latent_avg
W_AVG_SEED = 0  # seed of those z's (a CPU torch.Generator), so the estimate is reproducible
MBSTD_GROUP_SIZE, MBSTD_NUM_CHANNELS = 4, 1  # fixed in rosinality's Discriminator

# Blur kernels are stored as setup_filter(taps) * gain: x4 after the generator's upsampling, x1 before
# the discriminator's downsampling.
GENERATOR_FILTER_GAIN = 4.0
DISCRIMINATOR_FILTER_GAIN = 1.0
GENERATOR_FILTERS = re.compile(r"(convs\.\d+\.conv\.blur|to_rgbs\.\d+\.upsample)\.kernel")
DISCRIMINATOR_FILTERS = re.compile(r"convs\.\d+\.(conv2|skip)\.0\.kernel")

Reshape = Callable[[torch.Tensor], torch.Tensor]
Rule = tuple[re.Pattern, Callable[[re.Match], str], Reshape]


def read_rosinality(path: Path) -> ModelBundle:
    """Read a rosinality StyleGAN2 `.pt`: generator from g_ema (else g), discriminator from d (if any)."""
    checkpoint = safe_torch_load(path, allowed_globals=(argparse.Namespace,))
    generator_key = _generator_key(checkpoint, path)
    generator, w_avg_source = _read_generator(checkpoint[generator_key], checkpoint.get("latent_avg"), path)
    discriminator = _read_discriminator(checkpoint["d"], path) if "d" in checkpoint else None
    metadata = {"generator_weights": generator_key, "w_avg_source": w_avg_source}
    if isinstance(checkpoint.get("args"), argparse.Namespace):
        metadata["training_args"] = json.loads(json.dumps(vars(checkpoint["args"]), default=repr))
    ada_aug_p = checkpoint.get("ada_aug_p")
    if isinstance(ada_aug_p, (int, float)) or (isinstance(ada_aug_p, torch.Tensor) and ada_aug_p.numel() == 1):
        metadata["ada_aug_p"] = float(ada_aug_p)
    return ModelBundle(
        generator=generator.eval(),
        discriminator=None if discriminator is None else discriminator.eval(),
        format=FORMAT,
        source=str(path),
        metadata=metadata,
    )


def _generator_key(checkpoint: object, path: Path) -> str:
    """'g_ema' or 'g': the generator state dict a rosinality checkpoint holds."""
    for key in ("g_ema", "g"):
        state = checkpoint.get(key) if isinstance(checkpoint, dict) else None
        if isinstance(state, dict) and "input.input" in state and "style.1.weight" in state:
            return key
    found = (
        f"top-level keys {sorted(map(str, checkpoint))[:8]}"
        if isinstance(checkpoint, dict)
        else type(checkpoint).__name__
    )
    raise CheckpointFormatError(
        f"{path}: not a rosinality StyleGAN2 checkpoint (no 'g_ema' or 'g' generator with 'style.1.weight' and "
        f"'input.input'; found {found})"
    )


# ---------------------------------------------------------------------------------------------------
# Generator


def _read_generator(state: dict, latent_avg: torch.Tensor | None, path: Path) -> tuple[StyleGAN2Generator, str]:
    """The generator, and where its w_avg came from."""
    source = f"{path} (generator)"
    state = _tensors_only(state, source)
    config = _generator_config(state, source)
    renamed = _rename(state, _generator_rules(), GENERATOR_FILTERS, source)
    _check_filters(state, GENERATOR_FILTERS, config.resample_filter, GENERATOR_FILTER_GAIN, source)
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor):
            raise CheckpointFormatError(f"{path}: latent_avg is a {type(latent_avg).__name__}, not a tensor")
        renamed["mapping.w_avg"] = latent_avg.squeeze(0) if latent_avg.ndim == 2 else latent_avg
        return _build(StyleGAN2Generator.arch, config, renamed, source), "latent_avg stored in the checkpoint"
    renamed["mapping.w_avg"] = torch.zeros(config.w_dim)
    generator = _build(StyleGAN2Generator.arch, config, renamed, source)
    generator.mapping.w_avg.copy_(_mean_w(generator))
    return generator, (
        f"estimated: mean mapped w of {W_AVG_SAMPLES} z's drawn with torch seed {W_AVG_SEED} "
        "(the checkpoint stores no latent_avg)"
    )


def _generator_config(state: dict[str, torch.Tensor], source: str) -> StyleGAN2Generator.Config:
    """Sizes from the tensors: mapping depth and widths, channels per resolution, image channels, FIR taps."""
    mapping_layers = _count(state, r"style\.(\d+)\.weight", first=1, source=source)
    levels = _count(state, r"to_rgbs\.(\d+)\.conv\.weight", first=0, source=source)  # resolutions above 4 px
    channels = [_tensor(state, "input.input", source).shape[1]]
    channels += [_tensor(state, f"convs.{2 * level}.conv.weight", source).shape[1] for level in range(levels)]
    resample_filter = [1.0, 3.0, 3.0, 1.0]
    if levels > 0:
        resample_filter = filter_taps(_tensor(state, "convs.0.conv.blur.kernel", source), GENERATOR_FILTER_GAIN)
    return StyleGAN2Generator.Config(
        z_dim=_tensor(state, "style.1.weight", source).shape[1],
        w_dim=_tensor(state, f"style.{mapping_layers}.weight", source).shape[0],
        c_dim=0,
        img_resolution=4 * 2**levels,
        img_channels=_tensor(state, "to_rgb1.conv.weight", source).shape[1],
        channels=channels,
        mapping_layers=mapping_layers,
        mapping_lr_multiplier=MAPPING_LR_MULTIPLIER,
        conv_clamp=None,
        resample_filter=resample_filter,
    )


def _generator_rules() -> list[Rule]:
    """rosinality generator key -> ganedit key, with the reshape each tensor needs."""

    def conv(index: str) -> str:  # convs.{2i} upsamples into resolution 8 * 2**i, convs.{2i+1} follows it
        return f"synthesis.b{8 << (_level(index) // 2)}.conv{int(index) % 2}"

    def noise(index: str) -> str:  # noise_0 feeds conv1 at 4 px, noise_{n+1} feeds convs.{n}
        return "synthesis.b4.conv1" if index == "0" else conv(str(int(index) - 1))

    def torgb(index: str) -> str:
        return f"synthesis.b{8 << _level(index)}.torgb"

    same = _unchanged
    return [
        (re.compile(r"style\.(\d+)\.(weight|bias)"), lambda m: f"mapping.fc{int(m[1]) - 1}.{m[2]}", same),
        (re.compile(r"input\.input"), lambda m: "synthesis.b4.const", _drop_leading_ones(1)),
        (re.compile(r"conv1\.conv\.weight"), lambda m: "synthesis.b4.conv1.weight", _drop_leading_ones(1)),
        (re.compile(r"conv1\.conv\.modulation\.(weight|bias)"), lambda m: f"synthesis.b4.conv1.affine.{m[1]}", same),
        (re.compile(r"conv1\.noise\.weight"), lambda m: "synthesis.b4.conv1.noise_strength", _to_scalar),
        (re.compile(r"conv1\.activate\.bias"), lambda m: "synthesis.b4.conv1.bias", same),
        (re.compile(r"to_rgb1\.conv\.weight"), lambda m: "synthesis.b4.torgb.weight", _drop_leading_ones(1)),
        (re.compile(r"to_rgb1\.conv\.modulation\.(weight|bias)"), lambda m: f"synthesis.b4.torgb.affine.{m[1]}", same),
        (re.compile(r"to_rgb1\.bias"), lambda m: "synthesis.b4.torgb.bias", _per_channel_bias),
        (re.compile(r"convs\.(\d+)\.conv\.weight"), lambda m: f"{conv(m[1])}.weight", _drop_leading_ones(1)),
        (re.compile(r"convs\.(\d+)\.conv\.modulation\.(weight|bias)"), lambda m: f"{conv(m[1])}.affine.{m[2]}", same),
        (re.compile(r"convs\.(\d+)\.noise\.weight"), lambda m: f"{conv(m[1])}.noise_strength", _to_scalar),
        (re.compile(r"convs\.(\d+)\.activate\.bias"), lambda m: f"{conv(m[1])}.bias", same),
        (re.compile(r"to_rgbs\.(\d+)\.conv\.weight"), lambda m: f"{torgb(m[1])}.weight", _drop_leading_ones(1)),
        (
            re.compile(r"to_rgbs\.(\d+)\.conv\.modulation\.(weight|bias)"),
            lambda m: f"{torgb(m[1])}.affine.{m[2]}",
            same,
        ),
        (re.compile(r"to_rgbs\.(\d+)\.bias"), lambda m: f"{torgb(m[1])}.bias", _per_channel_bias),
        (re.compile(r"noises\.noise_(\d+)"), lambda m: f"{noise(m[1])}.noise_const", _drop_leading_ones(2)),
    ]


def _mean_w(generator: StyleGAN2Generator) -> torch.Tensor:
    """rosinality's mean_latent: the average mapped w of W_AVG_SAMPLES standard normal z's, seeded."""
    z = torch.randn(W_AVG_SAMPLES, generator.z_dim, generator=torch.Generator().manual_seed(W_AVG_SEED))
    with torch.no_grad():
        return torch.cat([generator.mapping(chunk)[:, 0] for chunk in z.split(512)]).mean(dim=0)  # [w_dim]


# ---------------------------------------------------------------------------------------------------
# Discriminator


def _read_discriminator(state: object, path: Path) -> StyleGAN2Discriminator:
    source = f"{path} (discriminator 'd')"
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{source}: expected a state dict, found {type(state).__name__}")
    state = _tensors_only(state, source)
    config = _discriminator_config(state, source)
    renamed = _rename(state, _discriminator_rules(config.img_resolution), DISCRIMINATOR_FILTERS, source)
    _check_filters(state, DISCRIMINATOR_FILTERS, config.resample_filter, DISCRIMINATOR_FILTER_GAIN, source)
    return _build(StyleGAN2Discriminator.arch, config, renamed, source)


def _discriminator_config(state: dict[str, torch.Tensor], source: str) -> StyleGAN2Discriminator.Config:
    blocks = _count(state, r"convs\.(\d+)\.conv1\.0\.weight", first=1, source=source)  # ResBlocks, res > 4
    # convs.0 reads the image at the top resolution; ResBlock k halves the resolution (outputs 2**-k of it).
    widths_top_down = [_tensor(state, "convs.0.0.weight", source).shape[0]]
    widths_top_down += [_tensor(state, f"convs.{k}.conv2.1.weight", source).shape[0] for k in range(1, blocks + 1)]
    resample_filter = [1.0, 3.0, 3.0, 1.0]
    if blocks > 0:
        resample_filter = filter_taps(_tensor(state, "convs.1.conv2.0.kernel", source), DISCRIMINATOR_FILTER_GAIN)
    return StyleGAN2Discriminator.Config(
        c_dim=0,
        img_resolution=4 * 2**blocks,
        img_channels=_tensor(state, "convs.0.0.weight", source).shape[1],
        channels=widths_top_down[::-1],
        mbstd_group_size=MBSTD_GROUP_SIZE,
        mbstd_num_channels=MBSTD_NUM_CHANNELS,
        conv_clamp=None,
        resample_filter=resample_filter,
    )


def _discriminator_rules(img_resolution: int) -> list[Rule]:
    """rosinality discriminator key -> ganedit key (convs.0 = fromRGB, convs.{k} = block at res / 2**(k-1))."""

    def block(index: str) -> str:
        return f"b{img_resolution >> (int(index) - 1)}"

    same = _unchanged
    return [
        (re.compile(r"convs\.0\.0\.weight"), lambda m: f"b{img_resolution}.fromrgb.weight", same),
        (re.compile(r"convs\.0\.1\.bias"), lambda m: f"b{img_resolution}.fromrgb.bias", same),
        (re.compile(r"convs\.(\d+)\.conv1\.0\.weight"), lambda m: f"{block(m[1])}.conv0.weight", same),
        (re.compile(r"convs\.(\d+)\.conv1\.1\.bias"), lambda m: f"{block(m[1])}.conv0.bias", same),
        (re.compile(r"convs\.(\d+)\.conv2\.1\.weight"), lambda m: f"{block(m[1])}.conv1.weight", same),
        (re.compile(r"convs\.(\d+)\.conv2\.2\.bias"), lambda m: f"{block(m[1])}.conv1.bias", same),
        (re.compile(r"convs\.(\d+)\.skip\.1\.weight"), lambda m: f"{block(m[1])}.skip.weight", same),
        (re.compile(r"final_conv\.0\.weight"), lambda m: "b4.conv.weight", same),
        (re.compile(r"final_conv\.1\.bias"), lambda m: "b4.conv.bias", same),
        (re.compile(r"final_linear\.0\.(weight|bias)"), lambda m: f"b4.fc.{m[1]}", same),
        (re.compile(r"final_linear\.1\.(weight|bias)"), lambda m: f"b4.out.{m[1]}", same),
    ]


# ---------------------------------------------------------------------------------------------------
# Renaming and checks shared by both networks


def _build(arch: str, config, state: dict[str, torch.Tensor], source: str) -> torch.nn.Module:
    """The network for `config` (checked against the renamed tensors before it is allocated), tensors loaded."""
    module = build(arch, dataclasses.asdict(config), source, {key: tensor.shape for key, tensor in state.items()})
    load_exact_state(module, state, source)
    return module


def _rename(state: dict[str, torch.Tensor], rules: list[Rule], filters: re.Pattern, source: str) -> dict:
    """Every tensor renamed and reshaped by the first rule that matches its key; blur kernels left out.

    A key that no rule matches is an error: nothing in a checkpoint is silently dropped.
    """
    renamed = {}
    for key, tensor in state.items():
        if filters.fullmatch(key):
            continue
        for pattern, rename, reshape in rules:
            match = pattern.fullmatch(key)
            if match:
                try:
                    renamed[rename(match)] = reshape(tensor)
                except ValueError as error:
                    raise ArchitectureMismatchError(
                        f"{source}: {key} has shape {list(tensor.shape)} ({error}); the file is damaged or not a "
                        "rosinality StyleGAN2 checkpoint"
                    ) from None
                break
        else:
            raise ArchitectureMismatchError(
                f"{source}: unexpected tensor {key!r} {list(tensor.shape)}, not part of rosinality's StyleGAN2; "
                "ganedit never loads a checkpoint partially"
            )
    return renamed


def _check_filters(
    state: dict[str, torch.Tensor], filters: re.Pattern, taps: list[float], gain: float, source: str
) -> None:
    """Every stored blur kernel must be the one the config rebuilds (they are not loaded, only derived)."""
    expected = setup_filter(taps) * gain
    for key, tensor in state.items():
        if filters.fullmatch(key) and (tensor.shape != expected.shape or not torch.allclose(tensor.float(), expected)):
            raise ArchitectureMismatchError(
                f"{source}: blur kernel {key} differs from the others (FIR taps {taps}); ganedit needs one FIR "
                "filter per network"
            )


def _count(state: dict[str, torch.Tensor], pattern: str, first: int, source: str) -> int:
    """How many consecutive indices `first, first + 1, ...` the keys matching `pattern` have."""
    indices = sorted(int(match[1]) for key in state if (match := re.fullmatch(pattern, key)))
    if indices != list(range(first, first + len(indices))):
        raise ArchitectureMismatchError(f"{source}: tensors {pattern!r} have non-consecutive indices {indices}")
    return len(indices)


def _tensor(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in state:
        raise ArchitectureMismatchError(f"{source}: missing tensor {key!r}; the file is damaged or truncated")
    return state[key]


def _tensors_only(state: dict, source: str) -> dict[str, torch.Tensor]:
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointFormatError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return state


def _level(index: str) -> int:
    """A layer index from a key, bounded before it becomes a resolution (8 << index)."""
    if len(index) > 3 or int(index) > 2 * MAX_RESOLUTION.bit_length():
        raise ValueError(f"layer index {index} is beyond any StyleGAN2")
    return int(index)


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _drop_leading_ones(count: int) -> Reshape:
    """[1, ..., 1, *rest] -> rest (rosinality keeps a batch axis on weights, inputs and noise)."""

    def reshape(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.ndim <= count or any(size != 1 for size in tensor.shape[:count]):
            raise ValueError(f"expected {count} leading axes of size 1")
        return tensor.reshape(tensor.shape[count:])

    return reshape


def _to_scalar(tensor: torch.Tensor) -> torch.Tensor:
    """[1] -> [] (noise strength)."""
    if tensor.numel() != 1:
        raise ValueError("expected a single value")
    return tensor.reshape(())


def _per_channel_bias(tensor: torch.Tensor) -> torch.Tensor:
    """[1, C, 1, 1] -> [C] (toRGB bias)."""
    if tensor.ndim != 4 or tensor.shape[0] != 1 or tensor.shape[2:] != (1, 1):
        raise ValueError("expected [1, C, 1, 1]")
    return tensor.reshape(-1)


# ---------------------------------------------------------------------------------------------------
# Writing: the reader's renaming, inverted

# rosinality's Generator and Discriminator build their widths from this table (channel_multiplier cm).
CHANNEL_TABLE = "{4..32: 512, 64: 256 cm, 128: 128 cm, 256: 64 cm, 512: 32 cm, 1024: 16 cm}"
TABLE_RESOLUTIONS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
# The blur kernels the reader checks and skips, named after the weight of the layer that resamples:
# rosinality's upsampling convs (convs.{2i}) and every to_rgbs, the discriminator's conv2 and skip.
GENERATOR_KERNELS = [
    (re.compile(r"(convs\.\d*[02468]\.conv)\.weight"), r"\1.blur.kernel"),
    (re.compile(r"(to_rgbs\.\d+)\.conv\.weight"), r"\1.upsample.kernel"),
]
DISCRIMINATOR_KERNELS = [(re.compile(r"(convs\.\d+\.(conv2|skip))\.1\.weight"), r"\1.0.kernel")]


def rosinality_refusal(generator: StyleGAN2Generator, discriminator: StyleGAN2Discriminator | None) -> str | None:
    """Why rosinality's Generator / Discriminator cannot hold these networks, or None."""
    config = generator.config
    if config.c_dim:
        return (
            f"rosinality's StyleGAN2 is unconditional and this generator is class-conditional ({config.c_dim} classes)"
        )
    if config.z_dim != config.w_dim:
        return (
            f"rosinality's Generator has one style_dim for z and w, this generator has z {config.z_dim}, "
            f"w {config.w_dim}"
        )
    if config.img_channels != 3:
        return f"rosinality's networks make RGB images, this generator makes {config.img_channels} channels"
    if config.mapping_lr_multiplier != MAPPING_LR_MULTIPLIER:
        return (
            f"rosinality's checkpoints do not record the mapping learning-rate multiplier (its readers assume "
            f"{MAPPING_LR_MULTIPLIER}), this generator's is {config.mapping_lr_multiplier}"
        )
    if discriminator is not None:
        stddev = (discriminator.config.mbstd_group_size, discriminator.config.mbstd_num_channels)
        if stddev != (MBSTD_GROUP_SIZE, MBSTD_NUM_CHANNELS):
            return (
                f"rosinality's Discriminator fixes its minibatch stddev at group {MBSTD_GROUP_SIZE}, "
                f"{MBSTD_NUM_CHANNELS} channel; this one has group {stddev[0]}, {stddev[1]} channels"
            )
    return None


def rosinality_checkpoint(generator: StyleGAN2Generator, discriminator: StyleGAN2Discriminator | None) -> dict:
    """What a rosinality `.pt` of these networks holds (networks rosinality_refusal accepts): `g_ema` and
    `latent_avg`, with a discriminator also `d` and `g` (g_ema's tensors: ganedit keeps one generator), all
    plain tensors.

    Each state is the reader's renaming inverted, then renamed back to check that the reader recovers the
    network's tensors exactly.
    """
    state = plain_state(generator)
    latent_avg = state.pop("mapping.w_avg")
    g_ema = _inverted(state, _generator_rules())
    g_ema.update(_kernels(g_ema, GENERATOR_KERNELS, generator.config.resample_filter, GENERATOR_FILTER_GAIN))
    _check_inverse(g_ema, state, _generator_rules(), GENERATOR_FILTERS, generator.config, GENERATOR_FILTER_GAIN)
    checkpoint = {"g_ema": g_ema, "latent_avg": latent_avg}
    if discriminator is not None:
        rules = _discriminator_rules(discriminator.config.img_resolution)
        state = plain_state(discriminator)
        d = _inverted(state, rules)
        d.update(_kernels(d, DISCRIMINATOR_KERNELS, discriminator.config.resample_filter, DISCRIMINATOR_FILTER_GAIN))
        _check_inverse(d, state, rules, DISCRIMINATOR_FILTERS, discriminator.config, DISCRIMINATOR_FILTER_GAIN)
        checkpoint.update(g=dict(g_ema), d=d)
    return checkpoint


def channel_multiplier(channels: list[int]) -> int | None:
    """The channel_multiplier whose rosinality table gives `channels` (widths from 4 px up), or None."""
    if len(channels) > len(TABLE_RESOLUTIONS) or any(width != 512 for width in channels[:4]):
        return None
    if len(channels) <= 4:
        return 2  # rosinality's default: the table does not depend on it below 64 px
    multiplier, remainder = divmod(channels[4], 256)
    table = [512] * 4 + [16384 * multiplier // resolution for resolution in TABLE_RESOLUTIONS[4:]]
    return multiplier if remainder == 0 and multiplier > 0 and channels == table[: len(channels)] else None


def _inverted(state: dict[str, torch.Tensor], rules: list[Rule]) -> dict[str, torch.Tensor]:
    """The rosinality tensors that `rules` rename into `state`: every key the rules' patterns spell (indices
    below len(state)) whose ganedit name is in `state`, its tensor given rosinality's shape back."""
    found = {}
    for pattern, rename, reshape in rules:
        for key in _spellings(pattern, len(state)):
            try:
                name = rename(pattern.fullmatch(key))
            except ValueError:  # an index no StyleGAN2 has
                continue
            if name in state:
                found[name] = (key, reshape)
    missing = [name for name in state if name not in found]
    if missing:
        raise AssertionError(f"rosinality's StyleGAN2 has no place for the tensor {missing[0]!r}")
    return {key: _restored(state[name], reshape) for name, (key, reshape) in found.items()}


def _spellings(pattern: re.Pattern, bound: int) -> list[str]:
    r"""Every key `pattern` matches with its digit groups below `bound`: the rules' patterns are literal text
    with escaped dots, `(\d+)` and groups of alternatives such as `(weight|bias)`."""
    choices = []
    for part in re.split(r"(\([^()]*\))", pattern.pattern):
        if part == r"(\d+)":
            choices.append([str(index) for index in range(bound)])
        elif part.startswith("("):
            choices.append(part[1:-1].split("|"))
        else:
            choices.append([re.sub(r"\\(.)", r"\1", part)])
    keys = ["".join(spelled) for spelled in itertools.product(*choices)]
    if not all(pattern.fullmatch(key) for key in keys):
        raise AssertionError(f"cannot spell the keys of {pattern.pattern!r}")
    return keys


def _restored(tensor: torch.Tensor, reshape: Reshape) -> torch.Tensor:
    """`tensor` in rosinality's shape. The reader's reshapes only drop rosinality's axes of size 1, so that is
    the first of these shapes that `reshape` turns back into the tensor's own."""
    shape = list(tensor.shape)
    candidates = [[1, *shape], [1, 1, *shape], shape] + ([[1, shape[0], 1, 1]] if tensor.ndim == 1 else [])
    for candidate in candidates:
        try:
            if reshape(tensor.reshape(candidate)).shape == tensor.shape:
                return tensor.reshape(candidate)
        except ValueError:
            continue
    raise AssertionError(f"no rosinality shape for a tensor of shape {shape}")


def _kernels(state: dict[str, torch.Tensor], owners: list, taps: list[float], gain: float) -> dict[str, torch.Tensor]:
    """The blur kernels rosinality stores beside the weights of its resampling layers."""
    kernel = setup_filter(taps) * gain
    return {
        pattern.sub(name, key): kernel.clone() for key in state for pattern, name in owners if pattern.fullmatch(key)
    }


def _check_inverse(
    written: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    rules: list[Rule],
    filters: re.Pattern,
    config,
    gain: float,
) -> None:
    """The reader must turn `written` back into exactly `state`, blur kernels included."""
    _check_filters(written, filters, config.resample_filter, gain, "the exported state")
    renamed = _rename(written, rules, filters, "the exported state")
    if renamed.keys() != state.keys() or not all(torch.equal(renamed[key], state[key]) for key in state):
        raise AssertionError("the rosinality state does not read back as the network's")
