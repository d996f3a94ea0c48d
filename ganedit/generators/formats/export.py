"""`ganedit export`: a model written in the formats of the reference code bases, for tools outside ganedit.

- rosinality: OUT (.pt) with g_ema and latent_avg, and g, d with a discriminator, for the Generator and
  Discriminator of rosinality/stylegan2-pytorch;
- nvidia-state: OUT.safetensors (G_ema.*, D.*) and OUT.json (their init kwargs), for networks.Generator and
  Discriminator of NVlabs/stylegan2-ada-pytorch;
- biggan-folder: OUT/config.json and pytorch_model.bin (and class_names.json), for pytorch-pretrained-biggan's
  BigGAN.from_pretrained.

Every file holds plain tensors (`torch.load(weights_only=True)` or safetensors) and reads back into ganedit
with the same outputs. A runnable NVIDIA network pickle is not among them: it must carry NVIDIA's Python
source, which ganedit does not ship (and never executes).

Everything is checked before anything is written (the format can hold the model, the output is of the
right kind and is not the input), each file is written atomically, and a failed export removes what it
wrote.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ganedit.errors import GaneditError
from ganedit.generators.formats import load_model, resolve_model_path
from ganedit.generators.formats.biggan import (
    CLASS_NAMES_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    biggan_folder_refusal,
    write_biggan_folder,
)
from ganedit.generators.formats.bundle import ModelBundle
from ganedit.generators.formats.nvidia_state import nvidia_state_refusal, write_nvidia_state
from ganedit.generators.formats.rosinality import (
    CHANNEL_TABLE,
    channel_multiplier,
    rosinality_checkpoint,
    rosinality_refusal,
)
from ganedit.store.atomic import atomic_write, check_free_space, check_output_folder, output_journal
from ganedit.version import __version__

ARCHITECTURES = {"stylegan2-generator": "StyleGAN2", "biggan-deep": "BigGAN-deep"}  # as users name them
NVIDIA_CODE = "NVlabs/stylegan2-ada-pytorch, training/networks.py"
NVIDIA_LOAD = """\
import json
from safetensors.torch import load_file
from training.networks import Discriminator, Generator  # {code}
kwargs, tensors = json.load(open("{json}")), load_file("{tensors}")
G = Generator(**kwargs["G_ema_init_kwargs"]).eval()
G.load_state_dict({{k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")}})
img = G(z, c, truncation_psi=1, noise_mode="const")"""
NVIDIA_LOAD_D = """
D = Discriminator(**kwargs["D_init_kwargs"]).eval()
D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")})"""


@dataclass
class Exported:
    """What `export_model` wrote, and how the target's own code loads it."""

    to: str  # the format written
    output: Path  # the file or folder asked for
    written: list[Path]  # every file written
    notes: list[str]  # what the target's code needs, or does differently, to reproduce the model
    load: str  # Python that loads it in the target's own code
    source_format: str  # the format the model was read from
    discriminator: bool  # whether a discriminator was written too


@dataclass(frozen=True)
class Target:
    architecture: str  # the generator architecture the format holds
    output: str  # "file" or "folder"
    refusal: Callable[[ModelBundle], str | None]  # why the format cannot hold a model, or None
    write: Callable[[Path, ModelBundle], tuple[list[Path], list[str], str]]  # -> (written, notes, load)


def export_model(
    model: str | Path | ModelBundle,
    to: str,
    output: str | Path,
    offline: bool | None = None,
    allow_nonfinite: bool | None = None,
) -> Exported:
    """Write `model` (a path, a zoo name or a loaded ModelBundle) to `output` in the format `to`
    (rosinality, nvidia-state or biggan-folder, see TARGETS).

    Refused with a one-line GaneditError, before anything is written: a format that cannot hold the model,
    a folder where a file goes (or a file where the folder goes), an output that is the input.
    """
    if to not in TARGETS:
        raise GaneditError(f"cannot export to {to!r}: not a format ganedit writes; use one of {', '.join(TARGETS)}")
    target, output = TARGETS[to], Path(output).expanduser()
    if isinstance(model, ModelBundle):
        bundle, name, source = model, model.source, Path(model.source)
    else:
        bundle, name, source = None, str(model), resolve_model_path(model, offline=offline)
    _check_output(to, output, source)
    if bundle is None:
        bundle = load_model(source, offline=offline, allow_nonfinite=allow_nonfinite)
    refusal = _refusal(to, bundle)
    if refusal:
        others = [other for other in TARGETS if other != to and _refusal(other, bundle) is None]
        fix = f"export it with --to {' or '.join(others)}" if others else "keep it as a ganedit .safetensors file"
        raise GaneditError(f"cannot export {name} to {to}: {refusal}; {fix}")
    networks = [network for network in (bundle.generator, bundle.discriminator) if network is not None]
    elements = sum(tensor.numel() for network in networks for tensor in network.state_dict().values())
    check_free_space(output, 4 * elements, f"the {to} export")  # float32
    with output_journal():  # a failure removes what was written (a folder it made included)
        written, notes, load = target.write(output, bundle)
    return Exported(to, output, written, notes, load, bundle.format, bundle.discriminator is not None)


def _refusal(to: str, bundle: ModelBundle) -> str | None:
    """Why the format `to` cannot hold the model, or None."""
    target, arch = TARGETS[to], bundle.generator.arch
    if arch != target.architecture:
        return f"{to} holds a {ARCHITECTURES[target.architecture]} and this is a {ARCHITECTURES.get(arch, arch)}"
    return target.refusal(bundle)


def _check_output(to: str, output: Path, source: Path) -> None:
    """The output must be of the kind the format writes, writable, and not the input (or inside it)."""
    if TARGETS[to].output == "folder":
        if output.exists() and not output.is_dir():
            raise GaneditError(
                f"cannot export to {output}: it is a file, and --to {to} writes a folder ({CONFIG_NAME}, "
                f"{WEIGHTS_NAME}); give a folder"
            )
        files = [output, output / CONFIG_NAME, output / WEIGHTS_NAME, output / CLASS_NAMES_NAME]
        if output.is_dir():
            check_output_folder(output)
    else:
        if to == "nvidia-state" and output.suffix != ".safetensors":
            raise GaneditError(
                f"cannot export to {output}: --to nvidia-state writes NAME.safetensors and NAME.json; give a file "
                "name ending in .safetensors"
            )
        files = [output, output.with_suffix(".json")] if to == "nvidia-state" else [output]
        for file in files:
            if file.is_dir():
                raise GaneditError(
                    f"cannot write {file}: it is a folder, and --to {to} writes a file; give a file name"
                )
        check_output_folder(output.parent)
    for file in files:
        if _same(file, source):
            raise GaneditError(f"cannot write {file}: it is the model being exported; give another output")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------
# The formats


def _write_rosinality(output: Path, bundle: ModelBundle) -> tuple[list[Path], list[str], str]:
    generator, discriminator = bundle.generator, bundle.discriminator
    checkpoint = rosinality_checkpoint(generator, discriminator)
    atomic_write(output, lambda temporary: torch.save(checkpoint, temporary))
    config, notes = generator.config, []
    networks = [network for network in (generator, discriminator) if network is not None]
    clamps = {network.config.conv_clamp for network in networks} - {None}
    if clamps:
        notes.append(
            f"conv_clamp {clamps.pop()} is left out: rosinality's code never clamps, so its outputs differ from "
            "ganedit's only where an activation exceeds it"
        )
    multipliers = {channel_multiplier(network.config.channels) for network in networks}
    multiplier = multipliers.pop() if len(multipliers) == 1 else None  # None: no table gives the widths
    if multiplier is None:
        widths = {4 << index: width for index, width in enumerate(config.channels)}
        notes.append(
            f"the widths {widths} are not rosinality's channel table {CHANNEL_TABLE}: set `self.channels` to them "
            "in rosinality's model.py (Generator and Discriminator) before building the networks"
        )
    load = (
        "import torch\n"
        "from model import Discriminator, Generator  # rosinality/stylegan2-pytorch\n"
        f'checkpoint = torch.load("{output}", weights_only=True)\n'
        f"g_ema = Generator({config.img_resolution}, {config.w_dim}, {config.mapping_layers}, "
        f"channel_multiplier={multiplier or 2})\n"
        'g_ema.load_state_dict(checkpoint["g_ema"])\n'
        'img, _ = g_ema([z], truncation=psi, truncation_latent=checkpoint["latent_avg"], randomize_noise=False)'
    )
    if discriminator is not None:
        load += (
            f"\nd = Discriminator({config.img_resolution}, channel_multiplier={multiplier or 2})\n"
            'd.load_state_dict(checkpoint["d"])'
        )
    return [output], notes, load


def _write_nvidia_state(output: Path, bundle: ModelBundle) -> tuple[list[Path], list[str], str]:
    kwargs = write_nvidia_state(output, bundle.generator, bundle.discriminator)
    side = output.with_suffix(".json")
    load = NVIDIA_LOAD.format(code=NVIDIA_CODE, json=side, tensors=output)
    if bundle.discriminator is not None:
        load += NVIDIA_LOAD_D
    document = {
        "tensors": output.name,
        **{f"{prefix}_init_kwargs": value for prefix, value in kwargs.items()},
        "code": NVIDIA_CODE,
        "load": load.splitlines(),
        "exported_from": bundle.source,
        "ganedit_version": __version__,
    }
    text = json.dumps(document, indent=2) + "\n"
    atomic_write(side, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
    notes = ["num_fp16_res is 0 (float32 throughout, as ganedit computes); NVIDIA's float16 layers are faster on a GPU"]
    return [output, side], notes, load


def _write_biggan_folder(output: Path, bundle: ModelBundle) -> tuple[list[Path], list[str], str]:
    written = write_biggan_folder(output, bundle.generator, bundle.class_names)
    classes = bundle.generator.config.num_classes
    load = (
        "from pytorch_pretrained_biggan import BigGAN\n"
        f'model = BigGAN.from_pretrained("{output}").eval()\n'
        f"img = model(z * t, one_hot, t)  # one_hot [N, {classes}]: class k is column k"
    )
    notes = (
        [] if bundle.class_names is None else [f"class names in {output / CLASS_NAMES_NAME} (the package ignores it)"]
    )
    return written, notes, load


TARGETS = {
    "rosinality": Target(
        "stylegan2-generator",
        "file",
        lambda bundle: rosinality_refusal(bundle.generator, bundle.discriminator),
        _write_rosinality,
    ),
    "nvidia-state": Target(
        "stylegan2-generator",
        "file",
        lambda bundle: nvidia_state_refusal(bundle.generator, bundle.discriminator),
        _write_nvidia_state,
    ),
    "biggan-folder": Target(
        "biggan-deep", "folder", lambda bundle: biggan_folder_refusal(bundle.generator), _write_biggan_folder
    ),
}
