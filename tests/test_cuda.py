"""On a CUDA GPU: conformance outputs in float32, and bf16 autocast sampling within a stated tolerance.

Skipped without a GPU. The bf16 tolerance: images are in [-1, 1] (tanh for BigGAN-deep); bf16 keeps
8 mantissa bits, so through tens of layers we allow a mean absolute error of 0.02 and a max of 0.25 per
pixel against float32 on the same device.
"""

import pytest
import torch
from safetensors.torch import load_file

import ganedit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FP32_TOLERANCE = 1e-4
BF16_MEAN_TOLERANCE = 0.02
BF16_MAX_TOLERANCE = 0.25


def biggan_outputs(G, expected):
    for t in (1.0, 0.4, 0.5):
        yield f"img_onehot_t{t}", G(expected["z"] * t, expected["onehot"], t)
    yield "img_soft_t1.0", G(expected["z"], expected["soft"], 1.0)
    yield "img_embedding_t1.0", G.from_embedding(expected["z"], expected["embedding"], 1.0)


def stylegan_outputs(G, D, expected):
    c = expected.get("c")
    c = c if c is not None and c.shape[1] else None
    yield "img_psi1", G(expected["z"], c, truncation_psi=1.0, noise_mode="const")
    yield "img_psi0.7", G(expected["z"], c, truncation_psi=0.7, noise_mode="const")
    yield "d_logits", D(expected["d_input"], c)


def on_cuda(tensors: dict) -> dict:
    return {name: tensor.cuda() for name, tensor in tensors.items()}


@torch.no_grad()
def test_biggan_conformance_on_cuda_fp32(conformance_dir):
    G = ganedit.load_generator(conformance_dir / "biggan-deep-tiny", device="cuda")
    expected = on_cuda(load_file(conformance_dir / "biggan-deep-tiny" / "expected.safetensors"))
    for name, output in biggan_outputs(G, expected):
        assert (output - expected[name]).abs().max().item() < FP32_TOLERANCE, name


@pytest.mark.parametrize("name", ["nvidia-sg2-tiny", "nvidia-sg2-tiny-c2"])
@torch.no_grad()
def test_stylegan2_conformance_on_cuda_fp32(conformance_dir, name):
    bundle = ganedit.load_model(conformance_dir / f"{name}.pkl", device="cuda")
    expected = on_cuda(load_file(conformance_dir / f"{name}.expected.safetensors"))
    for key, output in stylegan_outputs(bundle.generator, bundle.discriminator, expected):
        assert (output - expected[key]).abs().max().item() < FP32_TOLERANCE, (name, key)


@torch.no_grad()
def test_rosinality_conformance_on_cuda_fp32(conformance_dir):
    bundle = ganedit.load_model(conformance_dir / "rosinality-sg2-tiny.pt", device="cuda")
    expected = on_cuda(load_file(conformance_dir / "rosinality-sg2-tiny.expected.safetensors"))
    G = bundle.generator
    assert (G(expected["z"], noise_mode="const") - expected["img_psi1"]).abs().max().item() < FP32_TOLERANCE
    assert (bundle.discriminator(expected["d_input"]) - expected["d_logits"]).abs().max().item() < FP32_TOLERANCE


@torch.no_grad()
def test_biggan_bf16_autocast_sampling(conformance_dir):
    from ganedit.generators.biggan_deep import BigGANDeep
    from ganedit.generators.formats.biggan import PUBLISHED_CONFIGS

    torch.manual_seed(0)
    G = BigGANDeep(BigGANDeep.Config(**PUBLISHED_CONFIGS["biggan-deep-256"])).cuda().eval()
    z = torch.randn(4, 128, generator=torch.Generator().manual_seed(0)).clamp(-2, 2).cuda() * 0.5
    classes = torch.tensor([1, 200, 500, 999], device="cuda")
    reference = G(z, classes, 0.5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast = G(z, classes, 0.5).float()
    error = (fast - reference).abs()
    print(f"biggan-deep-256 bf16 vs fp32: mean {error.mean():.4g}, max {error.max():.4g}")
    assert error.mean().item() < BF16_MEAN_TOLERANCE and error.max().item() < BF16_MAX_TOLERANCE


def test_text_unlearn_on_cuda_matches_the_cpu_objective_and_keeps_clip_in_float32():
    from ganedit.judges.clip import load_clip
    from ganedit.procedures.text_unlearn import ClipObjective, TextUnlearnSettings, text_unlearn
    from ganedit.toy import world

    settings = TextUnlearnSettings("a red shape", "a shape", steps=3, batch_size=4)
    images = world.sample(8, torch.Generator().manual_seed(0)).images
    moved = world.sample(8, torch.Generator().manual_seed(1)).images
    cpu_clip, cuda_clip = load_clip("toy-clip"), load_clip("toy-clip", "cuda")
    on_cpu = ClipObjective([cpu_clip], settings, None)(moved, images)
    on_cuda = ClipObjective([cuda_clip], settings, None)(moved.cuda(), images.cuda())
    assert torch.allclose(on_cpu, on_cuda.cpu(), atol=1e-4)
    assert all(p.dtype == torch.float32 for p in cuda_clip.parameters())
    result = text_unlearn(ganedit.load_generator("toy-stylegan2", device="cuda"), [cuda_clip], settings)
    assert all(torch.isfinite(p).all() for p in result.generator.parameters())
