"""StyleGAN2: the readers reproduce the reference implementations' outputs, refuse code, and the modules
rebuild from their JSON config."""

import argparse
import dataclasses
import json
import pickle
import sys
import types

import pytest
import torch
from helpers import CreatesAFile, OpensAFile
from safetensors import safe_open
from safetensors.torch import load_file

import ganedit
from ganedit.errors import ArchitectureMismatchError, CheckpointFormatError, UnsafeCheckpointError
from ganedit.generators.formats.nvidia_pickle import load_network_pickle, read_nvidia_pickle
from ganedit.generators.formats.rosinality import W_AVG_SAMPLES, read_rosinality
from ganedit.generators.registry import ARCHITECTURES
from ganedit.generators.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

TOLERANCE = 1e-4  # max abs error; the references run in float32 with other operation orders
NVIDIA_PICKLES = ["nvidia-sg2-tiny", "nvidia-sg2-tiny-c2"]


def assert_close(name, actual, expected):
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    error = (actual - expected).abs().max().item()
    assert error < TOLERANCE, f"{name}: max abs error {error:.3g}"


@pytest.fixture(scope="module")
def rosinality(conformance_dir):
    return read_rosinality(conformance_dir / "rosinality-sg2-tiny.pt"), load_file(
        conformance_dir / "rosinality-sg2-tiny.expected.safetensors"
    )


# ---------------------------------------------------------------------------------------------------
# Conformance: rosinality/stylegan2-pytorch


@torch.no_grad()
def test_rosinality_generator_reproduces_reference(rosinality):
    bundle, expected = rosinality
    G = bundle.generator
    z, z2 = expected["z"], expected["z2"]
    assert_close("latent_avg", G.mapping.w_avg, expected["latent_avg"])
    assert_close("img_psi1", G(z), expected["img_psi1"])
    assert_close("img_psi0.7", G(z, truncation_psi=0.7), expected["img_psi0.7"])
    ws = G.mapping(z)
    assert_close("w", ws[:, 0], expected["w"])
    assert_close("img_w", G.synthesis(expected["w"].unsqueeze(1).repeat(1, G.num_ws, 1)), expected["img_w"])
    mixed = torch.cat([ws[:, :3], G.mapping(z2)[:, 3:]], dim=1)  # first 3 ws from z, the rest from z2
    assert_close("img_mix_inject3", G.synthesis(mixed), expected["img_mix_inject3"])


@torch.no_grad()
def test_rosinality_discriminator_reproduces_reference(rosinality):
    bundle, expected = rosinality
    assert_close("d_logits", bundle.discriminator(expected["d_input"]), expected["d_logits"])


def test_rosinality_sizes_come_from_the_tensors(rosinality):
    bundle, _ = rosinality
    G, D = bundle.generator, bundle.discriminator
    assert bundle.format == "stylegan2 (rosinality .pt)"
    assert (G.z_dim, G.w_dim, G.c_dim, G.img_resolution, G.num_ws) == (64, 64, 0, 32, 8)
    assert G.config.channels == [64, 64, 48, 32] and G.config.mapping_layers == 2 and G.config.conv_clamp is None
    assert D.config.channels == [64, 64, 48, 32] and D.config.img_resolution == 32
    assert bundle.metadata["training_args"]["latent"] == 64
    assert bundle.metadata["w_avg_source"] == "latent_avg stored in the checkpoint"
    assert not G.training and not D.training


def _rosinality_checkpoint(conformance_dir):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(conformance_dir / "rosinality-sg2-tiny.pt", weights_only=True)


def test_rosinality_without_latent_avg_estimates_w_avg(conformance_dir, tmp_path, rosinality):
    checkpoint = _rosinality_checkpoint(conformance_dir)
    path = tmp_path / "converted.pt"
    torch.save({"g_ema": checkpoint["g_ema"]}, path)
    bundle = read_rosinality(path)
    assert bundle.discriminator is None
    assert f"{W_AVG_SAMPLES} z's" in bundle.metadata["w_avg_source"]
    # Another sample of 4096 z's than the reference's: the means agree to sampling error.
    assert torch.allclose(bundle.generator.mapping.w_avg, rosinality[1]["latent_avg"], atol=0.15)


