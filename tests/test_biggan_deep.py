"""BigGAN-deep: the module and the pytorch-pretrained-biggan reader.

Correctness is checked two ways: against the outputs the package itself wrote for the tiny conformance
checkpoint, and against the package run side by side on random weights in the three published configs.
"""

import dataclasses
import functools
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ganedit.errors import ArchitectureMismatchError, CheckpointFormatError
from ganedit.generators.biggan_deep import BigGANDeep, statistics_at
from ganedit.generators.formats.biggan import PUBLISHED_CONFIGS, read_biggan_folder

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny_folder(conformance_dir):
    return conformance_dir / "biggan-deep-tiny"


@pytest.fixture(scope="module")
def expected(tiny_folder):
    return load_file(tiny_folder / "expected.safetensors")


@pytest.fixture
def tiny(tiny_folder):
    return read_biggan_folder(tiny_folder).generator


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# Conformance: the package's own outputs for the tiny checkpoint.


@pytest.mark.parametrize("truncation", [1.0, 0.4, 0.5])
def test_conformance_onehot(tiny, expected, truncation):
    with torch.no_grad():
        images = tiny(expected["z"] * truncation, expected["onehot"], truncation)
    assert images.dtype == torch.float32
    assert max_error(images, expected[f"img_onehot_t{truncation}"]) < TOLERANCE


def test_conformance_soft(tiny, expected):
    with torch.no_grad():
        images = tiny(expected["z"], expected["soft"], 1.0)
    assert max_error(images, expected["img_soft_t1.0"]) < TOLERANCE


def test_conformance_embedding(tiny, expected):
    with torch.no_grad():
        images = tiny.from_embedding(expected["z"], expected["embedding"], 1.0)
    assert max_error(images, expected["img_embedding_t1.0"]) < TOLERANCE


