"""The model zoo: named models, where they come from, and the local cache.

A name carries everything needed to use a model correctly: the files and their addresses, the format,
the architecture, the licence, and the sha256 of each file where it is published. None of the
published addresses below publishes a checksum, so their hash is pinned at the first download (trust on
first use) in a `sha256.json` beside the files and verified on every later load; `ganedit zoo list`
says which of the two applies.

Files are cached under `$GANEDIT_CACHE`, else `$TORCH_HOME/ganedit`, else `~/.cache/torch/ganedit`
(the standard torch cache), one folder per model. Files are fetched by `ganedit.store.downloads`
(Hugging Face Hub addresses through huggingface_hub; others resumed, retried and locked), written
atomically, and report their progress to the hook the command line installs (`set_download_progress`;
silent without one). Offline mode (`--offline`, `GANEDIT_OFFLINE=1` or `HF_HUB_OFFLINE=1`) never touches
the network.

The weights the judges load (torchvision classifiers, CLIP, LPIPS, Inception) live in their libraries'
own caches; `ganedit.judges.weights.fetch_aux_weights` warms those.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ganedit.errors import GaneditError
from ganedit.store.downloads import download, set_download_progress  # noqa: F401 (the CLI installs its bar here)

BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan/"
NVIDIA_NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/"
HF_BIGGAN_128 = "https://huggingface.co/osanseviero/BigGAN-deep-128/resolve/main/"
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class ZooFile:
    filename: str  # name in the model's cache folder
    urls: tuple[str, ...]  # tried in order
    sha256: str | None = None  # published hash; None = pinned at first download


@dataclass(frozen=True)
class ZooModel:
    name: str
    description: str
    architecture: str  # "biggan-deep" or "stylegan2"
    format: str  # format of the files as published
    resolution: int
    classes: int  # 0 = unconditional
    licence: str
    files: tuple[ZooFile, ...]
    size_mb: float | None = None  # approximate download size, where known
    load_path: str = ""  # what to load inside the folder ("" = the folder itself)
    embedded: bool = False  # shipped inside the package (no download, no cache)
    kind: str = "generator"  # "generator" (load_model), "judge" (--classifier / --judge) or "clip" (--clip)
    recipes: tuple[tuple[str, str], ...] = ()  # (command, packaged recipe): the settings that fit this model


def packaged_recipe(name: str) -> Path:
    """A recipe shipped inside the package (ganedit/data/recipes/NAME.toml); COMMAND.toml is the command's
    default, a run on the embedded toy world."""
    return PACKAGE_DATA / "recipes" / f"{name}.toml"


def recipe_for(model: str, command: str) -> Path | None:
    """The packaged recipe the zoo entry `model` names for `command`, if any."""
    entry = REGISTRY.get(str(model))
    name = dict(entry.recipes).get(command) if entry is not None else None
    return packaged_recipe(name) if name else None


def _biggan(resolution: int, size_mb: float, params: str) -> ZooModel:
    name = f"biggan-deep-{resolution}"
    mirrors = {"pytorch_model.bin": (), "config.json": ()}
    if resolution == 128:
        mirrors = {filename: (HF_BIGGAN_128 + filename,) for filename in mirrors}
    return ZooModel(
        name=name,
        description=(
            f"BigGAN-deep {resolution}px ImageNet (DeepMind TF-Hub, converted by pytorch-pretrained-biggan), "
            f"{params} parameters"
        ),
        architecture="biggan-deep",
        format="biggan-deep (pytorch-pretrained-biggan)",
        resolution=resolution,
        classes=1000,
        licence="Apache-2.0",
        files=tuple(
            ZooFile(filename, (f"{BIGGAN_S3}{name}-{filename}", *mirrors[filename]))
            for filename in ("config.json", "pytorch_model.bin")
        ),
        size_mb=size_mb,
    )


def _nvidia_stylegan2(name: str, filename: str, resolution: int, what: str) -> ZooModel:
    return ZooModel(
        name=name,
        description=f"StyleGAN2 {what} {resolution}px (NVIDIA, stylegan2-ada-pytorch network pickle)",
        architecture="stylegan2",
        format="stylegan2 (nvidia .pkl)",
        resolution=resolution,
        classes=0,
        licence="NVIDIA Source Code License-NC (non-commercial)",
        files=(ZooFile(filename, (NVIDIA_NGC + filename,)),),
        load_path=filename,
    )


def _toy(
    name: str, filename: str, description: str, architecture: str, classes: int, kind: str, recipes: dict | None = None
) -> ZooModel:
    return ZooModel(
        name=name,
        description=description,
        architecture=architecture,
        format={"generator": "ganedit (safetensors)", "judge": "toy oracle (safetensors)"}.get(
            kind, "toy CLIP (open_clip, safetensors)"
        ),
        resolution=32,
        classes=classes,
        licence="as ganedit",
        files=(ZooFile(filename, ()),),
        size_mb=round((PACKAGE_DATA / filename).stat().st_size / 1e6, 1)
        if (PACKAGE_DATA / filename).is_file()
        else None,
        load_path=filename,
        embedded=True,
        kind=kind,
        recipes=tuple((recipes or {}).items()),
    )


REGISTRY: dict[str, ZooModel] = {
    model.name: model
    for model in [
        _toy(
            "toy-biggan",
            "toy-biggan.safetensors",
            "toy world: class-conditional BigGAN-deep, 9 shape classes; 'star' collapsed to red, 'heart' never seen "
            "(scripts/train_toy_biggan.py)",
            "biggan-deep",
            9,
            "generator",
            {"embed-tune": "embed-tune"},
        ),
        _toy(
            "toy-stylegan2",
            "toy-stylegan2.safetensors",
            "toy world: unconditional StyleGAN2 + D, every shape and colour; what unlearn removes a shape "
            "kind or a colour from (scripts/train_toy_stylegan2.py)",
            "stylegan2",
            0,
            "generator",
            {"unlearn": "unlearn", "text-unlearn": "text-unlearn"},
        ),
        _toy(
            "toy-stylegan2-a",
            "toy-stylegan2-a.safetensors",
            "toy world: unconditional StyleGAN2 + D, domain A: circle, square, triangle, star, cross",
            "stylegan2",
            0,
            "generator",
            {"merge": "merge-shapes"},
        ),
        _toy(
            "toy-stylegan2-b",
            "toy-stylegan2-b.safetensors",
            "toy world: unconditional StyleGAN2 + D, domain B: ring, crescent, heart, arrow, ellipse",
            "stylegan2",
            0,
            "generator",
            {"merge": "merge-shapes"},
        ),
        _toy(
            "toy-stylegan2-warm",
            "toy-stylegan2-warm.safetensors",
            "toy world: unconditional StyleGAN2 + D, every shape in red, yellow, magenta, orange (toy-stylegan2 "
            "re-coded: scripts/train_toy_stylegan2.py)",
            "stylegan2",
            0,
            "generator",
            {"merge": "merge"},
        ),
        _toy(
            "toy-stylegan2-cool",
            "toy-stylegan2-cool.safetensors",
            "toy world: unconditional StyleGAN2 + D, every shape in green, blue, cyan, white (toy-stylegan2 "
            "re-coded, hidden units permuted: scripts/train_toy_stylegan2.py)",
            "stylegan2",
            0,
            "generator",
            {"merge": "merge"},
        ),
        _toy(
            "toy-oracle",
            "toy-oracle.safetensors",
            "toy world: oracle classifier of shape, colour and background; the judge `--classifier toy` "
            "(scripts/train_toy_oracle.py)",
            "toy-oracle",
            10,
            "judge",
        ),
        _toy(
            "toy-oracle-strict",
            "toy-oracle-strict.safetensors",
            "toy world: the strict oracle, trained on clean renderings only; the measure of whether a shape is "
            "really drawn, the judge `--judge toy-strict` (scripts/train_toy_oracle.py --strict)",
            "toy-oracle",
            10,
            "judge",
        ),
        _toy(
            "toy-clip",
            "toy-clip.safetensors",
            "toy world: tiny CLIP (open_clip ViT + text transformer) trained on toy images and captions; "
            "text-unlearn's default `--clip` on the toy models (scripts/train_toy_clip.py)",
            "clip",
            0,
            "clip",
        ),
        _biggan(128, 201, "50.4M"),
        _biggan(256, 223, "55.9M"),
        _biggan(512, 225, "56.2M"),
        _nvidia_stylegan2("stylegan2-ffhq-256", "stylegan2-ffhq-256x256.pkl", 256, "FFHQ faces"),
        _nvidia_stylegan2("stylegan2-ffhq-512", "stylegan2-ffhq-512x512.pkl", 512, "FFHQ faces"),
        _nvidia_stylegan2("stylegan2-ffhq-1024", "stylegan2-ffhq-1024x1024.pkl", 1024, "FFHQ faces"),
        _nvidia_stylegan2("stylegan2-celebahq-256", "stylegan2-celebahq-256x256.pkl", 256, "CelebA-HQ faces"),
        _nvidia_stylegan2("stylegan2-afhqcat-512", "stylegan2-afhqcat-512x512.pkl", 512, "AFHQ cats"),
        _nvidia_stylegan2("stylegan2-afhqdog-512", "stylegan2-afhqdog-512x512.pkl", 512, "AFHQ dogs"),
        _nvidia_stylegan2("stylegan2-afhqwild-512", "stylegan2-afhqwild-512x512.pkl", 512, "AFHQ wild animals"),
        _nvidia_stylegan2("stylegan2-afhqv2-512", "stylegan2-afhqv2-512x512.pkl", 512, "AFHQv2 animals"),
        _nvidia_stylegan2("stylegan2-lsundog-256", "stylegan2-lsundog-256x256.pkl", 256, "LSUN dogs"),
        _nvidia_stylegan2("stylegan2-metfaces-1024", "stylegan2-metfaces-1024x1024.pkl", 1024, "MetFaces"),
        _nvidia_stylegan2("stylegan2-brecahad-512", "stylegan2-brecahad-512x512.pkl", 512, "BreCaHAD histology"),
    ]
}


def cache_root() -> Path:
    if "GANEDIT_CACHE" in os.environ:
        return Path(os.environ["GANEDIT_CACHE"])
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "ganedit"


def is_offline() -> bool:
    return any(os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("GANEDIT_OFFLINE", "HF_HUB_OFFLINE"))


def model_dir(model: ZooModel) -> Path:
    return PACKAGE_DATA if model.embedded else cache_root() / model.name


def cached_files(model: ZooModel) -> dict[str, bool]:
    folder = model_dir(model)
    return {file.filename: (folder / file.filename).is_file() for file in model.files}


def hash_policy(model: ZooModel) -> str:
    if model.embedded:
        return "shipped with ganedit"
    if all(file.sha256 for file in model.files):
        return "published sha256"
    pins = _read_pins(model)
    if all(file.filename in pins for file in model.files):
        return "pinned at first download"
    return "to be pinned at first download"


def lookup(name: str) -> ZooModel:
    """The registry entry for `name`, or an error listing close matches."""
    if name in REGISTRY:
        return REGISTRY[name]
    import difflib

    close = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise GaneditError(f"{name!r} is neither an existing path nor a zoo model name; {hint}see `ganedit zoo list`")


def resolve(name: str, offline: bool | None = None) -> Path:
    """Local path of zoo model `name`, downloading missing files unless offline; hashes verified."""
    model = lookup(name)
    if model.embedded:
        path = PACKAGE_DATA / model.load_path
        if not path.is_file():
            raise GaneditError(
                f"zoo model {model.name!r}: {path} is missing from the installed package; reinstall ganedit "
                "(or recreate it with the training script named in `ganedit zoo list`)"
            )
        return path
    offline = is_offline() if offline is None else offline
    folder = model_dir(model)
    for file in model.files:
        target = folder / file.filename
        if not target.is_file():
            if offline:
                raise GaneditError(
                    f"zoo model {model.name!r} is not cached: {file.filename} not found in {folder} and offline "
                    f"mode is on (--offline / HF_HUB_OFFLINE=1 / GANEDIT_OFFLINE=1); download {file.urls[0]} into "
                    "that folder, or pass the model's path instead of its name"
                )
            folder.mkdir(parents=True, exist_ok=True)
            download(f"zoo model {model.name!r}", file.urls, target, file.sha256, offline=False)
        check_pin(target, folder / "sha256.json", file.sha256)
    return folder / model.load_path if model.load_path else folder


def _read_pins(model: ZooModel) -> dict:
    try:
        return json.loads((model_dir(model) / "sha256.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def check_pin(target: Path, pin_file: Path, published: str | None = None) -> None:
    """Verify `target` against its published sha256, or else the one pinned in `pin_file` at first use.

    With neither, the file's hash is pinned now (trust on first use) and checked on every later call.
    """
    from ganedit.store.provenance import sha256_of

    actual = sha256_of(target)
    try:
        pins = json.loads(pin_file.read_text())
    except (OSError, json.JSONDecodeError):
        pins = {}
    expected = published or pins.get(target.name)
    if expected is None:
        pins[target.name] = actual
        pin_file.write_text(json.dumps(pins, indent=2))
    elif actual != expected:
        where = "published" if published else f"pinned at first download in {pin_file}"
        raise GaneditError(
            f"{target} has sha256 {actual[:16]}..., expected {expected[:16]}... ({where}); "
            "delete the file to download it again"
        )