def test_rosinality_falls_back_to_g_without_g_ema(conformance_dir, tmp_path):
    checkpoint = _rosinality_checkpoint(conformance_dir)
    path = tmp_path / "g_only.pt"
    torch.save({"g": checkpoint["g"], "d": checkpoint["d"], "latent_avg": checkpoint["latent_avg"]}, path)
    bundle = read_rosinality(path)
    assert bundle.metadata["generator_weights"] == "g"
    assert bundle.discriminator is not None


def test_rosinality_refuses_foreign_and_damaged_checkpoints(conformance_dir, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointFormatError, match="not a rosinality StyleGAN2 checkpoint"):
        read_rosinality(path)

    checkpoint = _rosinality_checkpoint(conformance_dir)
    misshaped = dict(checkpoint["g_ema"], **{"convs.3.conv.weight": torch.zeros(1, 48, 40, 3, 3)})
    torch.save({"g_ema": misshaped, "latent_avg": checkpoint["latent_avg"]}, path)
    with pytest.raises(ArchitectureMismatchError, match="convs.3|conv1.weight"):
        read_rosinality(path)

    extra = dict(checkpoint["g_ema"], **{"convs.3.extra": torch.zeros(3)})
    torch.save({"g_ema": extra, "latent_avg": checkpoint["latent_avg"]}, path)
    with pytest.raises(ArchitectureMismatchError, match="convs.3.extra"):
        read_rosinality(path)

    missing = {key: value for key, value in checkpoint["d"].items() if key != "final_linear.1.bias"}
    torch.save({"g_ema": checkpoint["g_ema"], "d": missing}, path)
    with pytest.raises(ArchitectureMismatchError, match="b4.out.bias"):
        read_rosinality(path)


# ---------------------------------------------------------------------------------------------------
# Conformance: NVlabs/stylegan2-ada-pytorch network pickles


@pytest.mark.parametrize("name", NVIDIA_PICKLES)
@torch.no_grad()
def test_nvidia_pickle_reproduces_reference(conformance_dir, name):
    bundle = read_nvidia_pickle(conformance_dir / f"{name}.pkl")
    expected = load_file(conformance_dir / f"{name}.expected.safetensors")
    G, D = bundle.generator, bundle.discriminator
    z, c = expected["z"], expected["c"]
    assert_close("img_psi1", G(z, c), expected["img_psi1"])
    assert_close("img_psi0.7", G(z, c, truncation_psi=0.7), expected["img_psi0.7"])
    assert_close("ws_psi1", G.mapping(z, c), expected["ws_psi1"])
    assert_close("d_logits", D(expected["d_input"], c), expected["d_logits"])
    assert bundle.format == "stylegan2 (nvidia .pkl)"
    assert G.config.conv_clamp == 256 and D.config.mbstd_group_size == 4


@pytest.mark.parametrize("name", NVIDIA_PICKLES)
def test_nvidia_pickle_recovers_exact_state_and_init_kwargs(conformance_dir, name):
    contents = load_network_pickle(conformance_dir / f"{name}.pkl")
    state_path = conformance_dir / f"{name}.state.safetensors"
    reference = load_file(state_path)
    with safe_open(state_path, "pt") as stored:
        stored_metadata = stored.metadata()
    for network in ("G_ema", "D"):
        recovered = contents[network].state_dict()
        expected = {key[len(network) + 1 :]: value for key, value in reference.items() if key.startswith(network + ".")}
        assert recovered.keys() == expected.keys()
        for key, tensor in expected.items():
            assert torch.equal(recovered[key], tensor), key
        assert contents[network].init_kwargs == json.loads(stored_metadata[f"{network}_init_kwargs"])

    bundle = read_nvidia_pickle(conformance_dir / f"{name}.pkl")
    assert bundle.metadata["networks"] == {"G_ema": "Generator", "D": "Discriminator"}
    assert bundle.metadata["G_ema_init_kwargs"] == json.loads(stored_metadata["G_ema_init_kwargs"])
    assert bundle.metadata["training_set_kwargs"]["resolution"] == 32