def test_reader_bundle(tiny_folder):
    bundle = read_biggan_folder(tiny_folder)
    assert isinstance(bundle.generator, BigGANDeep) and not bundle.generator.training
    assert bundle.discriminator is None
    assert bundle.format == "biggan-deep (pytorch-pretrained-biggan)"
    assert bundle.source == str(tiny_folder)
    assert bundle.class_names is None  # 20 classes: not ImageNet
    assert bundle.metadata["config"] == json.loads((tiny_folder / "config.json").read_text())
    assert all(p.requires_grad for p in bundle.generator.parameters())
    from_file = read_biggan_folder(tiny_folder / "pytorch_model.bin").generator
    for (name, a), b in zip(bundle.generator.state_dict().items(), from_file.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# Side by side with pytorch-pretrained-biggan on random weights.

REFERENCE_CASES = [
    # (published config, batch, truncation, conditioning)
    *[("biggan-deep-128", 2, t, "onehot") for t in (1.0, 0.4, 0.405, 0.14)],
    ("biggan-deep-128", 2, 0.405, "soft"),
    ("biggan-deep-128", 2, 0.14, "embedding"),
    ("biggan-deep-256", 1, 1.0, "onehot"),
    ("biggan-deep-512", 1, 1.0, "onehot"),
    ("biggan-deep-512", 1, 0.14, "embedding"),
]


@functools.lru_cache(maxsize=1)  # cases are grouped by config: one pair in memory at a time
def reference_pair(name: str):
    """The package's model with random (seeded) weights in eval mode, and ours with the same state_dict."""
    biggan = pytest.importorskip("pytorch_pretrained_biggan")
    torch.manual_seed(0)
    reference = biggan.BigGAN(biggan.BigGANConfig.from_dict(PUBLISHED_CONFIGS[name]))
    with torch.no_grad():
        for module in reference.modules():
            if hasattr(module, "weight_v"):  # one power-iteration step, as the package's converter does
                weight = module.weight_orig.flatten(1)
                module.weight_v.copy_(F.normalize(weight.t() @ module.weight_u, dim=0))
                module.weight_u.copy_(F.normalize(weight @ module.weight_v, dim=0))
            if hasattr(module, "running_means"):  # different statistics for every truncation
                module.running_means.normal_(0, 0.5)
                module.running_vars.uniform_(0.5, 2.0)
            if hasattr(module, "gamma"):  # 0 at init would switch attention off
                module.gamma.fill_(0.7)
        reference.generator.bn.weight.normal_(1, 0.2)
        reference.generator.bn.bias.normal_(0, 0.2)
    reference.eval()  # in train mode its spectral-norm hooks would update u and v

    ours = BigGANDeep(BigGANDeep.Config(**PUBLISHED_CONFIGS[name]))
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(reference.state_dict())
    return reference, ours.eval()


@pytest.mark.parametrize("name, batch, truncation, conditioning", REFERENCE_CASES)
def test_matches_pytorch_pretrained_biggan(name, batch, truncation, conditioning):
    reference, ours = reference_pair(name)
    generator = torch.Generator().manual_seed(1)
    z = truncation * torch.randn(batch, 128, generator=generator).clamp(-2, 2)
    onehot = F.one_hot(torch.tensor([7, 998][:batch]), 1000).float()
    with torch.no_grad():
        if conditioning == "onehot":
            want, got = reference(z, onehot, truncation), ours(z, onehot, truncation)
        elif conditioning == "soft":
            soft = torch.softmax(3 * torch.randn(batch, 1000, generator=generator), dim=1)
            want, got = reference(z, soft, truncation), ours(z, soft, truncation)
        else:
            embedding = torch.randn(batch, 128, generator=generator)
            want = reference.generator(torch.cat([z, embedding], 1), truncation)
            got = ours.from_embedding(z, embedding, truncation)
    resolution = PUBLISHED_CONFIGS[name]["output_dim"]
    assert got.shape == (batch, 3, resolution, resolution)
    assert (want.abs() < 0.9).float().mean() > 0.5, "saturated outputs would make the comparison meaningless"
    assert max_error(got, want) < TOLERANCE


def test_gradients_match_pytorch_pretrained_biggan(tiny_folder, expected):
    """Spectral norm with fixed u, v differentiates like PyTorch's hook in eval mode."""
    biggan = pytest.importorskip("pytorch_pretrained_biggan")
    reference = biggan.BigGAN(biggan.BigGANConfig.from_json_file(tiny_folder / "config.json"))
    reference.load_state_dict(torch.load(tiny_folder / "pytorch_model.bin", weights_only=True), strict=True)
    reference.eval()
    ours = read_biggan_folder(tiny_folder).generator

    gradients = []
    for model in (reference, ours):
        embedding = expected["embedding"].clone().requires_grad_(True)
        model.zero_grad()
        model.generator(torch.cat([expected["z"], embedding], 1), 0.5).square().mean().backward()
        gamma = next(p for n, p in model.named_parameters() if n.endswith("gamma"))
        gradients.append([embedding.grad, model.generator.gen_z.weight_orig.grad, gamma.grad])
    for want, got in zip(*gradients, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


# Module behaviour.


def test_class_indices_equal_onehot(tiny, expected):
    indices = expected["onehot"].argmax(dim=1)
    with torch.no_grad():
        assert max_error(tiny(expected["z"], indices, 1.0), tiny(expected["z"], expected["onehot"], 1.0)) < 1e-6
    assert torch.equal(tiny.embed(indices), tiny.class_embeddings[indices])
    assert torch.equal(tiny.class_embeddings[3], tiny.embeddings.weight[:, 3])


def test_train_mode_never_changes_spectral_norm_vectors(tiny, expected):
    buffers = {name: buffer.clone() for name, buffer in tiny.named_buffers()}
    tiny.train()
    tiny(expected["z"], expected["onehot"], 0.7).mean().backward()
    for name, buffer in tiny.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    assert tiny.generator.gen_z.weight_orig.grad is not None


def test_gradient_reaches_the_embedding(tiny, expected):
    embedding = tiny.embed(expected["onehot"]).detach().requires_grad_(True)
    tiny.from_embedding(expected["z"] * 0.4, embedding, 0.4).square().mean().backward()
    assert torch.isfinite(embedding.grad).all() and embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("truncation", [0.0, -0.5, 1.01])
def test_truncation_out_of_range(tiny, expected, truncation):
    with pytest.raises(ValueError, match="truncation must be in"):
        tiny(expected["z"], expected["onehot"], truncation)


def test_wrong_input_shapes(tiny, expected):
    with pytest.raises(ValueError, match=r"c must have shape \[\*, 20\]"):
        tiny(expected["z"], expected["onehot"][:, :10], 1.0)
    with pytest.raises(ValueError, match=r"z must have shape \[\*, 128\]"):
        tiny(expected["z"][:, :64], expected["onehot"], 1.0)


def test_statistics_at_reproduces_the_package_off_grid():
    stats = torch.arange(51.0)[:, None] * torch.tensor([1.0, -2.0])  # row j holds j * [1, -2]
    assert torch.equal(statistics_at(stats, 0.4), stats[20])
    # 0.405 sits a quarter of the way from row 20 to 21 but weights them 1/4 : 3/4, like 0.415.
    assert torch.allclose(statistics_at(stats, 0.405), stats[20] * 0.25 + stats[21] * 0.75)
    # 0.14 / 0.02 = 7.000000000000001 in floating point: the package takes (almost all of) row 8.
    assert torch.allclose(statistics_at(stats, 0.14), stats[8])


@pytest.mark.parametrize("name", [*PUBLISHED_CONFIGS, "tiny"])
def test_config_round_trips_through_json(name, tiny_folder):
    raw = json.loads((tiny_folder / "config.json").read_text()) if name == "tiny" else PUBLISHED_CONFIGS[name]
    config = BigGANDeep.Config.from_json_dict(raw)
    assert dataclasses.asdict(config) == raw
    module = BigGANDeep(config)
    again = BigGANDeep(BigGANDeep.Config(**json.loads(json.dumps(dataclasses.asdict(config)))))
    assert again.config == config
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}
    assert list(again.state_dict()) == list(module.state_dict())


def test_config_accepts_tuples():
    layers = [tuple(layer) for layer in PUBLISHED_CONFIGS["biggan-deep-128"]["layers"]]
    config = BigGANDeep.Config(**{**PUBLISHED_CONFIGS["biggan-deep-128"], "layers": layers})
    assert config.layers == PUBLISHED_CONFIGS["biggan-deep-128"]["layers"]


@pytest.mark.parametrize(
    "name, millions", [("biggan-deep-128", 50.4), ("biggan-deep-256", 55.9), ("biggan-deep-512", 56.2)]
)
def test_published_parameter_counts(name, millions):
    module = BigGANDeep(BigGANDeep.Config(**PUBLISHED_CONFIGS[name]))
    assert round(sum(p.numel() for p in module.parameters()) / 1e6, 1) == millions


# Reader errors: one line naming the path, the problem and the fix.


def one_line_error(error_type, call, *fragments):
    with pytest.raises(error_type) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, message
    return message


@pytest.fixture
def tiny_copy(tmp_path, tiny_folder):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "pytorch_model.bin"):
        shutil.copyfile(tiny_folder / name, folder / name)
    return folder


