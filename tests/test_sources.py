"""The "real" images of adversarial fine-tuning: an image folder, its minibatches, generated batches."""

import numpy as np
import pytest
import torch
from helpers import tiny_stylegan2_pair
from PIL import Image

from ganedit.engine.loop import IDENTITY_CHUNK, run_identity
from ganedit.engine.sources import GeneratedImages, ImageBatches, as_float_images, load_image_folder
from ganedit.errors import GaneditError
from ganedit.generators.stylegan2 import StyleGAN2Generator

pytestmark = pytest.mark.usefixtures("one_thread")


def pixels(image: Image.Image) -> torch.Tensor:
    """An image's RGB values as uint8 [3, H, W]."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An image as float32 [-1, 1], the conversion load_image_folder used to return."""
    return pixels(image).float() / 127.5 - 1


def random_image(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


# ---------------------------------------------------------------------------------------------------
# load_image_folder


def test_folder_images_are_centre_cropped_and_resized_with_lanczos(tmp_path):
    wide, tall = random_image(40, 24, seed=1), random_image(20, 31, seed=2)
    wide.save(tmp_path / "b.png")
    tall.save(tmp_path / "a.bmp")
    images = load_image_folder(tmp_path, 16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    expected_a = tall.crop((0, 5, 20, 25)).resize((16, 16), Image.LANCZOS)  # sorted by name: a first
    expected_b = wide.crop((8, 0, 32, 24)).resize((16, 16), Image.LANCZOS)
    assert torch.equal(images[0], pixels(expected_a))
    assert torch.equal(images[1], pixels(expected_b))
    as_float = load_image_folder(tmp_path, 16, dtype=torch.float32)
    assert as_float.dtype == torch.float32 and as_float.min() >= -1 and as_float.max() <= 1
    assert torch.equal(as_float[0], to_tensor(expected_a))
    assert torch.equal(as_float[1], to_tensor(expected_b))


def test_folder_greyscale_alpha_and_16_bit(tmp_path):
    random_image(16, 16, "L", seed=3).save(tmp_path / "grey.png")
    Image.new("RGBA", (16, 16), (200, 100, 50, 128)).save(tmp_path / "half.png")
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(tmp_path / "white16.png")
    grey, half, white = load_image_folder(tmp_path, 16, dtype=torch.float32)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    composited = torch.tensor([200, 100, 50]) * 128 / 255  # onto black
    assert torch.allclose((half[:, 0, 0] + 1) * 127.5, composited, atol=1)
    assert torch.equal(white, torch.ones_like(white))  # scaled from 16 bits, not clipped


def test_folder_selection_is_flat_sorted_and_limited(tmp_path):
    for index, name in enumerate(["c.JPG", "a.webp", "b.png", "notes.txt", "._a.png"]):
        if name.endswith(".txt") or name.startswith("."):
            (tmp_path / name).write_bytes(b"not an image")
        else:
            Image.new("RGB", (12, 12), (index * 40, 0, 0)).save(tmp_path / name, quality=100, lossless=True)
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (12, 12)).save(tmp_path / "sub" / "d.png")
    images = load_image_folder(tmp_path, 8, dtype=torch.float32)
    assert len(images) == 3
    reds = ((images[:, 0, 4, 4] + 1) * 127.5).round().tolist()
    assert reds == pytest.approx([40, 80, 0], abs=3)  # a.webp, b.png, c.JPG
    assert len(load_image_folder(tmp_path, 8, limit=2)) == 2


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda folder: folder / "missing", "does not exist"),
        (lambda folder: _file(folder / "file.png"), "is a file, not a folder"),
        (lambda folder: folder, "no image files"),
        (lambda folder: _write(folder, "a.txt", b"text") or folder, "no image files"),
        (lambda folder: _write(folder, "broken.png", b"\x89PNG garbage") or folder, "broken.png"),
        (lambda folder: Image.new("RGB", (7, 30)).save(folder / "tiny.png") or folder, r"tiny\.png \(7x30\)"),
    ],
    ids=["missing", "file", "empty", "no-images", "corrupt", "too-small"],
)
def test_folder_errors_are_one_line_and_name_the_problem(tmp_path, setup, message):
    with pytest.raises(GaneditError, match=message) as error:
        load_image_folder(setup(tmp_path), 16)
    assert "\n" not in str(error.value)