def _persistent_pickle(path, monkeypatch, meta):
    """Write a pickle that calls `torch_utils.persistence._reconstruct_persistent_obj(meta)`, as NVIDIA's do."""

    def _reconstruct_persistent_obj(meta):
        raise AssertionError("never called")

    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)

    class Persistent:
        def __init__(self, class_name, modules=(), **attributes):
            state = {"_parameters": {}, "_buffers": {}, "_modules": dict(modules), **attributes}
            self.meta = {"type": "class", "version": 6, "module_src": "", "class_name": class_name, "state": state}

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    with open(path, "wb") as stream:
        pickle.dump({"G_ema": meta(Persistent), "training_set_kwargs": {}}, stream, protocol=4)


def test_stylegan3_pickle_is_refused_naming_the_class(tmp_path, monkeypatch):
    def stylegan3(Persistent):
        synthesis = Persistent(
            "SynthesisNetwork", {"input": Persistent("SynthesisInput"), "L0_36_512": Persistent("SynthesisLayer")}
        )
        return Persistent(
            "Generator", {"synthesis": synthesis, "mapping": Persistent("MappingNetwork")}, img_resolution=256
        )

    path = tmp_path / "stylegan3-r.pkl"
    _persistent_pickle(path, monkeypatch, stylegan3)
    with pytest.raises(CheckpointFormatError, match="SynthesisInput.*StyleGAN3 is not supported"):
        read_nvidia_pickle(path)


# ---------------------------------------------------------------------------------------------------
# Security: crafted files never run


@pytest.mark.parametrize("payload, refused", [(CreatesAFile, "system"), (OpensAFile, "open")])
def test_nvidia_reader_refuses_code_and_never_runs_it(tmp_path, payload, refused):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pkl"
    with open(path, "wb") as stream:
        pickle.dump({"G_ema": payload(marker), "training_set_kwargs": {}}, stream)
    with pytest.raises(UnsafeCheckpointError, match=f"refused to load.*{refused}.*never executes"):
        read_nvidia_pickle(path)
    assert not marker.exists(), "the pickle's code ran"


@pytest.mark.parametrize("payload", [CreatesAFile, OpensAFile])
def test_rosinality_reader_refuses_code_and_never_runs_it(tmp_path, payload):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "args": payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError):
        read_rosinality(path)
    assert not marker.exists(), "the checkpoint's code ran"


def test_nvidia_reader_refuses_non_pickles(tmp_path):
    path = tmp_path / "damaged.pkl"
    path.write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(CheckpointFormatError, match="not a readable network pickle"):
        read_nvidia_pickle(path)


# ---------------------------------------------------------------------------------------------------
# Modules: config round trip, noise modes, labels

SMALL_G = StyleGAN2Generator.Config(
    z_dim=16,
    w_dim=16,
    c_dim=3,
    img_resolution=16,
    img_channels=3,
    channels=[32, 16, 8],
    mapping_layers=2,
    conv_clamp=256,
)
SMALL_D = StyleGAN2Discriminator.Config(
    c_dim=3, img_resolution=16, img_channels=3, channels=[32, 16, 8], cmap_dim=16, mapping_layers=2, conv_clamp=256
)


