"""CLIP as a frozen judge of images and text (open_clip), for text-unlearn.

`load_clip(spec)` gives a `ClipModel`: frozen, eval mode, float32, with no gradients into its weights;
`encode_images` takes generator images in [-1, 1] (any size) and preprocesses them on tensors,
differentiably, the way the weights expect (resize of the short side, bicubic with antialiasing, centre
crop, the weights' mean and std; open_clip's own transform does the same on PIL images), so gradients
flow to the images. Both encoders return unit-norm embeddings.

| spec                        | model                                                                    |
|-----------------------------|--------------------------------------------------------------------------|
| `toy-clip` (or `toy`)       | the toy world's tiny CLIP, shipped in the package (train_toy_clip.py)    |
| `ViT-B-32`                  | an open_clip architecture with its `openai` weights (else its first tag) |
| `ViT-B-16:laion2b_s34b_b88k`| an open_clip architecture with the named pretrained weights              |
| `ViT-B-32:/path/weights.pt` | an open_clip architecture with a local weights file (safetensors, or a    |
|                             | weights-only torch file); OpenAI weights need the `-quickgelu` name       |
|                             | (`ViT-B-32-quickgelu:/path/ViT-B-32.pt`)                                  |

Pretrained weights come from the Hugging Face hub into its cache (`$HF_HOME/hub`, by default
`~/.cache/huggingface/hub`) on first use and are read from there, offline too, once present. Offline
(`--offline`, GANEDIT_OFFLINE=1 or HF_HUB_OFFLINE=1) and not cached, the command stops with an error that
names the file, the cache and how to provide it. A CLIP with random weights is never used in place of a
real one; `random_weights_for_benchmarks=True` exists for the cost benchmark only.
"""

import json
import os
from pathlib import Path

import torch
from torch import nn

from ganedit.errors import GaneditError
from ganedit.generators.ops import freeze
from ganedit.judges.classifiers import Preprocess

TOY_SPECS = ("toy", "toy-clip")
TOY_CLIP_FORMAT = "ganedit.toy-clip"
DEFAULT_CLIP = "ViT-B-32"


def toy_clip_path() -> Path:
    from ganedit.store.zoo import PACKAGE_DATA

    return PACKAGE_DATA / "toy-clip.safetensors"


# The toy CLIP's shape: open_clip's ModifiedResNet (CLIP's RN50 design: 3-conv stem, bottleneck stages,
# attention pooling) at width 16 with one block per stage on 32 px images, and a 2-layer text transformer
# over the toy vocabulary (ganedit.toy.captions). A ViT of the same cost on 4x4 patches learned the words
# as well but its gradients changed its verdict with invisible noise: fine-tuning a generator with it
# lowered the CLIP score without changing one colour the oracle sees (PUL 0), where the ResNet's
# gradients change the colour.
TOY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32},
    "text": {"width": 64, "heads": 4, "layers": 2},
}


