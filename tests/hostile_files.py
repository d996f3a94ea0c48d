"""Hostile model files: crafted, damaged or absurd checkpoints, each refused in one line (exit 2), never
an internal error, never code from the file run.

Crafted files start from the embedded toy models (ganedit's own format: metadata and tensors rewritten
with safetensors), from torch.save / pickle of small structures, and, for the rosinality and NVIDIA
formats' non-finite weights, from the conformance checkpoints (skipped where they are absent).
"""

import argparse
import collections
import contextlib
import json
import os
import pickle
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from helpers import CreatesAFile, OpensAFile
from hostile import Case
from safetensors import safe_open
from safetensors.torch import save_file

DATA = Path(__file__).resolve().parents[1] / "ganedit" / "data"
CONFORMANCE = Path(
    os.environ.get("GANEDIT_CONFORMANCE", Path(__file__).resolve().parents[2] / "shared" / "conformance")
)
DEEP = "[" * 100_000 + "]" * 100_000  # valid JSON that json.loads cannot parse without a RecursionError


# ---------------------------------------------------------------------------------------------------
# Writers of crafted files


def toy_contents(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the metadata of an embedded toy model."""
    with safe_open(str(DATA / f"{name}.safetensors"), "pt") as stream:
        return {key: stream.get_tensor(key) for key in stream.keys()}, dict(stream.metadata())


def rewritten(name: str, target: str, metadata=None, config=None, discriminator_config=None, tensors=None):
    """A setup that writes {in}/target: the toy model `name` with metadata entries replaced (None: removed),
    config keys of its generator (and discriminator) replaced (None: removed), or tensors changed in place."""

    def setup(folder: Path) -> None:
        state, entries = toy_contents(name)
        for key, changes in (("ganedit.generator", config), ("ganedit.discriminator", discriminator_config)):
            if changes:
                spec = json.loads(entries[key])
                for field, value in changes.items():
                    if value is None:
                        spec["config"].pop(field)
                    else:
                        spec["config"][field] = value
                entries[key] = json.dumps(spec)
        for key, value in (metadata or {}).items():
            if value is None:
                entries.pop(key)
            else:
                entries[key] = value
        if tensors is not None:
            tensors(state)
        save_file(state, folder / target, metadata=entries)

    return setup


def poison(key: str, value: float):
    def change(state: dict[str, torch.Tensor]) -> None:
        state[key] = state[key].clone()
        state[key].view(-1)[3] = value

    return change


def generator_as_discriminator(state: dict[str, torch.Tensor]) -> None:
    for key in [key for key in state if key.startswith("D.")]:
        del state[key]
    state.update({"D." + key[2:]: tensor.clone() for key, tensor in state.items() if key.startswith("G.")})


def cut(name: str, target: str, fraction: float | None = None, size: int | None = None):
    """A setup that writes the toy model `name` cut short, to `size` bytes or to `fraction` of its size."""

    def setup(folder: Path) -> None:
        data = (DATA / f"{name}.safetensors").read_bytes()
        (folder / target).write_bytes(data[: size if size is not None else int(len(data) * fraction)])

    return setup


def biggan_folder(config_changes=None, nan_key=None, config_text=None):
    """A setup that writes {in}/model, the toy BigGAN as a pytorch-pretrained-biggan folder."""

    def setup(folder: Path) -> None:
        state, entries = toy_contents("toy-biggan")
        config = json.loads(entries["ganedit.generator"])["config"]
        config.update(config_changes or {})
        state = {key.removeprefix("G."): tensor for key, tensor in state.items()}
        if nan_key is not None:
            poison(nan_key, float("nan"))(state)
        (folder / "model").mkdir()
        (folder / "model" / "config.json").write_text(config_text if config_text is not None else json.dumps(config))
        torch.save(state, folder / "model" / "pytorch_model.bin")

    return setup


def pickled(target: str, contents, protocol: int = 4, truncate: float | None = None):
    """A setup that pickles `contents(folder)` (plain pickle, as an NVIDIA .pkl is) into {in}/target."""

    def setup(folder: Path) -> None:
        data = pickle.dumps(contents(folder), protocol=protocol)
        (folder / target).write_bytes(data if truncate is None else data[: int(len(data) * truncate)])

    return setup


def torch_saved(target: str, contents, truncate: float | None = None, recursion: int | None = None):
    """A setup that torch.saves `contents(folder)` into {in}/target (optionally cut short)."""

    def setup(folder: Path) -> None:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, recursion or 0))
        try:
            torch.save(contents(folder), folder / target)
        finally:
            sys.setrecursionlimit(limit)
        if truncate is not None:
            data = (folder / target).read_bytes()
            (folder / target).write_bytes(data[: int(len(data) * truncate)])

    return setup


def nested(depth: int) -> list:
    value = []
    for _ in range(depth):
        value = [value]
    return value


@contextlib.contextmanager
def nvidia_persistence():
    """While active, objects of the yielded class pickle as NVIDIA's `torch_utils.persistence` networks do:
    a call to `_reconstruct_persistent_obj(meta)` (the module exists only in this process, only to pickle)."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called")

    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    saved = {name: sys.modules.get(name) for name in (package.__name__, module.__name__)}
    sys.modules.update({package.__name__: package, module.__name__: module})

    class Persistent:
        def __init__(self, class_name, modules=(), **attributes):
            state = {"_parameters": {}, "_buffers": {}, "_modules": dict(modules), **attributes}
            self.meta = {"type": "class", "version": 6, "module_src": "", "class_name": class_name, "state": state}

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    try:
        yield Persistent
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def nvidia_generator(target: str, **attributes):
    """A setup that writes a network pickle whose G_ema has a mapping and a synthesis network and `attributes`."""

    def setup(folder: Path) -> None:
        with nvidia_persistence() as Persistent:
            network = Persistent(
                "Generator",
                {"mapping": Persistent("MappingNetwork"), "synthesis": Persistent("SynthesisNetwork")},
                **attributes,
            )
            (folder / target).write_bytes(pickle.dumps({"G_ema": network, "training_set_kwargs": {}}, protocol=4))

    return setup