@pytest.mark.parametrize("cls, config", [(StyleGAN2Generator, SMALL_G), (StyleGAN2Discriminator, SMALL_D)])
def test_config_json_round_trip_rebuilds_identical_modules(cls, config):
    assert ARCHITECTURES[cls.arch] is cls
    module = cls(config)
    rebuilt = cls(cls.Config(**json.loads(json.dumps(dataclasses.asdict(module.config)))))
    assert rebuilt.config == module.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in module.state_dict().items()}
    rebuilt.load_state_dict(module.state_dict(), strict=True)
    torch.manual_seed(0)
    c = torch.eye(3)[[0, 1, 2, 0]]
    inputs = (torch.randn(4, 16), c) if cls is StyleGAN2Generator else (torch.randn(4, 3, 16, 16), c)
    with torch.no_grad():
        assert torch.equal(module.eval()(*inputs), rebuilt.eval()(*inputs))


@torch.no_grad()
def test_noise_modes():
    G = StyleGAN2Generator(SMALL_G).eval()
    for layer in G.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.fill_(0.5)
    z, c = torch.randn(2, 16), torch.eye(3)[:2]
    const = G(z, c)
    assert torch.equal(const, G(z, c, noise_mode="const"))
    assert not torch.allclose(const, G(z, c, noise_mode="random"))
    assert not torch.allclose(const, G(z, c, noise_mode="none"))
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, c, noise_mode="fixed")


@torch.no_grad()
def test_labels_are_checked():
    G, D = StyleGAN2Generator(SMALL_G).eval(), StyleGAN2Discriminator(SMALL_D).eval()
    img = torch.randn(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"class-conditional: pass labels c of shape \[batch, 3\]"):
        D(img)
    with pytest.raises(ValueError, match=r"c must have shape \[4, 3\], got \[4, 2\]"):
        D(img, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="class-conditional"):
        G(torch.randn(4, 16))
    assert D(img, torch.eye(3)[[0, 1, 2, 0]]).shape == (4, 1)
    unconditional = StyleGAN2Generator(dataclasses.replace(SMALL_G, c_dim=0)).eval()
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(torch.randn(4, 16), torch.eye(3)[:4])
    with pytest.raises(ValueError, match=r"img must have shape \[\*, 3, 16, 16\]"):
        D(torch.randn(4, 3, 32, 32), torch.eye(3)[[0, 1, 2, 0]])


@pytest.mark.parametrize("up", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_the_unfused_modulated_convolution_training_uses_is_the_same_function(up, demodulate):
    """Training layers (module.training) take the unfused form, as NVIDIA's StyleGAN2 trains; it must give
    the grouped form's outputs and gradients (float32 rounding apart)."""
    from ganedit.generators.ops import modulated_conv2d, setup_filter

    rng = torch.Generator().manual_seed(int(up) * 2 + int(demodulate))
    x, weight, styles = (torch.randn(shape, generator=rng, requires_grad=True)
                         for shape in ([4, 6, 8, 8], [5, 6, 3, 3], [4, 6]))  # fmt: skip
    taps = setup_filter([1.0, 3.0, 3.0, 1.0]) if up else None
    outputs, gradients = [], []
    for fused in (True, False):
        y = modulated_conv2d(x, weight, styles, demodulate, upsample_filter=taps, fused=fused)
        outputs.append(y)
        gradients.append(torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum(),
                                             [x, weight, styles]))  # fmt: skip
    assert outputs[0].shape == outputs[1].shape == (4, 5, 16 if up else 8, 16 if up else 8)
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-5)
    for unfused, grouped in zip(gradients[1], gradients[0], strict=True):
        torch.testing.assert_close(unfused, grouped, atol=1e-4, rtol=1e-4)


def test_a_generator_in_training_mode_draws_what_it_draws_in_eval_mode():
    G = ganedit.load_generator("toy-stylegan2")
    z = torch.randn([6, G.z_dim], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        drawn = {mode: G.train(mode)(z, None, noise_mode="const") for mode in (False, True)}
    G.eval()
    torch.testing.assert_close(drawn[True], drawn[False], atol=1e-4, rtol=0)