def build_toy_clip(config: dict = TOY_CLIP_CONFIG) -> nn.Module:
    """An open_clip CLIP with the toy shape (random weights; train_toy_clip.py trains it)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from ganedit.toy.captions import CONTEXT_LENGTH, VOCABULARY_SIZE

    text = CLIPTextCfg(context_length=CONTEXT_LENGTH, vocab_size=VOCABULARY_SIZE, **config["text"])
    return CLIP(config["embed_dim"], CLIPVisionCfg(**config["vision"]), text)


class ClipModel(nn.Module):
    """One frozen CLIP: unit-norm image embeddings (differentiable in the images) and text embeddings."""

    def __init__(self, name: str, model: nn.Module, tokenizer, preprocess: Preprocess):
        super().__init__()
        self.name = name
        self.model = freeze(model.float())
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.train(False)

    def train(self, mode: bool = True) -> "ClipModel":
        return super().train(False)  # always eval

    @property
    def logit_scale(self) -> float:
        """The temperature of CLIP's zero-shot softmax (100 for OpenAI's weights)."""
        return float(self.model.logit_scale.exp())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [-1, 1] -> [N, D] unit-norm embeddings; gradients flow to the images."""
        features = self.model.encode_image(self.preprocess(images.float()))
        return features / features.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> [N, D] unit-norm embeddings."""
        tokens = self.tokenizer(texts).to(self.device)
        features = self.model.encode_text(tokens).float()
        return features / features.norm(dim=-1, keepdim=True)


def load_clip(spec: str = DEFAULT_CLIP, device: str | torch.device = "cpu", *, random_weights_for_benchmarks=False):
    """A frozen ClipModel from a spec (see the module docstring)."""
    spec = spec.strip()
    if spec in TOY_SPECS:
        return load_toy_clip(toy_clip_path(), device)
    if spec.endswith(".safetensors") and Path(spec).is_file() and _is_toy_clip_file(Path(spec)):
        return load_toy_clip(Path(spec), device)
    import open_clip

    name, _, weights = spec.partition(":")
    if name not in open_clip.list_models():
        raise GaneditError(
            f"unknown CLIP model {name!r}; give an open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ... "
            "see open_clip.list_models()) or toy-clip"
        )
    if random_weights_for_benchmarks:
        model = open_clip.create_model(name, pretrained=None, device=device)
        return _wrap(f"{name} (random weights)", model, open_clip.get_tokenizer(name))
    if weights and _looks_like_path(weights):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise GaneditError(f"CLIP weights file {path} does not exist; give an existing open_clip weights file")
        return _create(open_clip, name, str(path), {}, spec, device)
    tags = open_clip.list_pretrained_tags_by_model(name)
    tag = weights or ("openai" if "openai" in tags else (tags[0] if tags else ""))
    if tag not in tags:
        known = ", ".join(tags) if tags else "none; give a local weights file as NAME:/path"
        raise GaneditError(f"no pretrained CLIP weights {tag!r} for {name}; open_clip knows: {known}")
    config = open_clip.get_pretrained_cfg(name, tag)
    file = _pretrained_file(name, tag, config)
    forced = {"force_quick_gelu": bool(config.get("quick_gelu", False))}
    preprocess = {key: config[key] for key in ("mean", "std", "interpolation", "resize_mode") if key in config}
    if preprocess:
        forced["force_preprocess_cfg"] = preprocess
    return _create(open_clip, name, file, forced, f"{name}:{tag}", device)


def load_clips(specs: list[str], device: str | torch.device = "cpu") -> list[ClipModel]:
    if not specs:
        raise GaneditError("no CLIP model given; give --clip NAME (repeatable for an ensemble)")
    return [load_clip(spec, device) for spec in specs]


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.startswith((".", "~")) or Path(text).suffix in (".pt", ".pth", ".bin", ".safetensors")


def _create(open_clip, name: str, file: str, forced: dict, label: str, device) -> ClipModel:
    import pickle

    from safetensors import SafetensorError

    try:
        model = open_clip.create_model(name, pretrained=file, device=device, weights_only=True, **forced)
    except (RuntimeError, KeyError, ValueError, OSError, SafetensorError, pickle.UnpicklingError) as error:
        raise GaneditError(
            f"cannot load CLIP weights {file} into {name}: {str(error).splitlines()[0][:200]}; "
            "give a weights file of that architecture (OpenAI files need NAME-quickgelu)"
        ) from None
    return _wrap(label, model, open_clip.get_tokenizer(name))


def _wrap(label: str, model: nn.Module, tokenizer) -> ClipModel:
    import open_clip

    config = open_clip.get_model_preprocess_cfg(model)
    size = config["size"]
    size = size if isinstance(size, int) else size[0]
    preprocess = Preprocess(size, size, config["mean"], config["std"], config.get("interpolation", "bicubic"))
    return ClipModel(label, model, tokenizer, preprocess.to(next(model.parameters()).device))


def _pretrained_file(name: str, tag: str, config: dict) -> str:
    """The local path of open_clip's pretrained weights (name, tag): cached, else downloaded unless offline."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    from ganedit.store.zoo import is_offline

    hub = config.get("hf_hub", "")
    if not hub:
        raise GaneditError(
            f"CLIP weights {name}:{tag} are not on the Hugging Face hub; download them yourself and give "
            f"--clip {name}:/path/to/weights"
        )
    repo_id, _, filename = hub.rstrip("/").rpartition("/") if not hub.endswith("/") else (hub.rstrip("/"), "", "")
    candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    if filename.endswith(".bin"):
        candidates.insert(0, filename[: -len(".bin")] + ".safetensors")
    for candidate in candidates:
        cached = try_to_load_from_cache(repo_id, candidate)
        if isinstance(cached, str):
            return cached
    if is_offline():
        raise GaneditError(
            f"CLIP weights {name}:{tag} are not cached ({repo_id}/{candidates[0]} in {HF_HUB_CACHE}) and ganedit is "
            f"offline; run once online to cache them, or give a local file: --clip {name}:/path/to/weights"
        )
    last_error = None
    for candidate in candidates:
        try:
            return hf_hub_download(repo_id, candidate)
        except Exception as error:  # noqa: BLE001 (network, missing file: all mean the same to the user)
            last_error = error
    reason = str(last_error).splitlines()[0].split(". ")[0] if str(last_error) else type(last_error).__name__
    raise GaneditError(
        f"cannot download CLIP weights {name}:{tag} ({repo_id}/{candidates[0]}): {reason}; "
        f"give a local file: --clip {name}:/path/to/weights"
    )


