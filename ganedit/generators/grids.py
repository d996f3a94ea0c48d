"""Labelled PNG grids that show an edit: rows of samples on the same latents, each row and column group named.

One layout serves every command (`labelled_grid`): rows of image tensors, a label at the left of each row
("before", "after"; "parent warm", "naive average (warm)", "merged (warm)"), a header over each group of
columns ("with star", "random"), drawn with PIL's default font (no font file to ship). Samples narrower
than MIN_TILE pixels are upscaled by an integer factor, nearest neighbour, so a 32 px toy sample becomes a
128 px tile whose pixels are the sample's own, each repeated factor x factor times.

The commands' grids:
- `save_before_after_grid` (unlearn, text-unlearn): the first columns are latents where a detector
  (`shows`, e.g. the judge) saw the feature in the model before the edit, searched for in batches up to
  `tries` latents; then random latents (the first of the seed's that were not picked). When none shows the
  feature, every column is random and labelled so, and `GridColumns.note` says why.
- `save_merge_grid` (merge): per class, the parent's sample, the averaged model's (when one was computed)
  and the merged model's, on the same latents.
- embed-tune's before / after rows per class lay out through `labelled_grid` too (procedures/embed_tune.py).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ganedit.generators.sampling import generate, num_classes, sample_latents, to_uint8

MIN_TILE = 128  # tiles are at least this wide: smaller samples are upscaled (nearest) by an integer factor
PADDING = 2  # between tiles, and around the grid
GROUP_GAP = 10  # extra space between column groups and between row groups
MARGIN = 6  # around label text
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FONT_SIZE = 14


@dataclass
class GridColumns:
    """What a before/after grid's columns are: `with_feature` latents the detector picked, then `random`."""

    feature: str | None
    with_feature: int
    random: int
    searched: int  # latents the detector looked at (0 without one)
    note: str | None = None  # set when fewer latents than asked showed the feature (say it to the user)

    def report(self) -> dict:
        return {
            "feature": self.feature,
            "with_feature": self.with_feature,
            "random": self.random,
            "searched": self.searched,
            "note": self.note,
        }


def upscale_factor(width: int, min_width: int = MIN_TILE) -> int:
    """The integer factor that makes a `width` px sample at least `min_width` px wide (1 when it already is)."""
    return max(1, math.ceil(min_width / width))


def upscale_nearest(images: torch.Tensor, factor: int) -> torch.Tensor:
    """NCHW (or CHW) images with every pixel repeated factor x factor times (nearest neighbour, exact)."""
    if factor == 1:
        return images
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - top


def label_margin(row_labels: Sequence[str]) -> int:
    """Width of the margin the row labels are written in, left of the tiles."""
    font = _font()
    return max((_text_size(font, label)[0] for label in row_labels), default=0) + 2 * MARGIN


def header_height() -> int:
    """Height of the band above the tiles that holds the column groups' headers (and a rule under each)."""
    return _text_size(_font(), "Ag")[1] + 2 * MARGIN + 3


def _offsets(groups: Sequence[int], size: int) -> list[int]:
    """Start of each item along one axis: `size` plus PADDING apart, GROUP_GAP more between groups."""
    offsets, position = [], 0
    for g, count in enumerate(groups):
        if g:
            position += GROUP_GAP
        for _ in range(count):
            offsets.append(position)
            position += size + PADDING
    return offsets


