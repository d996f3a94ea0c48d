"""Frozen image classifiers as judges of generated images.

A `Judge` maps generator images in [-1, 1] (NCHW, any size) to logits [N, len(labels)]. It does its own
preprocessing on tensors, differentiably, the way its weights expect: [-1, 1] -> [0, 1], resize of the
short side with antialiasing (bilinear, or bicubic where the weights say so) to the weights' resize
size, centre crop, normalisation with the weights' mean and std; this is torchvision's
`weights.transforms()` done on tensors instead of PIL images. Its parameters never require gradients
and it stays in eval mode, so gradients flow to the images only.

`load_judge(spec)` understands:

| spec                                   | judge                                                        |
|----------------------------------------|--------------------------------------------------------------|
| `resnet50`, `alexnet`, `vit_b_16`, ... | a torchvision ImageNet classifier, DEFAULT weights            |
| `resnet50:IMAGENET1K_V2`               | the same with named weights                                  |
| `places365-resnet18` (-resnet50, -alexnet, -densenet161) | a Places365 CNN from the Places365 authors |
| `ARCH=PATH` (+ labels file)            | a local torchvision-architecture classifier (see below)      |
| `PATH` (+ labels file)                 | the same, with ARCH in the safetensors metadata key `arch`   |
| `toy` / `toy-oracle`                   | the toy world's forgiving oracle, over its `shape` attribute |
| `toy:colour`, `toy:background`         | the toy oracle over another attribute (`toy:shape` = `toy`)  |
| `toy-strict` / `toy-oracle-strict`     | the toy world's strict oracle, over its `shape` attribute    |
| `toy-strict:colour`, ...               | the strict oracle over another attribute (as `toy:...`)      |

The toy judges are named `toy-oracle:ATTRIBUTE` and `toy-oracle-strict:ATTRIBUTE` in reports. The
forgiving oracle accepts blurred, blob-like shapes (it is the procedures' judge); the strict one names a
shape only where it is really drawn (ganedit.toy.oracle).

Weights are real or the command stops: torchvision and Places365 weights are cached in
`torch.hub.get_dir()/checkpoints` and downloaded there on first use unless offline; offline and missing,
the error names the file, the folder and the address to put there. torchvision checks its files'
published hash on download. The Places365 files publish none: their sha256 is pinned at first use
(trust on first use) in `places365_sha256.json` in the same folder and verified on every later load.
Random weights exist only for the project's tests (`torchvision_judge(..., random_weights_for_tests=True)`).

Local classifier files: a safetensors file or a weights-only `torch.save` file holding the state dict of
a torchvision classification architecture (`resnet18`, ...), whose number of outputs must equal the
number of lines of the labels file (one label per line; the Places365 format `/a/airfield 0` is read
too). Preprocessing is ImageNet's (resize 256, crop 224, ImageNet mean/std) unless the safetensors
metadata gives `resize_size`, `crop_size`, `mean`, `std` (JSON values).

The judge's feature space (for the `features` diversity term and the diversity score) is the input of
its last linear layer (ResNet's pooled 2048-d vector, AlexNet's fc7, ViT's class token); a network
without a linear layer uses its softmax.
"""

import difflib
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganedit.errors import GaneditError
from ganedit.generators.ops import freeze

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PLACES365_ARCHS = ("resnet18", "resnet50", "alexnet", "densenet161")
PLACES365_URL = "http://places2.csail.mit.edu/models_places365/{arch}_places365.pth.tar"
PLACES365_PINS = "places365_sha256.json"
TOY_SPECS = ("toy", "toy-oracle")
STRICT_TOY_SPECS = ("toy-strict", "toy-oracle-strict")