# ---------------------------------------------------------------------------------------------------
# The toy CLIP


def save_toy_clip(model: nn.Module, path: Path | str, training: dict) -> Path:
    """Write the toy CLIP with its config and vocabulary; floating tensors in float16 (half the size; it
    computes in float32 once loaded, and scripts/train_toy_clip.py measures it from this file)."""
    from safetensors.torch import save_file

    from ganedit.store.atomic import atomic_write
    from ganedit.toy.captions import VOCABULARY

    metadata = {
        "format": TOY_CLIP_FORMAT,
        "config": json.dumps(TOY_CLIP_CONFIG),
        "vocabulary": json.dumps(VOCABULARY),
        "training": json.dumps(training),
    }
    tensors = {
        name: (tensor.half() if tensor.is_floating_point() else tensor).detach().contiguous().cpu()
        for name, tensor in model.state_dict().items()
    }
    return atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def _is_toy_clip_file(path: Path) -> bool:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as file:
            return (file.metadata() or {}).get("format") == TOY_CLIP_FORMAT
    except Exception:  # noqa: BLE001
        return False


def load_toy_clip(path: Path, device: str | torch.device = "cpu") -> ClipModel:
    from safetensors import safe_open

    from ganedit.generators.registry import load_exact_state
    from ganedit.toy.captions import VOCABULARY, tokenize

    if not path.is_file():
        raise GaneditError(f"the toy CLIP {path} is missing; reinstall ganedit or run scripts/train_toy_clip.py")
    with safe_open(str(path), "pt") as file:
        metadata = file.metadata() or {}
        state = {key: file.get_tensor(key) for key in file.keys()}
    state = {key: tensor.float() if tensor.is_floating_point() else tensor for key, tensor in state.items()}
    if metadata.get("format") != TOY_CLIP_FORMAT or json.loads(metadata.get("vocabulary", "[]")) != VOCABULARY:
        raise GaneditError(f"{path} is not a toy CLIP of this ganedit version; run scripts/train_toy_clip.py")
    model = build_toy_clip(json.loads(metadata["config"]))
    model.arch = "toy-clip"
    load_exact_state(model, state, str(path))
    model.to(device)
    preprocess = Preprocess(32, 32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bicubic").to(device)
    return ClipModel("toy-clip", model, tokenize, preprocess)


@torch.no_grad()
def image_embeddings(clip: ClipModel, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """CLIP's unit-norm image embeddings [N, D] of images in [-1, 1], on the CPU."""
    return torch.cat([clip.encode_images(chunk.to(clip.device)).cpu() for chunk in images.split(batch_size)])


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """W1 between two empirical 1-D distributions of equal size: mean |sorted a - sorted b| (the paper's measure)."""
    return float((a.sort().values - b.sort().values).abs().mean())