def test_folder_with_too_few_images(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    with pytest.raises(GaneditError, match="holds 1 image and at least 4 are needed"):
        load_image_folder(tmp_path, 16, minimum=4)


def test_no_images_message_lists_the_accepted_extensions(tmp_path):
    with pytest.raises(GaneditError, match=r"\.png, \.jpg, \.jpeg, \.webp, \.bmp"):
        load_image_folder(tmp_path, 16)


def test_folder_is_held_as_uint8_one_byte_per_value(tmp_path):
    count, side = 5, 24
    for index in range(count):
        random_image(30, 40, seed=index).save(tmp_path / f"{index}.png")
    images = load_image_folder(tmp_path, side)
    assert images.dtype == torch.uint8 and images.shape == (count, 3, side, side) and images.is_contiguous()
    assert images.untyped_storage().nbytes() == count * 3 * side * side  # a quarter of float32's 4 bytes a value
    assert images.device.type == "cpu"


def test_float_loading_is_x_over_127_5_minus_1_of_the_uint8_images(tmp_path):
    for index in range(3):
        random_image(20, 20, seed=10 + index).save(tmp_path / f"{index}.png")
    Image.new("RGB", (20, 20), (0, 255, 128)).save(tmp_path / "z.png")
    held = load_image_folder(tmp_path, 16)
    converted = as_float_images(held)
    assert converted.dtype == torch.float32
    assert torch.equal(converted, held.float() / 127.5 - 1)  # the documented conversion, bit for bit
    assert torch.equal(converted, load_image_folder(tmp_path, 16, dtype=torch.float32))
    assert converted[3, :2, 0, 0].tolist() == [-1.0, 1.0]  # 0 -> -1, 255 -> 1 exactly
    assert converted[3, 2, 0, 0].item() == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    floats = torch.rand(2, 3, 4, 4) * 2 - 1
    assert as_float_images(floats) is floats  # float images pass through as they are


def test_bad_dtypes_are_refused():
    with pytest.raises(ValueError, match="dtype must be torch.uint8 or torch.float32"):
        load_image_folder(".", 16, dtype=torch.float16)
    with pytest.raises(ValueError, match="uint8 or floating-point"):
        ImageBatches(torch.zeros(4, 3, 2, 2, dtype=torch.int64), 2, torch.Generator())
    with pytest.raises(ValueError, match="uint8 or floating-point"):
        as_float_images(torch.zeros(1, 3, 2, 2, dtype=torch.int32))


def _write(folder, name, data):
    (folder / name).write_bytes(data)


def _file(path):
    Image.new("RGB", (16, 16)).save(path)
    return path


# ---------------------------------------------------------------------------------------------------
# ImageBatches


def numbered(count: int) -> torch.Tensor:
    return torch.arange(count, dtype=torch.float32).reshape(count, 1, 1, 1)


def stream(batches: ImageBatches, count: int) -> list[int]:
    return torch.cat([next(batches) for _ in range(count)]).flatten().long().tolist()


def test_batches_cover_each_epoch_exactly_once_and_are_seeded():
    taken = stream(ImageBatches(numbered(10), 4, torch.Generator().manual_seed(0)), 5)  # 20 = two epochs
    assert sorted(taken[:10]) == list(range(10)) and sorted(taken[10:]) == list(range(10))
    assert taken[:10] != taken[10:]  # a fresh order each epoch
    assert taken == stream(ImageBatches(numbered(10), 4, torch.Generator().manual_seed(0)), 5)
    assert taken != stream(ImageBatches(numbered(10), 4, torch.Generator().manual_seed(1)), 5)


def test_batches_larger_than_the_folder_span_epochs():
    taken = stream(ImageBatches(numbered(3), 8, torch.Generator().manual_seed(0)), 3)  # 24 = eight epochs
    assert all(sorted(taken[start : start + 3]) == [0, 1, 2] for start in range(0, 24, 3))


def test_batches_resume_mid_epoch():
    original = ImageBatches(numbered(10), 4, torch.Generator().manual_seed(0))
    stream(original, 2)
    state = original.state_dict()
    assert all(isinstance(value, int) for value in state.values())
    expected = stream(original, 4)
    resumed = ImageBatches(numbered(10), 4, torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert stream(resumed, 4) == expected
    with pytest.raises(GaneditError, match="resume state is for 10 images"):
        ImageBatches(numbered(11), 4, torch.Generator()).load_state_dict(state)


def test_flip_is_off_by_default_and_seeded_when_on():
    images = torch.arange(8, dtype=torch.float32).reshape(1, 1, 1, 8).repeat(6, 1, 1, 1)
    plain = next(ImageBatches(images, 6, torch.Generator().manual_seed(0)))
    assert torch.equal(plain, images)
    flipped = [next(ImageBatches(images, 6, torch.Generator().manual_seed(0), flip=True)) for _ in range(2)]
    assert torch.equal(flipped[0], flipped[1])
    mirrored = flipped[0][:, 0, 0, 0] == 7
    assert mirrored.any() and not mirrored.all()
    assert torch.equal(flipped[0][mirrored], images[mirrored].flip(-1))


def random_uint8_images(count: int, side: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, side, side), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)


@pytest.mark.parametrize("flip", [False, True])
def test_uint8_images_give_float_batches_equal_to_the_float_images_batches(flip):
    held = random_uint8_images(10)
    from_uint8 = ImageBatches(held, 4, torch.Generator().manual_seed(0), flip=flip)
    from_float = ImageBatches(held.float() / 127.5 - 1, 4, torch.Generator().manual_seed(0), flip=flip)
    assert from_uint8.images.dtype == torch.uint8  # held as bytes; only each batch is converted
    for _ in range(6):  # over two epochs and more
        batch = next(from_uint8)
        assert batch.dtype == torch.float32 and batch.shape == (4, 3, 6, 6)
        assert batch.min() >= -1 and batch.max() <= 1
        assert torch.equal(batch, next(from_float))  # exactly the old float path's batches
    state = from_uint8.state_dict()
    resumed = ImageBatches(held, 4, torch.Generator().manual_seed(5), flip=flip)
    resumed.load_state_dict(state)
    assert torch.equal(next(resumed), next(from_uint8))


def test_flip_works_on_uint8_images():
    images = torch.arange(8, dtype=torch.uint8).reshape(1, 1, 1, 8).repeat(6, 1, 1, 1) * 30
    as_float = images.float() / 127.5 - 1
    assert torch.equal(next(ImageBatches(images, 6, torch.Generator().manual_seed(0))), as_float)
    flipped = next(ImageBatches(images, 6, torch.Generator().manual_seed(0), flip=True))
    mirrored = flipped[:, 0, 0, 0] == as_float[0, 0, 0, 7]
    assert mirrored.any() and not mirrored.all()
    assert torch.equal(flipped[mirrored], as_float[mirrored].flip(-1))
    assert torch.equal(flipped[~mirrored], as_float[~mirrored])


def test_run_identity_of_uint8_images_is_that_of_their_float_images():
    held = random_uint8_images(IDENTITY_CHUNK * 2 + 3, side=2)  # several chunks and a partial one
    other = held.clone()
    other[-1, 0, 0, 0] ^= 1
    weights = torch.randn(5)
    identity = run_identity({"a": 1}, [held, weights])
    assert identity == run_identity({"a": 1}, [held.float() / 127.5 - 1, weights])
    assert identity != run_identity({"a": 1}, [other, weights])


# ---------------------------------------------------------------------------------------------------
# GeneratedImages


def tiny_generator(seed: int, c_dim: int = 0) -> StyleGAN2Generator:
    return tiny_stylegan2_pair(c_dim=c_dim, seed=seed)[0].eval().requires_grad_(False)


@pytest.fixture(scope="module")
def parents() -> list[StyleGAN2Generator]:
    return [tiny_generator(1), tiny_generator(2)]


def test_generated_labels_name_the_generator_that_made_each_image(parents):
    # psi 0 and constant noise: every image of a generator is the same, its w_avg image
    source = GeneratedImages(parents, None, 8, torch.Generator().manual_seed(0), truncation_psi=0, noise_mode="const")
    references = [G(torch.zeros(1, 32), None, truncation_psi=0, noise_mode="const")[0] for G in parents]
    for _ in range(3):
        images, labels = next(source)
        assert images.shape == (8, 3, 16, 16) and labels.dtype == torch.int64
        for image, label in zip(images, labels, strict=True):
            assert torch.allclose(image, references[label], atol=1e-5)


def test_generated_proportions_hold_in_expectation(parents):
    source = GeneratedImages(parents, [3, 1], 16, torch.Generator().manual_seed(0))
    labels = torch.cat([next(source)[1] for _ in range(25)])
    assert abs((labels == 0).float().mean().item() - 0.75) < 0.08  # 400 draws: 3.7 standard deviations
    only_second = GeneratedImages(parents, [0, 2.5], 16, torch.Generator().manual_seed(0))
    assert (next(only_second)[1] == 1).all()


def test_generated_batches_are_seeded_and_resume(parents):
    def source(seed):
        return GeneratedImages(parents, None, 4, torch.Generator().manual_seed(seed))

    first, second = source(0), source(0)
    a, b = next(first), next(second)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], next(source(1))[0])
    state = first.state_dict()
    expected = next(first)
    resumed = source(5)
    resumed.load_state_dict(state)
    got = next(resumed)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_filter_keeps_only_accepted_images(parents):
    brightness = lambda images: images.mean(dim=(1, 2, 3))  # noqa: E731
    sample = next(GeneratedImages(parents, None, 64, torch.Generator().manual_seed(0)))[0]
    threshold = brightness(sample).median()
    source = GeneratedImages(
        parents, None, 8, torch.Generator().manual_seed(0), judge=brightness, keep=lambda logits: logits > threshold
    )
    for _ in range(3):
        images, _ = next(source)
        assert len(images) == 8 and (brightness(images) > threshold).all()


def test_too_strict_filter_says_how_much_it_kept(parents):
    source = GeneratedImages(
        parents,
        [1, 0],
        4,
        torch.Generator().manual_seed(0),
        judge=lambda images: images.mean(dim=(1, 2, 3)),
        keep=lambda logits: torch.zeros(len(logits), dtype=torch.bool),
        min_keep_fraction=0.25,
    )
    with pytest.raises(GaneditError, match=r"keeps too few images from generator 0: 0 of 16 \(0\.0%, below 25\.0%\)"):
        next(source)


@pytest.mark.parametrize(
    "proportions, message",
    [([1.0], "1 proportions for 2 generators"), ([1, -1], "non-negative"), ([0, 0], "sum to 0")],
)
def test_bad_proportions(parents, proportions, message):
    with pytest.raises(GaneditError, match=message):
        GeneratedImages(parents, proportions, 4, torch.Generator())


def test_conditional_generators_are_refused(parents):
    with pytest.raises(GaneditError, match="generator 1 is class-conditional"):
        GeneratedImages([parents[0], tiny_generator(3, c_dim=2)], None, 4, torch.Generator())