class Calls:
    """Pickles as a call of an allowed global with the given (wrong) arguments."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return (self.function, self.arguments)


def typed_storage(size: int):
    """A float32 storage as tensors pickle theirs (`torch.storage._load_from_bytes`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage is deprecated, but it is what pickles hold
        return torch.zeros(size).storage()


def conformance(name: str) -> Path:
    path = CONFORMANCE / name
    if not path.exists():
        pytest.skip(f"conformance data not found at {CONFORMANCE}; set GANEDIT_CONFORMANCE to its folder")
    return path


def rosinality_with_nan(folder: Path) -> None:
    checkpoint = _rosinality_checkpoint()
    checkpoint["g_ema"]["convs.0.conv.weight"].view(-1)[5] = float("nan")
    torch.save(checkpoint, folder / "nan.pt")


def rosinality_with_deep_args(folder: Path) -> None:
    checkpoint = _rosinality_checkpoint()
    checkpoint["args"] = argparse.Namespace(size=32, hostile=nested(5000))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        torch.save(checkpoint, folder / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)


def _rosinality_checkpoint() -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(conformance("rosinality-sg2-tiny.pt"), weights_only=True, map_location="cpu")


def nvidia_with_infinity(folder: Path) -> None:
    """The NVIDIA conformance pickle with one weight of G_ema's 4x4 constant overwritten by +inf in place."""
    data = bytearray(conformance("nvidia-sg2-tiny.pkl").read_bytes())
    with safe_open(str(conformance("nvidia-sg2-tiny.state.safetensors")), "pt") as stream:
        key = next(key for key in stream.keys() if key.endswith("synthesis.b4.const"))
        const = stream.get_tensor(key).contiguous().numpy().tobytes()
    at = data.find(const)
    assert at >= 0, "the constant's bytes are not in the pickle"
    data[at : at + 4] = torch.tensor([float("inf")]).numpy().tobytes()
    (folder / "inf.pkl").write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------
# The cases

SG2 = "{in}/model.safetensors"
BIGGAN = "{in}/biggan.safetensors"
INFO = ["info"]
INFO_RECIPE = ["info", "--recipe"]
SAMPLE = ["sample", "-n", "1", "-o", "{out}/s.png"]
CONVERT = ["convert", "-o", "{out}/c.safetensors"]
EVAL = ["eval", "--metrics", "lpips", "--lpips", "toy", "--samples", "4", "--diversity-samples", "4"]
UNLEARN = ["unlearn", "--feature", "star", "--judge", "toy", "-o", "{out}/o.safetensors"]
MERGE_WITH = ["toy-stylegan2-b", "-o", "{out}/m.safetensors"]


def command(kind: list[str], model: str) -> list[str]:
    """argv running the command `kind` on `model` (merge takes it as its first model)."""
    if kind is MERGE_WITH:
        return ["merge", model, *MERGE_WITH]
    return [kind[0], model, *kind[1:]]


def files_case(name: str, kind: list[str], model: str, expect: str, setup, **options) -> Case:
    return Case("files", name, command(kind, model), expect, setup, **options)


CASES: list[Case] = [
    # 1. ganedit files with malformed metadata: the config is checked against its dataclass, once.
    files_case("config-resolution-31", INFO, SG2, "img_resolution must be a power of two",
               rewritten("toy-stylegan2", "model.safetensors", config={"img_resolution": 31})),
    files_case("config-negative-z-dim", SAMPLE, SG2, "z_dim must be a positive integer",
               rewritten("toy-stylegan2", "model.safetensors", config={"z_dim": -64})),
    files_case("config-string-for-int", CONVERT, SG2, "w_dim = '64' is not an integer",
               rewritten("toy-stylegan2", "model.safetensors", config={"w_dim": "64"})),
    files_case("config-channels-strings", EVAL, SG2, "channels = ['a', 'b', 'c', 'd'] is not a list of integers",
               rewritten("toy-stylegan2", "model.safetensors", config={"channels": ["a", "b", "c", "d"]})),
    files_case("config-missing-key", UNLEARN, SG2, "config lacks mapping_layers",
               rewritten("toy-stylegan2", "model.safetensors", config={"mapping_layers": None})),
    files_case("config-extra-key", MERGE_WITH, SG2, "unknown stylegan2-generator config key(s) 'bogus'",
               rewritten("toy-stylegan2", "model.safetensors", config={"bogus": 1})),
    files_case("config-nan-multiplier", INFO, SG2, "mapping_lr_multiplier = nan is not a finite number",
               rewritten("toy-stylegan2", "model.safetensors", config={"mapping_lr_multiplier": float("nan")})),
    files_case("config-not-an-object", SAMPLE, SG2, "must be an object with 'arch' and 'config'",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.generator": "[1, 2]"})),
    files_case("unknown-architecture", INFO, SG2, "unknown architecture 'stylegan9'",
               rewritten("toy-stylegan2", "model.safetensors",
                         metadata={"ganedit.generator": json.dumps({"arch": "stylegan9", "config": {}})})),
    files_case("discriminator-conditional-without-mapping", UNLEARN, SG2, "conditional discriminator (c_dim > 0)",
               rewritten("toy-stylegan2", "model.safetensors", discriminator_config={"c_dim": 3})),
    files_case("deep-json-generator", INFO, SG2, "ganedit.generator is nested too deeply",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.generator": DEEP})),
    files_case("deep-json-provenance", SAMPLE, SG2, "ganedit.provenance is nested too deeply",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.provenance": DEEP})),
    files_case("deep-json-class-names", INFO, BIGGAN, "ganedit.class_names is nested too deeply",
               rewritten("toy-biggan", "biggan.safetensors", metadata={"ganedit.class_names": DEEP})),
    files_case("deep-json-extra", CONVERT, SG2, "ganedit.extra is nested too deeply",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.extra": DEEP})),
    files_case("class-names-not-strings", INFO, BIGGAN, "class_names must be a list of strings",
               rewritten("toy-biggan", "biggan.safetensors", metadata={"ganedit.class_names": json.dumps([0] * 9)})),
    files_case("class-names-wrong-length", SAMPLE, BIGGAN, "lists 3 names for a generator with 9 classes",
               rewritten("toy-biggan", "biggan.safetensors", metadata={"ganedit.class_names": '["a", "b", "c"]'})),
    files_case("provenance-not-an-object", INFO, SG2, "ganedit.provenance must be an object",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.provenance": "[1, 2, 3]"})),
    files_case("provenance-recipe-not-an-object", EVAL, SG2, "recipe must be an object",
               rewritten("toy-stylegan2", "model.safetensors", metadata={"ganedit.provenance": '{"recipe": 7}'})),
    files_case("provenance-recipe-settings-not-an-object", EVAL, SG2, "settings must be an object",
               rewritten("toy-stylegan2", "model.safetensors",
                         metadata={"ganedit.provenance": '{"recipe": {"settings": [1]}}'})),
    files_case("provenance-recipe-eval-samples-string", EVAL, SG2, "eval_samples must be a positive integer",
               rewritten("toy-stylegan2", "model.safetensors",
                         metadata={"ganedit.provenance": '{"recipe": {"eval_samples": "many"}}'})),
    files_case("provenance-recipe-null-in-a-list", INFO_RECIPE, SG2, "cannot be written as TOML",
               rewritten("toy-stylegan2", "model.safetensors",
                         metadata={"ganedit.provenance": '{"recipe": {"models": ["a", null]}}'})),
    files_case("config-150-gb-of-channels", INFO, SG2, "needs at least",
               rewritten("toy-stylegan2", "model.safetensors", config={"channels": [24_000] * 4}), timeout=60),
    files_case("config-astronomical-z-dim", MERGE_WITH, SG2, "needs at least",
               rewritten("toy-stylegan2", "model.safetensors", config={"z_dim": 10**30}), timeout=60),
    files_case("biggan-config-astronomical-n-stats", INFO, "{in}/model", "needs at least",
               biggan_folder(config_changes={"n_stats": 10**12}), timeout=60),
    files_case("biggan-config-deep-json", SAMPLE, "{in}/model", "nested too deeply",
               biggan_folder(config_text=DEEP)),
    files_case("discriminator-is-a-generator", UNLEARN, SG2, "ganedit.discriminator records a stylegan2-generator",
               rewritten("toy-stylegan2", "model.safetensors", tensors=generator_as_discriminator,
                         metadata={"ganedit.discriminator": toy_contents("toy-stylegan2")[1]["ganedit.generator"]})),
    files_case("stray-tensor", INFO, SG2, "tensor 'X.weight' belongs to no network",
               rewritten("toy-stylegan2", "model.safetensors",
                         tensors=lambda state: state.update({"X.weight": torch.zeros(2)}))),
    # 2. non-finite weights, in every format
    files_case("nan-generator-weight", INFO, SG2, "pass --allow-nonfinite to load it anyway",
               rewritten("toy-stylegan2", "model.safetensors",
                         tensors=poison("G.synthesis.b8.conv0.weight", float("nan")))),
    files_case("infinite-generator-weight", SAMPLE, BIGGAN, "holds infinity",
               rewritten("toy-biggan", "biggan.safetensors",
                         tensors=poison("G.generator.conv_to_rgb.weight_orig", float("inf")))),
    files_case("nan-discriminator-weight", UNLEARN, SG2, "the discriminator tensor b8.conv1.weight holds NaN",
               rewritten("toy-stylegan2", "model.safetensors", tensors=poison("D.b8.conv1.weight", float("nan")))),
    files_case("nan-biggan-folder", CONVERT, "{in}/model", "generator tensor generator.gen_z.weight_orig holds NaN",
               biggan_folder(nan_key="generator.gen_z.weight_orig")),
    files_case("nan-rosinality", INFO, "{in}/nan.pt", "synthesis.b8.conv0.weight holds NaN", rosinality_with_nan),
    files_case("infinite-nvidia-pickle", SAMPLE, "{in}/inf.pkl", "synthesis.b4.const holds infinity",
               nvidia_with_infinity),
    # 4. truncated files are damaged downloads, not files "without ganedit metadata"
    files_case("safetensors-cut-in-header", INFO, SG2, "truncated or damaged",
               cut("toy-stylegan2", "model.safetensors", size=300)),
    files_case("safetensors-cut-in-data", SAMPLE, SG2, "truncated or damaged",
               cut("toy-stylegan2", "model.safetensors", fraction=0.7)),
    files_case("torch-zip-cut", INFO, "{in}/model.pt", "truncated or damaged",
               torch_saved("model.pt", lambda folder: {"g_ema": {"style.1.weight": torch.zeros(64, 64)}}, 0.6)),
    files_case("pickle-cut", CONVERT, "{in}/model.pkl", "truncated or damaged",
               pickled("model.pkl", lambda folder: {"G_ema": {"weights": torch.zeros(512)}}, truncate=0.5)),
    # 3. crafted pickles: refused in one line, their code never run (a marker would appear in {in})
    files_case("torch-pt-runs-code", INFO, "{in}/evil.pt", "refused to load",
               torch_saved("evil.pt", lambda folder: {"g_ema": {}, "args": CreatesAFile(folder / "pwned")})),
    files_case("nvidia-pickle-opens-a-file", SAMPLE, "{in}/evil.pkl", "refused to load",
               pickled("evil.pkl", lambda folder: {"G_ema": OpensAFile(folder / "pwned")})),
    files_case("torch-pt-allowed-global-wrong-arguments", INFO, "{in}/model.pt", "not a readable PyTorch checkpoint",
               torch_saved("model.pt", lambda folder: {"args": Calls(argparse.Namespace, 1, 2)})),
    files_case("torch-pt-deep-args", CONVERT, "{in}/deep.pt", "RecursionError", rosinality_with_deep_args),
    files_case("nvidia-pickle-allowed-global-wrong-arguments", INFO, "{in}/model.pkl", "truncated or damaged",
               pickled("model.pkl", lambda folder: {"G_ema": Calls(collections.OrderedDict, 1, 2, 3)})),
    files_case("nvidia-pickle-dict-for-network", EVAL, "{in}/model.pkl", "no 'G_ema' network",
               pickled("model.pkl", lambda folder: {"G_ema": {"class_name": "Generator", "state": {}}})),
    files_case("nvidia-pickle-absurd-tensor-size", INFO, "{in}/model.pkl", "beyond its storage of 4 elements",
               pickled("model.pkl", lambda folder: {"G_ema": Calls(
                   torch._utils._rebuild_tensor_v2, typed_storage(4), 0, (10**6, 10**6), (10**6, 1),
                   False, collections.OrderedDict())})),
    files_case("nvidia-pickle-string-resolution", INFO, "{in}/model.pkl", "records img_resolution '1024'",
               nvidia_generator("model.pkl", img_resolution="1024")),
    files_case("nvidia-pickle-huge-resolution", MERGE_WITH, "{in}/model.pkl", "not a power of two from 4 to",
               nvidia_generator("model.pkl", img_resolution=2**100_000)),
]  # fmt: skip
