"""The toy world (procedural images with exact attributes) and its shipped oracle classifier."""

import pytest
import torch
import torch.nn.functional as F

from ganedit.errors import CheckpointFormatError, GaneditError
from ganedit.toy import world
from ganedit.toy.oracle import accuracy, frechet_distance, load_oracle, save_oracle, toy_fid

# Seeds the oracle never saw: it was trained on seed 0 and checked on seed 1.
TEST_SEED = 12345
OTHER_SEED = 54321
NOT_STARS = [shape for shape in world.SHAPES if shape != "star"]


def draw(n: int, seed: int, **subsets) -> world.ToyBatch:
    return world.sample(n, torch.Generator().manual_seed(seed), **subsets)


@pytest.fixture(scope="module")
def oracle():
    return load_oracle()


def test_same_seed_gives_identical_batches_and_other_seeds_differ():
    first, again, other = draw(64, 7), draw(64, 7), draw(64, 8)
    for name, value in vars(first).items():
        assert torch.equal(value, getattr(again, name)), name
    assert not torch.equal(first.images, other.images)
    assert not torch.equal(first.shape, other.shape)


def test_images_have_the_documented_format_and_attribute_ranges():
    batch = draw(256, 3)
    assert batch.images.shape == (256, 3, 32, 32) and batch.images.dtype == torch.float32
    assert batch.images.min() >= -1 and batch.images.max() <= 1
    assert batch.shape.dtype == torch.long and set(batch.shape.tolist()) == set(range(len(world.SHAPES)))
    assert set(batch.colour.tolist()) == set(range(len(world.COLOURS)))
    assert set(batch.background.tolist()) == set(range(len(world.BACKGROUNDS)))
    assert ((batch.size >= world.SIZE_MIN) & (batch.size <= world.SIZE_MAX)).all()
    assert (batch.x.abs() <= 1 - batch.size).all() and (batch.y.abs() <= 1 - batch.size).all()
    assert (batch.rotation.abs() <= world.ROTATION_MAX).all()


def test_render_is_the_renderer_behind_sample():
    batch = draw(32, 5)
    rerendered = world.render(batch.shape, batch.colour, batch.background, batch.size, batch.x, batch.y, batch.rotation)
    assert torch.equal(rerendered, batch.images)


def test_every_image_shows_its_colour_on_its_background():
    batch = draw(200, 9)
    pixels = batch.images.flatten(2)  # [N, 3, P]
    foreground = world.COLOUR_RGB[batch.colour] * 2 - 1
    backdrop = world.BACKGROUND_RGB[batch.background] * 2 - 1
    has_foreground = ((pixels - foreground[:, :, None]).abs().amax(1) < 1e-5).any(1)
    has_background = ((pixels - backdrop[:, :, None]).abs().amax(1) < 1e-5).any(1)
    assert has_foreground.all() and has_background.all()


def test_subsets_are_respected_by_name_or_index():
    batch = draw(300, 11, shapes=["star", 2], colours=["red"], backgrounds=["navy", "black"])
    assert set(batch.shape.tolist()) == {world.SHAPES.index("star"), 2}
    assert set(batch.colour.tolist()) == {world.COLOURS.index("red")}
    assert set(batch.background.tolist()) == {world.BACKGROUNDS.index("navy"), world.BACKGROUNDS.index("black")}


def test_attribute_index_resolves_names_and_indices_and_explains_misses():
    assert world.attribute_index("shape", "circle") == 0
    assert world.attribute_index("colour", "Red") == world.COLOURS.index("red")
    assert world.attribute_index("background", 2) == 2
    with pytest.raises(GaneditError, match="unknown toy colour 'purple'.*red, green"):
        world.attribute_index("colour", "purple")
    with pytest.raises(GaneditError, match="out of range.*0..9"):
        world.attribute_index("shape", len(world.SHAPES))
    with pytest.raises(GaneditError, match="unknown toy attribute 'texture'.*shape, colour, background"):
        world.attribute_index("texture", "smooth")
    with pytest.raises(GaneditError, match="empty"):
        draw(4, 0, colours=[])


def test_shipped_oracle_is_small_frozen_and_near_perfect_on_unseen_samples(oracle):
    assert sum(p.numel() for p in oracle.parameters()) < 300_000
    assert not oracle.training and not any(p.requires_grad for p in oracle.parameters())
    assert oracle.labels == {"shape": world.SHAPES, "colour": world.COLOURS, "background": world.BACKGROUNDS}
    accuracies = accuracy(oracle, draw(1000, TEST_SEED))
    assert all(value >= 0.98 for value in accuracies.values()), accuracies


def test_oracle_gradients_reach_the_input_at_any_resolution(oracle):
    for resolution in (32, 64):
        images = F.interpolate(draw(8, 13).images, size=resolution, mode="bilinear").requires_grad_(True)
        logits = oracle(images)
        loss = sum(F.cross_entropy(logits[attribute], torch.zeros(8, dtype=torch.long)) for attribute in logits)
        (gradient,) = torch.autograd.grad(loss, images)
        assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0, resolution


def test_frechet_distance_of_shifted_features_is_the_squared_shift():
    features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0)) @ torch.randn(16, 16)
    shift = torch.linspace(-1, 1, 16)
    assert frechet_distance(features, features) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(features, features + shift) == pytest.approx(shift.square().sum().item(), rel=1e-6)


def test_toy_fid_separates_real_from_degenerate_sets(oracle):
    """1,000 images a set. Measured: real vs real 1.3; without stars 3.4; blurred and noisy 8.2; all red
    57. The oracle was trained to shrug off blur and noise, so the toy FID mostly measures which
    shapes and colours are drawn, and only weakly how cleanly."""
    real = draw(1000, TEST_SEED).images
    also_real = draw(1000, OTHER_SEED).images
    blurred = F.avg_pool2d(also_real, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(blurred.shape, generator=torch.Generator().manual_seed(0))
    baseline = toy_fid(real, also_real, oracle)
    assert baseline < 2.5
    assert toy_fid(real, draw(1000, OTHER_SEED, shapes=NOT_STARS).images, oracle) > 2 * baseline
    assert toy_fid(real, blurred + 0.2 * noise, oracle) > 4 * baseline
    assert toy_fid(real, draw(1000, OTHER_SEED, colours=["red"]).images, oracle) > 20 * baseline


def test_saved_oracle_loads_back_identically(oracle, tmp_path):
    path = save_oracle(oracle, tmp_path / "oracle.safetensors", training={"note": "round trip"})
    again = load_oracle(path=path)
    assert again.training_record == {"note": "round trip"}
    for name, tensor in oracle.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


def test_damaged_oracle_file_is_refused_with_a_clear_error(tmp_path):
    damaged = tmp_path / "toy-oracle.safetensors"
    damaged.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointFormatError, match="cannot read the toy oracle.*train_toy_oracle.py"):
        load_oracle(path=damaged)