class Preprocess(nn.Module):
    """[-1, 1] images -> what a classifier expects, differentiably (torchvision's ImageClassification).

    Args:
        resize_size:   the short side is resized to this (None: no resize).
        crop_size:     centre crop to crop_size x crop_size.
        mean, std:     per-channel normalisation of [0, 1] images.
        interpolation: "bilinear" or "bicubic", always antialiased.
    """

    def __init__(
        self,
        resize_size: int | None,
        crop_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bilinear",
    ):
        super().__init__()
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.interpolation = interpolation
        # Fold [-1, 1] -> [0, 1] and (x - mean) / std into one x * scale + shift.
        std_tensor = torch.tensor(std, dtype=torch.float32)
        mean_tensor = torch.tensor(mean, dtype=torch.float32)
        self.register_buffer("scale", (0.5 / std_tensor).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((0.5 - mean_tensor) / std_tensor).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: [N, 3, H, W] in [-1, 1] -> [N, 3, crop, crop] normalised
        height, width = images.shape[-2:]
        if self.resize_size is not None:
            short, long = min(height, width), max(height, width)
            new_long = int(self.resize_size * long / short)  # torchvision's rounding
            size = (self.resize_size, new_long) if height <= width else (new_long, self.resize_size)
            if size != (height, width):
                images = F.interpolate(images, size=size, mode=self.interpolation, antialias=True, align_corners=False)
            height, width = size
        top = int(round((height - self.crop_size) / 2.0))
        left = int(round((width - self.crop_size) / 2.0))
        if top < 0 or left < 0:
            raise ValueError(f"images of {height}x{width} are smaller than the crop {self.crop_size}")
        images = images[..., top : top + self.crop_size, left : left + self.crop_size]
        return images * self.scale + self.shift


class Judge(nn.Module):
    """A frozen classifier over generator images.

    Args:
        network:       maps preprocessed images to logits [N, len(labels)].
        labels:        one name per output.
        name:          how the judge is named in reports and provenance (its spec).
        preprocess:    [-1, 1] images -> the network's input.
        feature_layer: a module of `network` whose input is the judge's feature vector (None: softmax).
    """

    def __init__(
        self,
        network: nn.Module,
        labels: list[str],
        name: str,
        preprocess: nn.Module,
        feature_layer: nn.Module | None = None,
    ):
        super().__init__()
        self.network = network
        self.preprocess = preprocess
        self.labels = list(labels)
        self.name = name
        self._features: torch.Tensor | None = None
        self.has_features = feature_layer is not None
        if feature_layer is not None:
            feature_layer.register_forward_pre_hook(self._capture)
        freeze(self)

    def _capture(self, module: nn.Module, inputs: tuple) -> None:
        self._features = inputs[0].flatten(1)

    def train(self, mode: bool = True) -> "Judge":
        """A judge stays in eval mode (no dropout, stored batch-norm statistics)."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.preprocess(images))  # [N, len(labels)]

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [N, L] and the judge's feature vectors [N, F] from one forward pass."""
        logits = self(images)
        if not self.has_features:
            return logits, logits.softmax(dim=1)
        features, self._features = self._features, None
        return logits, features


class Ensemble(nn.Module):
    """Several judges with the same label set, combined as the mean of their log-softmax outputs.

    The combined "logits" are mean_j log p_j(y | x) (a normalised geometric mean of the members'
    probabilities after softmax). Members may order their labels differently: they are matched to the
    first member's labels by normalised name (case, spaces and underscores ignored), and every label
    of the first member must exist in every other one. Features are the members' features concatenated.
    """

    def __init__(self, judges: list[nn.Module]):
        super().__init__()
        if len(judges) < 2:
            raise ValueError("an ensemble needs at least two judges")
        self.members = nn.ModuleList(judges)
        self.labels = list(judges[0].labels)
        self.name = "+".join(judge.name for judge in judges)
        wanted = [normalise_label(label) for label in self.labels]
        orders = []
        for judge in judges:
            positions = {}
            for index, label in enumerate(judge.labels):
                positions.setdefault(normalise_label(label), index)
            missing = [label for label, key in zip(self.labels, wanted, strict=True) if key not in positions]
            if missing:
                shown = ", ".join(repr(label) for label in missing[:3])
                raise GaneditError(
                    f"classifiers {judges[0].name} and {judge.name} have different labels ({len(missing)} of the "
                    f"first one's are missing from the second, e.g. {shown}); an ensemble needs the same label set"
                )
            orders.append(torch.tensor([positions[key] for key in wanted]))
        for index, order in enumerate(orders):
            self.register_buffer(f"order_{index}", order, persistent=False)

    def _orders(self) -> list[torch.Tensor]:
        return [getattr(self, f"order_{index}") for index in range(len(self.members))]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits_and_features(images)[0]

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, features = [], []
        for judge, order in zip(self.members, self._orders(), strict=True):
            logits, member_features = judge.logits_and_features(images)
            log_probs.append(logits.log_softmax(dim=1)[:, order])
            features.append(member_features)
        return torch.stack(log_probs).mean(dim=0), torch.cat(features, dim=1)


class ToyOracleJudge(nn.Module):
    """A toy world oracle as a judge over one attribute (its `shape` classes by default).

    The oracle takes toy images in [-1, 1]; images of another size are resized (bilinear, antialiased)
    to the oracle's `resolution` (32 when it does not say). `oracle_name` names the judge in reports as
    `oracle_name:attribute` (`toy-oracle` or `toy-oracle-strict`).
    """

    def __init__(self, oracle: nn.Module, attribute: str = "shape", oracle_name: str = "toy-oracle"):
        super().__init__()
        self.oracle = oracle
        self.attribute = attribute
        self.labels = list(oracle.labels[attribute])
        self.name = f"{oracle_name}:{attribute}"
        self.resolution = int(getattr(oracle, "resolution", 32))
        freeze(self)

    def train(self, mode: bool = True) -> "ToyOracleJudge":
        return super().train(False)

    def _resized(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-2:] != (self.resolution, self.resolution):
            images = F.interpolate(images, size=(self.resolution,) * 2, mode="bilinear", antialias=True)
        return images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.oracle(self._resized(images))[self.attribute]

    def logits_and_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._resized(images)
        if hasattr(self.oracle, "features") and hasattr(self.oracle, "heads"):  # one trunk pass for both
            features = self.oracle.features(images)
            return self.oracle.heads[self.attribute](features), features.flatten(1)
        logits = self.oracle(images)[self.attribute]
        return logits, logits.softmax(dim=1)


# --- labels -------------------------------------------------------------------------------------------


def normalise_label(label: str) -> str:
    """Case, spaces and underscores ignored: 'Hotel room' == 'hotel_room'."""
    return re.sub(r"[\s_]+", " ", label.strip().lower())


def resolve_label(judge: nn.Module, name_or_index: str | int) -> int:
    """The judge's output index for a label name (normalised, see `normalise_label`) or an index."""
    count = len(judge.labels)
    text = str(name_or_index).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < count:
            raise GaneditError(
                f"class index {index} is out of range: classifier {judge.name} has classes 0..{count - 1}"
            )
        return index
    keys = {}
    for index, label in enumerate(judge.labels):
        keys.setdefault(normalise_label(label), index)
    wanted = normalise_label(text)
    if wanted in keys:
        return keys[wanted]
    close = difflib.get_close_matches(wanted, list(keys), n=5, cutoff=0.6)
    close += [key for key in keys if wanted in key and key not in close][: max(0, 5 - len(close))]
    hint = (
        f"close matches: {', '.join(repr(judge.labels[keys[key]]) for key in close)}"
        if close
        else "give an index or a label of the classifier"
    )
    raise GaneditError(f"unknown class {text!r} for classifier {judge.name}; {hint}")


def read_labels(path: Path) -> list[str]:
    """One label per non-empty line; Places365's `/a/airfield 0` lines give `airfield`."""
    try:
        lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise GaneditError(f"cannot read labels file {path} ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise GaneditError(f"labels file {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                           "save it as UTF-8, one label per line") from None  # fmt: skip
    labels = []
    for line in lines:
        if not line:
            continue
        match = re.fullmatch(r"/[a-z]/(\S+)\s+\d+", line)
        labels.append(match.group(1) if match else line)
    return labels


def places365_labels() -> list[str]:
    """The 365 Places365 categories in output order, e.g. 'hotel_room', 'ice_skating_rink/outdoor'."""
    text = resources.files("ganedit").joinpath("data/places365_categories.txt").read_text(encoding="utf-8")
    return [re.fullmatch(r"/[a-z]/(\S+)\s+\d+", line.strip()).group(1) for line in text.splitlines() if line.strip()]


# --- building judges ----------------------------------------------------------------------------------


def last_linear(network: nn.Module) -> nn.Module | None:
    """The network's last nn.Linear in registration order (its classifier head), if any."""
    linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
    return linears[-1] if linears else None


def _torchvision_weights(arch: str, weights_name: str | None):
    import torchvision.models as models

    if arch not in models.list_models(module=models):
        close = difflib.get_close_matches(arch, models.list_models(module=models), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise GaneditError(
            f"unknown classifier {arch!r}; {hint}use a torchvision ImageNet classifier name (resnet50, alexnet, "
            "vit_b_16, ...), places365-ARCH, toy, or a local file ARCH=PATH with --labels"
        )
    enum = models.get_model_weights(arch)
    name = weights_name or "DEFAULT"
    try:
        return enum[name]
    except KeyError:
        raise GaneditError(
            f"classifier {arch!r} has no weights {name!r}; known: {', '.join(member.name for member in enum)}"
        ) from None


def _preprocess_from_transforms(weights) -> Preprocess:
    transforms = weights.transforms()
    return Preprocess(
        resize_size=transforms.resize_size[0] if transforms.resize_size else None,
        crop_size=transforms.crop_size[0],
        mean=transforms.mean,
        std=transforms.std,
        interpolation=transforms.interpolation.value,
    )


def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def pretrained_torchvision(arch: str, weights, what: str) -> nn.Module:
    """torchvision's `arch` with `weights` (a weights enum member) from `hub_checkpoints()`, downloaded there
    and hash-checked by torchvision when missing; offline and missing, the error names the file, the folder
    and the address. `what` names the user of the weights in errors (e.g. "classifier resnet50:IMAGENET1K_V2").
    """
    import torchvision.models as models

    from ganedit.store.zoo import is_offline

    filename = os.path.basename(weights.url)
    folder = hub_checkpoints()
    if not (folder / filename).is_file() and is_offline():
        raise GaneditError(
            f"{what}: weights file {filename} not found in {folder} and offline mode is on; "
            f"download {weights.url} into that folder (or go online once)"
        )
    try:
        return models.get_model(arch, weights=weights)
    except (OSError, RuntimeError) as error:
        raise GaneditError(
            f"{what}: could not get weights file {filename} ({error}); download {weights.url} into {folder}"
        ) from None


def torchvision_judge(arch: str, weights_name: str | None = None, *, random_weights_for_tests: bool = False) -> Judge:
    """A torchvision ImageNet classifier with its official weights (downloaded once, hash-checked).

    `random_weights_for_tests=True` builds it with random weights (and the preprocessing of its
    weights): for ganedit's own tests only.
    """
    import torchvision.models as models

    weights = _torchvision_weights(arch, weights_name)
    spec = f"{arch}:{weights.name}"
    if random_weights_for_tests:
        network = models.get_model(arch, weights=None, num_classes=len(weights.meta["categories"]))
    else:
        network = pretrained_torchvision(arch, weights, f"classifier {spec}")
    return Judge(network, weights.meta["categories"], spec, _preprocess_from_transforms(weights), last_linear(network))


def places365_judge(arch: str) -> Judge:
    """A Places365 CNN (the Places365 authors' `{arch}_places365.pth.tar`), ImageNet preprocessing at 224."""
    import torchvision.models as models

    if arch not in PLACES365_ARCHS:
        raise GaneditError(
            f"unknown Places365 classifier places365-{arch}; known: places365-{', places365-'.join(PLACES365_ARCHS)}"
        )
    path = _places365_file(arch)
    state = _places365_state_dict(path)
    network = models.get_model(arch, weights=None, num_classes=365)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise GaneditError(
            f"{path}: not the Places365 {arch} weights ({' '.join(first[:2])[:300]}); delete it to download it again"
        ) from None
    preprocess = Preprocess(resize_size=256, crop_size=224)
    return Judge(network, places365_labels(), f"places365-{arch}", preprocess, last_linear(network))


def _places365_file(arch: str) -> Path:
    from ganedit.store import zoo

    filename = f"{arch}_places365.pth.tar"
    folder = hub_checkpoints()
    path = folder / filename
    url = PLACES365_URL.format(arch=arch)
    if not path.is_file():
        if zoo.is_offline():
            raise GaneditError(
                f"classifier places365-{arch}: weights file {filename} not found in {folder} and offline mode is on; "
                f"download {url} into that folder (or go online once)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        zoo.download(f"classifier places365-{arch}", (url,), path)
    zoo.check_pin(path, folder / PLACES365_PINS)
    return path


def _places365_state_dict(path: Path) -> dict:
    from ganedit.store.safe_torch import safe_torch_load

    contents = safe_torch_load(path)
    state = contents.get("state_dict") if isinstance(contents, dict) else None
    if not isinstance(state, dict):
        raise GaneditError(
            f"{path}: expected a dict with a 'state_dict' (a Places365 .pth.tar); delete it to download it again"
        )
    # Saved from DataParallel: 'module.' prefixes (on 'features.module.' for AlexNet); DenseNet files
    # use the old 'norm.1' key style that torchvision's own DenseNet loader also renames.
    renamed = {}
    for key, tensor in state.items():
        key = key.replace("module.", "")
        key = re.sub(
            r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$",
            r"\1\2",
            key,
        )
        renamed[key] = tensor
    return renamed


def local_judge(arch: str | None, path: Path, labels_file: Path | None) -> Judge:
    """A classifier of torchvision architecture `arch` from a local state-dict file and a labels file."""
    import torchvision.models as models
    from safetensors import SafetensorError, safe_open

    from ganedit.store.safe_torch import safe_torch_load

    if labels_file is None:
        raise GaneditError(f"classifier file {path} needs a labels file: --labels FILE (one class name per line)")
    labels = read_labels(labels_file)
    metadata = {}
    try:
        with safe_open(str(path), "pt") as stream:
            metadata = stream.metadata() or {}
            state = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError, ValueError):
        state = safe_torch_load(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise GaneditError(
                f"{path}: expected a state dict (safetensors or torch.save of a dict of tensors)"
            ) from None
    arch = arch or metadata.get("arch")
    if not arch:
        raise GaneditError(
            f"classifier file {path}: its architecture is unknown; give it as ARCH=PATH (e.g. resnet18={path})"
        )
    if arch not in models.list_models(module=models):
        raise GaneditError(f"classifier file {path}: {arch!r} is not a torchvision classification architecture")
    state = {key.replace("module.", ""): tensor for key, tensor in state.items()}
    network = models.get_model(arch, weights=None, num_classes=len(labels))
    expected = network.state_dict()
    for key, tensor in expected.items():
        if key in state and state[key].shape != tensor.shape and tensor.shape[:1] == (len(labels),):
            raise GaneditError(
                f"labels file {labels_file} has {len(labels)} labels but classifier {path} has "
                f"{state[key].shape[0]} outputs; give one label per output, in output order"
            )
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = " ".join(str(error).strip().splitlines()[:2])[:300]
        raise GaneditError(f"classifier file {path} does not hold {arch} weights ({first})") from None

    def number(key, default):
        return json.loads(metadata[key]) if key in metadata else default

    preprocess = Preprocess(
        resize_size=number("resize_size", 256),
        crop_size=number("crop_size", 224),
        mean=number("mean", IMAGENET_MEAN),
        std=number("std", IMAGENET_STD),
    )
    return Judge(network, labels, f"{arch}={path}", preprocess, last_linear(network))


def toy_judge(attribute: str = "shape", strict: bool = False) -> ToyOracleJudge:
    """The shipped toy oracle over one attribute: the forgiving one, or with `strict` the strict one."""
    try:
        from ganedit.toy.oracle import load_oracle
    except ImportError:
        raise GaneditError("the toy oracle is not available in this ganedit (ganedit.toy.oracle is missing)") from None
    oracle = load_oracle(strict=strict)
    spec, what = ("toy-strict", "strict toy oracle") if strict else ("toy", "toy oracle")
    if attribute not in oracle.labels:
        raise GaneditError(
            f"the {what} has no attribute {attribute!r}; use one of: "
            + ", ".join(f"{spec}:{name}" for name in oracle.labels)
        )
    return ToyOracleJudge(oracle, attribute, "toy-oracle-strict" if strict else "toy-oracle")


def load_judge(spec: str, labels_file: Path | str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """A judge from its spec (see the module docstring), frozen, in eval mode, on `device`."""
    spec = spec.strip()
    labels_file = Path(labels_file) if labels_file is not None else None
    arch, _, path_text = spec.partition("=")
    if _is_local(spec):
        path = Path(path_text) if path_text else Path(spec)
        if not path.is_file():
            raise GaneditError(f"classifier file {path} does not exist")
        judge = local_judge(arch if path_text else None, path, labels_file)
    else:
        if labels_file is not None:
            raise GaneditError(f"--labels is for a local classifier file (ARCH=PATH); {spec} brings its own labels")
        base, colon, attribute = spec.partition(":")
        if base in TOY_SPECS + STRICT_TOY_SPECS:
            judge = toy_judge(attribute if colon else "shape", strict=base in STRICT_TOY_SPECS)
        elif spec.startswith("places365-"):
            judge = places365_judge(spec[len("places365-") :])
        else:
            arch, _, weights_name = spec.partition(":")
            judge = torchvision_judge(arch, weights_name or None)
    return judge.to(device)


def _is_local(spec: str) -> bool:
    return "=" in spec or Path(spec.strip()).is_file()


def load_judges(specs: Sequence[str], labels_file: Path | str | None = None, device="cpu") -> nn.Module:
    """One judge, or an `Ensemble` of several (mean of log-softmax)."""
    local = [_is_local(spec) for spec in specs]
    if labels_file is not None and not any(local):
        raise GaneditError("--labels is for a local classifier file (ARCH=PATH); none was given with --classifier")
    judges = [
        load_judge(spec, labels_file if is_local else None, device) for spec, is_local in zip(specs, local, strict=True)
    ]
    return judges[0] if len(judges) == 1 else Ensemble(judges)
