"""The labelled grids every editing command's --grid writes: layout, nearest upscaling, labels, which latents
the "with feature" columns are, and the rows of the merge and embed-tune grids. Tiny models, fake detectors."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import tiny_stylegan2_pair
from PIL import Image

from ganedit.generators import grids
from ganedit.generators.grids import (
    GROUP_GAP,
    PADDING,
    GridModel,
    header_height,
    label_margin,
    labelled_grid,
    pick_latents,
    save_before_after_grid,
    save_merge_grid,
    upscale_nearest,
)
from ganedit.generators.sampling import generate, sample_latents, to_uint8

pytestmark = pytest.mark.usefixtures("one_thread")
WHITE = np.array(grids.BACKGROUND, dtype=np.uint8)


@pytest.fixture(scope="module")
def generator():
    return tiny_stylegan2_pair(seed=1)[0].eval()


@pytest.fixture(scope="module")
def bright(generator):
    """A fake detector: images brighter than the 70th percentile of a fixed reference (about 30% of them)."""
    threshold = generate(generator, sample_latents(generator, 64, 99)).mean(dim=(1, 2, 3)).quantile(0.7).item()
    return lambda images: images.mean(dim=(1, 2, 3)) > threshold


def rows_of(count: int, columns: int, size: int = 16, seed: int = 0) -> list[torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return [torch.rand(columns, 3, size, size, generator=rng) * 2 - 1 for _ in range(count)]


def tile_at(image: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    return image[y : y + size, x : x + size]


def test_nearest_upscaling_repeats_every_pixel_exactly():
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    big = upscale_nearest(images, 4)
    assert big.shape == (2, 3, 20, 28)
    for dy in range(4):
        for dx in range(4):
            assert torch.equal(big[..., dy::4, dx::4], images)
    assert upscale_nearest(images, 1) is images
    assert grids.upscale_factor(32) == 4 and grids.upscale_factor(16) == 8 and grids.upscale_factor(256) == 1


def test_layout_is_rows_by_columns_of_upscaled_tiles_plus_label_margins():
    labels, groups = ["before", "after"], [("with star", 3), ("random", 2)]
    rows = rows_of(2, 5)
    image = labelled_grid(rows, labels, groups)
    left, top, tile = label_margin(labels), header_height(), 128  # 16 px samples, upscaled 8x
    assert image.size == (left + 5 * (tile + PADDING) + GROUP_GAP, top + 2 * (tile + PADDING))
    pixels = np.asarray(image)
    for r, row in enumerate(rows):  # every tile is its sample, each pixel repeated 8 x 8 times
        y = top + r * (tile + PADDING)
        for c, sample in enumerate(row):
            x = left + c * (tile + PADDING) + (GROUP_GAP if c >= 3 else 0)
            expected = upscale_nearest(to_uint8(sample), 8).permute(1, 2, 0).numpy()
            assert np.array_equal(tile_at(pixels, x, y, tile), expected), (r, c)
    wide = labelled_grid(rows_of(1, 2, size=200), ["x"], [("random", 2)])
    assert wide.size[1] == header_height() + 200 + PADDING  # a 200 px sample is not upscaled


def test_labels_are_drawn_in_the_margins():
    labels = ["before", "after"]
    image = np.asarray(labelled_grid(rows_of(2, 4), labels, [("with star", 2), ("random", 2)]))
    left, top, tile = label_margin(labels), header_height(), 128
    for r in range(2):  # each row's label, left of its tiles
        band = image[top + r * (tile + PADDING) : top + (r + 1) * tile, :left]
        assert (band != WHITE).any(axis=-1).sum() > 20, r
    header = image[:top, left:]
    first, second = header[:, : 2 * (tile + PADDING)], header[:, 2 * (tile + PADDING) + GROUP_GAP :]
    assert (first != WHITE).any(axis=-1).sum() > 20 and (second != WHITE).any(axis=-1).sum() > 20
    other = np.asarray(labelled_grid(rows_of(2, 4), ["after", "before"], [("with star", 2), ("random", 2)]))
    assert not np.array_equal(other[:top, :left], image[:top, :left]) or not np.array_equal(
        other[top:, :left], image[top:, :left]
    )  # the text is the label's own


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="row labels"):
        labelled_grid(rows_of(2, 3), ["before"], [("random", 3)])
    with pytest.raises(ValueError, match="3 images"):
        labelled_grid(rows_of(1, 2), ["before"], [("random", 3)])


def test_with_feature_columns_are_latents_the_detector_saw_it_in(generator, bright):
    z, classes, images, found, searched = pick_latents(generator, 5, 12, shows=bright, with_feature=8, tries=512)
    assert classes is None and found == 8 and len(z) == 12 and searched <= 512
    pool = sample_latents(generator, searched, 5)
    mask = bright(generate(generator, pool))
    expected = mask.nonzero()[:8, 0]
    assert torch.equal(z[:8], pool[expected])  # the first 8 the detector saw it in, in the seed's order
    assert bright(generate(generator, z[:8])).all() and torch.allclose(images, generate(generator, z), atol=1e-5)
    rest = [i for i in range(searched) if i not in set(expected.tolist())][:4]
    assert torch.equal(z[8:], pool[rest])  # random: the seed's first latents not picked, whatever they show


def test_before_after_grid_shows_the_feature_columns_then_random_ones(generator, bright, tmp_path):
    after = tiny_stylegan2_pair(seed=2)[0].eval()
    columns = save_before_after_grid(generator, after, tmp_path / "g.png", 5, shows=bright, feature="star")
    assert (columns.with_feature, columns.random, columns.note) == (8, 4, None)
    z = pick_latents(generator, 5, 12, shows=bright)[0]
    image = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    left, top, tile = label_margin(["before", "after"]), header_height(), 128
    assert image.shape[:2] == (top + 2 * (tile + PADDING), left + 12 * (tile + PADDING) + GROUP_GAP)
    for r, model in enumerate((generator, after)):  # same latents in both rows
        expected = upscale_nearest(to_uint8(generate(model, z[:1])[0]), 8).permute(1, 2, 0).numpy()
        got = tile_at(image, left, top + r * (tile + PADDING), tile).astype(int)
        assert np.abs(got - expected).max() <= 1, r


def test_when_no_sample_shows_the_feature_every_column_is_random_and_the_note_says_so(generator, tmp_path):
    never = lambda images: torch.zeros(len(images), dtype=torch.bool)  # noqa: E731
    columns = save_before_after_grid(generator, generator, tmp_path / "g.png", 0, shows=never, feature="star",
                                     tries=128)  # fmt: skip
    assert (columns.with_feature, columns.random, columns.searched) == (0, 12, 128)
    assert "none of 128 samples showed 'star'" in columns.note and columns.report()["note"] == columns.note
    image = Image.open(tmp_path / "g.png")
    left, top = label_margin(["before", "after"]), header_height()
    assert image.size == (left + 12 * (128 + PADDING), top + 2 * (128 + PADDING))  # one group: no gap
    calls = []  # a detector that sees the feature once: in the 4th image of its first batch

    def once(images):
        calls.append(len(images))
        return (torch.arange(len(images)) == 3) & (len(calls) == 1)

    few = save_before_after_grid(generator, generator, tmp_path / "h.png", 0, shows=once, tries=256)
    assert few.with_feature == 1 and few.random == 11 and "only 1 of" in few.note
    plain = save_before_after_grid(generator, generator, tmp_path / "i.png", 0)
    assert (plain.with_feature, plain.random, plain.searched, plain.note) == (0, 12, 0, None)


def capture(monkeypatch) -> list:
    calls = []
    original = grids.save_labelled_grid

    def spy(path, rows, row_labels, column_groups, **layout):
        calls.append((rows, list(row_labels), list(column_groups), layout))
        return original(path, rows, row_labels, column_groups, **layout)

    monkeypatch.setattr(grids, "save_labelled_grid", spy)
    return calls


def test_merge_grid_has_one_labelled_row_per_kind_per_class(monkeypatch, tmp_path):
    parents = [SimpleNamespace(generator=tiny_stylegan2_pair(seed=s)[0].eval(), name=n, source_class=None)
               for s, n in ((3, "warm"), (4, "cool"))]  # fmt: skip
    merged, average = (tiny_stylegan2_pair(c_dim=2, seed=s)[0].eval() for s in (5, 6))
    calls = capture(monkeypatch)
    models = [GridModel("naive average", average), GridModel("merged", merged)]
    save_merge_grid(parents, models, tmp_path / "m.png", seed=0, count=4)
    rows, labels, _, layout = calls[-1]
    assert labels == ["parent warm", "naive average (warm)", "merged (warm)",
                      "parent cool", "naive average (cool)", "merged (cool)"]  # fmt: skip
    assert layout["row_groups"] == [3, 3]
    z = sample_latents(merged, 4, 0)
    assert torch.allclose(rows[0], generate(parents[0].generator, z), atol=1e-5)
    assert torch.allclose(rows[5], generate(merged, z, torch.full([4], 1)), atol=1e-5)  # class 1: cool
    image = np.asarray(Image.open(tmp_path / "m.png").convert("RGB"))
    left, top = label_margin(labels), header_height()
    assert image.shape[:2] == (top + 6 * (128 + PADDING) + GROUP_GAP, left + 4 * (128 + PADDING))
    for r in range(6):
        y = top + r * (128 + PADDING) + (GROUP_GAP if r >= 3 else 0)
        assert (image[y : y + 128, :left] != WHITE).any(axis=-1).sum() > 20, labels[r]


@pytest.mark.parametrize(
    ("method", "rooting", "kinds"),
    [("cocktail", False, ["parent", "naive average", "merged"]), ("cocktail", True, ["parent", "average of rooted",
     "merged"]), ("transfergan", True, ["parent", "merged"])],
)  # fmt: skip
def test_the_merge_command_labels_its_rows_by_method(monkeypatch, tmp_path, method, rooting, kinds):
    from ganedit.cli.merge import _save_grid
    from ganedit.procedures.merge import MergeSettings

    parents = [SimpleNamespace(generator=tiny_stylegan2_pair(seed=3)[0].eval(), name=n, source_class=None)
               for n in ("a", "b")]  # fmt: skip
    merged = tiny_stylegan2_pair(c_dim=2, seed=5)[0].eval()
    result = SimpleNamespace(generator=merged, averaged=(merged, None))
    calls = capture(monkeypatch)
    _save_grid(parents, result, MergeSettings(method=method, rooting=rooting), tmp_path / "m.png")
    labels = calls[-1][1]
    assert [label.split(" (")[0].removesuffix(" a").removesuffix(" b") for label in labels] == kinds * 2


def test_embed_tune_grid_has_before_and_after_rows_per_class(monkeypatch, tmp_path):
    from ganedit.procedures import embed_tune as et

    images = torch.cat(rows_of(4, 3))
    monkeypatch.setattr(et, "before_after_images", lambda result, count: images)
    result = SimpleNamespace(holdout_z=torch.zeros(5, 8), reports=[SimpleNamespace(label=n) for n in ("heart", "star")])
    calls = capture(monkeypatch)
    et.save_before_after_grid(result, tmp_path / "e.png", count=3)
    rows, labels, groups, layout = calls[-1]
    assert labels == ["heart before", "heart after", "star before", "star after"] and layout["row_groups"] == [2, 2]
    assert groups == [("random (held-out latents)", 3)] and torch.equal(torch.cat(rows), images)
    assert Image.open(tmp_path / "e.png").size == (
        label_margin(labels) + 3 * 130,
        header_height() + 4 * 130 + GROUP_GAP,
    )


class Constant(torch.nn.Module):
    """A fake judge that calls every image label 0."""

    def __init__(self):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, images):
        return self.bias.expand(len(images), 2)


def test_the_commands_say_on_stderr_and_in_the_report_when_no_sample_shows_the_feature(generator, tmp_path, capsys):
    from ganedit.cli.judging import save_feature_grid

    report = save_feature_grid(generator, generator, tmp_path / "g.png", 0, Constant(), 1, "star")
    assert (report["with_feature"], report["random"], report["searched"]) == (0, 12, 1024)
    assert "none of 1024 samples showed 'star'" in report["note"]
    assert "grid: none of 1024 samples" in " ".join(capsys.readouterr().err.split())
    report = save_feature_grid(generator, generator, tmp_path / "h.png", 0, Constant(), 0, "circle")
    assert (report["with_feature"], report["note"]) == (8, None) and capsys.readouterr().err == ""


@pytest.mark.parametrize(("count", "columns"), [(5, 4), (8, 4), (9, 3), (3, 8), (1, 1)])
def test_tile_lays_images_out_as_torchvision_make_grid_does(count, columns):
    from torchvision.utils import make_grid

    from ganedit.generators.sampling import tile

    images = torch.randint(0, 255, (count, 3, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(count))
    expected = make_grid(images, nrow=columns, padding=2, pad_value=255)
    if count == 1:  # make_grid returns a single image unpadded; tile pads it like any other
        expected = torch.nn.functional.pad(images[0], (2, 2, 2, 2), value=255)
    assert torch.equal(tile(images, columns), expected)