def test_missing_config(tiny_copy):
    (tiny_copy / "config.json").unlink()
    one_line_error(CheckpointFormatError, lambda: read_biggan_folder(tiny_copy), tiny_copy, "config.json")
    one_line_error(
        CheckpointFormatError, lambda: read_biggan_folder(tiny_copy / "pytorch_model.bin"), tiny_copy, "config.json"
    )


def test_missing_weights(tiny_copy):
    (tiny_copy / "pytorch_model.bin").unlink()
    one_line_error(CheckpointFormatError, lambda: read_biggan_folder(tiny_copy), tiny_copy, "pytorch_model.bin")


def test_invalid_json(tiny_copy):
    (tiny_copy / "config.json").write_text('{"z_dim": 128,')
    one_line_error(CheckpointFormatError, lambda: read_biggan_folder(tiny_copy), tiny_copy / "config.json", "JSON")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda c: c.pop("layers"), "lacks layers"),
        (lambda c: c.update(z_dim="128"), "z_dim must be a positive integer"),
        (lambda c: c.update(attention_layer_position=8), "attention_layer_position"),
        (lambda c: c["layers"].__setitem__(0, [False, 16]), "layers[0]"),
    ],
)
def test_invalid_config(tiny_copy, change, fragment):
    config = json.loads((tiny_copy / "config.json").read_text())
    change(config)
    (tiny_copy / "config.json").write_text(json.dumps(config))
    one_line_error(CheckpointFormatError, lambda: read_biggan_folder(tiny_copy), tiny_copy / "config.json", fragment)


def test_mismatched_tensors(tiny_copy):
    state = torch.load(tiny_copy / "pytorch_model.bin", weights_only=True)
    del state["generator.gen_z.bias"]
    state["generator.extra"] = torch.zeros(1)
    state["embeddings.weight"] = torch.zeros(128, 21)
    torch.save(state, tiny_copy / "pytorch_model.bin")
    one_line_error(
        ArchitectureMismatchError,
        lambda: read_biggan_folder(tiny_copy),
        tiny_copy / "pytorch_model.bin",
        "missing: generator.gen_z.bias",
        "unexpected: generator.extra",
        "embeddings.weight [128, 21] (expected [128, 20])",
    )


def test_config_for_other_weights(tiny_copy):
    config = json.loads((tiny_copy / "config.json").read_text())
    config["channel_width"] = 16
    (tiny_copy / "config.json").write_text(json.dumps(config))
    one_line_error(ArchitectureMismatchError, lambda: read_biggan_folder(tiny_copy), "mis-shaped", "and ")


def test_not_a_state_dict(tiny_copy):
    torch.save([torch.zeros(1)], tiny_copy / "pytorch_model.bin")
    one_line_error(CheckpointFormatError, lambda: read_biggan_folder(tiny_copy), "state dict of tensors")


def test_imagenet_class_names_and_legacy_file_names(tmp_path, tiny_folder):
    """1000 classes get the ImageNet names; `<name>-pytorch_model.bin` finds `<name>-config.json`."""
    config = {**json.loads((tiny_folder / "config.json").read_text()), "num_classes": 1000}
    torch.manual_seed(0)
    module = BigGANDeep(BigGANDeep.Config.from_json_dict(config))
    (tmp_path / "biggan-deep-tiny-config.json").write_text(json.dumps(config))
    torch.save(module.state_dict(), tmp_path / "biggan-deep-tiny-pytorch_model.bin")

    bundle = read_biggan_folder(tmp_path / "biggan-deep-tiny-pytorch_model.bin")
    assert len(bundle.class_names) == 1000
    assert bundle.class_names[0] == "tench" and bundle.class_names[207] == "golden retriever"
    z = torch.zeros(1, 128)
    with torch.no_grad():
        assert torch.equal(bundle.generator(z, torch.tensor([207]), 1.0), module.eval()(z, torch.tensor([207]), 1.0))