def labelled_grid(
    rows: Sequence[torch.Tensor],
    row_labels: Sequence[str],
    column_groups: Sequence[tuple[str, int]],
    *,
    row_groups: Sequence[int] | None = None,
    min_tile: int = MIN_TILE,
):
    """A PIL image: each row's images side by side, its label at the left, the column groups' headers on top.

    rows: tensors [columns, 3, H, W] in [-1, 1], all with the same number of columns (the sum of the groups'
    counts). column_groups: (header, count) in order, e.g. [("with star", 8), ("random", 4)]. row_groups:
    sizes of blocks of consecutive rows set apart by a wider gap (e.g. 3 rows per class; default: one block).
    """
    from PIL import Image, ImageDraw

    if len(rows) != len(row_labels):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} row labels")
    columns = sum(count for _, count in column_groups)
    if not rows or any(len(row) != columns for row in rows):
        raise ValueError(f"every row needs {columns} images (the column groups' counts), got {[len(r) for r in rows]}")
    row_groups = list(row_groups) if row_groups is not None else [len(rows)]
    if sum(row_groups) != len(rows):
        raise ValueError(f"row groups {row_groups} do not add up to {len(rows)} rows")
    height, width = rows[0].shape[-2:]
    factor = upscale_factor(width, min_tile)
    tile_w, tile_h = width * factor, height * factor
    left, top = label_margin(row_labels), header_height()
    xs = [left + x for x in _offsets([count for _, count in column_groups], tile_w)]
    ys = [top + y for y in _offsets(row_groups, tile_h)]
    canvas = Image.new("RGB", (xs[-1] + tile_w + PADDING, ys[-1] + tile_h + PADDING), BACKGROUND)
    draw, font = ImageDraw.Draw(canvas), _font()
    for row, y in zip(rows, ys, strict=True):
        tiles = upscale_nearest(to_uint8(row.detach().float().cpu()), factor).permute(0, 2, 3, 1).numpy()
        for tile, x in zip(tiles, xs, strict=True):
            canvas.paste(Image.fromarray(tile), (x, y))
    for label, y in zip(row_labels, ys, strict=True):
        text_w, text_h = _text_size(font, label)
        box = font.getbbox(label)
        draw.text((MARGIN - box[0], y + (tile_h - text_h) // 2 - box[1]), label, fill=INK, font=font)
    first = 0
    for header, count in column_groups:
        if count == 0:
            continue
        start, end = xs[first], xs[first + count - 1] + tile_w
        text_w, _ = _text_size(font, header)
        box = font.getbbox(header)
        x = max(start, start + (end - start - text_w) // 2)
        draw.text((x - box[0], MARGIN - box[1]), header, fill=INK, font=font)
        draw.line([(start, top - 3), (end - 1, top - 3)], fill=INK, width=1)  # the rule under the header
        first += count
    return canvas


def save_labelled_grid(path: Path | str, rows, row_labels, column_groups, **layout) -> Path:
    """`labelled_grid` written to `path` as a PNG, atomically."""
    from ganedit.store.atomic import atomic_write

    image = labelled_grid(rows, row_labels, [(h, c) for h, c in column_groups if c], **layout)
    return atomic_write(Path(path), lambda temporary: image.save(temporary, format="PNG"))


def pick_latents(
    generator: torch.nn.Module,
    seed: int,
    count: int,
    *,
    shows: Callable[[torch.Tensor], torch.Tensor] | None = None,
    with_feature: int = 8,
    tries: int = 1024,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int, int]:
    """(z, classes, images of `generator`, how many show the feature, latents searched) for a grid's columns.

    The first columns are up to `with_feature` latents whose image `shows` the feature, searched for in the
    seed's first `tries` latents, `batch_size` at a time, stopping once enough are found; the rest of the
    `count` columns are the seed's first latents not picked (random: not looked at for the feature).
    Conditional generators draw class i % classes for the i-th latent.
    """
    classes_of = num_classes(generator)
    pool = sample_latents(generator, max(tries, count) if shows is not None else count, seed)
    labels = torch.arange(len(pool)) % classes_of if classes_of else None
    images, found, searched = [], [], 0
    wanted = min(with_feature, count) if shows is not None else 0
    while searched < len(pool) and (searched < count or len(found) < wanted):
        part = slice(searched, min(searched + batch_size, len(pool)))
        batch = generate(generator, pool[part], labels[part] if labels is not None else None)
        images.append(batch)
        if shows is not None and len(found) < wanted:
            found += (shows(batch).cpu().nonzero()[:, 0] + searched).tolist()
        searched = part.stop
    found = found[:wanted]
    taken = set(found)
    chosen = found + [i for i in range(searched) if i not in taken][: count - len(found)]
    index = torch.tensor(chosen, dtype=torch.long)
    picked_labels = labels[index] if labels is not None else None
    return pool[index], picked_labels, torch.cat(images)[index], len(found), searched if shows is not None else 0


def save_before_after_grid(
    before: torch.nn.Module,
    after: torch.nn.Module,
    path: Path | str,
    seed: int,
    *,
    shows: Callable[[torch.Tensor], torch.Tensor] | None = None,
    feature: str | None = None,
    with_feature: int = 8,
    random: int = 4,
    tries: int = 1024,
) -> GridColumns:
    """A labelled PNG: row "before" (samples of `before`), row "after" (`after` on the same latents, stored
    noise); columns "with FEATURE" (latents where `shows` saw it before the edit), then "random".

    shows(images) -> bool mask [N]: where the feature the edit removes is present (None: all columns
    random). Returns what the columns are; its `note` says when fewer than `with_feature` were found.
    """
    count = with_feature + random
    z, classes, images, found, searched = pick_latents(
        before, seed, count, shows=shows, with_feature=with_feature, tries=tries
    )
    name = feature or "the feature"
    note = None
    if shows is not None and found == 0:
        note = f"none of {searched} samples showed {name!r} before the edit: the grid's {count} columns are random"
    elif shows is not None and found < with_feature:
        note = f"only {found} of {searched} samples showed {name!r} before the edit; the other columns are random"
    rows = [images, generate(after, z, classes)]
    groups = [
        (f"with {name}", found),
        ("random" if found or shows is None else f"random (no {name} found)", count - found),
    ]
    save_labelled_grid(path, rows, ["before", "after"], groups)
    return GridColumns(feature, found, count - found, searched, note)


@dataclass
class GridModel:
    """One kind of row in a merge grid: a generator and its label (the class is added to it)."""

    label: str
    generator: torch.nn.Module


def save_merge_grid(
    parents: Sequence,
    models: Sequence[GridModel],
    path: Path | str,
    seed: int,
    count: int = 8,
) -> Path:
    """A labelled PNG: per class i, "parent NAME" (parent i's own sample: its source class, if conditional),
    then each of `models` drawing class i, e.g. "naive average (NAME)", "merged (NAME)"; same latents.

    parents: objects with `generator`, `name` and `source_class` (procedures.merge.Parent).
    """
    z = sample_latents(parents[0].generator, count, seed)
    rows, labels = [], []
    for i, parent in enumerate(parents):
        conditional = num_classes(parent.generator) > 0
        source = torch.full([count], parent.source_class or 0) if conditional else None
        rows.append(generate(parent.generator, z, source))
        labels.append(f"parent {parent.name}")
        for model in models:
            rows.append(generate(model.generator, z, torch.full([count], i)))
            labels.append(f"{model.label} ({parent.name})")
    return save_labelled_grid(
        path,
        rows,
        labels,
        [("random latents, the same in every row", count)],
        row_groups=[1 + len(models)] * len(parents),
    )
