"""Where the "real" images of adversarial fine-tuning come from: a folder of images, or other generators.

- `load_image_folder`: a user's images (the negatives of `unlearn`, methods.md section 3) as one tensor,
  held as uint8 [N, 3, H, W] (one byte per value: 1,000 images at 1024 px take 3 GB, not float32's 12 GB).
- `ImageBatches`: endless shuffled minibatches of such a tensor, resumable; uint8 images are converted to
  float32 [-1, 1] one batch at a time (`as_float_images`: x / 127.5 - 1).
- `GeneratedImages`: batches generated on the fly by frozen generators, each image labelled with the
  index of the generator that made it (the parents of `merge`, section 2), optionally kept only where a
  judge accepts them (the positives of `unlearn`, section 3).

Randomness: each source takes a seeded CPU `torch.Generator` and draws one seed from it when it is built;
every later random number comes from generators seeded by that seed and a counter (the epoch, the batch).
So a source's whole state is two integers (`state_dict`), and resuming gives exactly the batches an
uninterrupted run would have got. In a run of several processes (ganedit.engine.distributed) the
process of rank r takes the (r + 1)-th seed the generator draws, so that every process gets its own
batches (rank 0 those of a one-process run); a state then holds every process's counters, and each
process of the resumed run takes its own.
"""

import math
from pathlib import Path

import torch
from torch import nn

from ganedit.engine import distributed
from ganedit.errors import GaneditError
from ganedit.generators.sampling import num_classes, seeded_noise
from ganedit.generators.stylegan2 import NOISE_MODES
from ganedit.store.state_file import state_mismatch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MIN_IMAGE_SIDE = 8  # px: smaller images carry too little to learn from, and are most likely a mistake


def as_float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as float in [-1, 1]: uint8 [0, 255] become float32 x / 127.5 - 1 (0 -> -1, 255 -> 1, exactly
    what load_image_folder returned as float32); floating-point images are returned as they are."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or floating-point images, got {images.dtype}")
    return images


def load_image_folder(
    folder: Path | str,
    resolution: int,
    limit: int | None = None,
    minimum: int = 1,
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    """The images in `folder` as [N, 3, resolution, resolution] (CPU): uint8 in [0, 255] by default, or with
    `dtype=torch.float32` float32 in [-1, 1] (x / 127.5 - 1 of the uint8 values, see as_float_images).

    uint8 takes a quarter of float32's memory (N * 3 * resolution**2 bytes); ImageBatches takes either and
    yields float32 [-1, 1] batches, so the images stay uint8 until they are batched. Code that needs the
    whole set as float (small sets) calls as_float_images, or loads with dtype=torch.float32.

    Which files: those directly in `folder` (subfolders are not searched) whose extension is one of
    IMAGE_EXTENSIONS in any case, except hidden files (names starting with "."), sorted by name; with
    `limit`, the first `limit` of them.
    Each image: its EXIF orientation applied; its first frame if animated; converted to RGB, greyscale
    repeated over the three channels and transparency composited onto black; the largest centred square
    cropped (the odd pixel goes to the right / bottom); resized to `resolution` with PIL's LANCZOS filter
    (antialiased when shrinking; enlarging is allowed).
    Raises a one-line GaneditError, before returning anything, if the folder is missing or not a folder,
    holds no image files, or holds fewer than `minimum`, or if any selected file is not a readable image
    or has a side shorter than MIN_IMAGE_SIDE.
    """
    import numpy as np
    from PIL import Image, ImageOps

    folder = Path(folder)
    if dtype not in (torch.uint8, torch.float32):
        raise ValueError(f"dtype must be torch.uint8 or torch.float32, got {dtype}")
    if resolution < 1:
        raise ValueError(f"resolution must be at least 1, got {resolution}")
    if not folder.exists():
        raise GaneditError(f"image folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise GaneditError(f"{folder} is a file, not a folder; give the folder that holds the images")
    paths = sorted(
        (path for path in folder.iterdir() if _is_image_name(path.name) and path.is_file()), key=lambda p: p.name
    )
    if not paths:
        raise GaneditError(
            f"no image files in {folder} (subfolders are not searched); "
            f"put {', '.join(IMAGE_EXTENSIONS)} files directly in it"
        )
    if limit is not None:
        if limit < 1:
            raise GaneditError(f"image limit must be at least 1, got {limit}")
        paths = paths[:limit]
    if len(paths) < minimum:
        raise GaneditError(
            f"{folder} holds {len(paths)} image{'s' if len(paths) != 1 else ''} and at least {minimum} are needed; "
            "add images to the folder"
        )

    images = torch.empty([len(paths), 3, resolution, resolution], dtype=torch.uint8)  # filled in place: one copy
    loaded, unreadable, too_small = 0, [], []
    for path in paths:
        try:
            with Image.open(path) as opened:
                opened.seek(0)
                image = ImageOps.exif_transpose(opened)
                image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            unreadable.append(path.name)
            continue
        if min(image.size) < MIN_IMAGE_SIDE:
            too_small.append(f"{path.name} ({image.width}x{image.height})")
            continue
        if not unreadable and not too_small:  # after a bad file the load fails: only the names are collected
            # HWC uint8 to CHW (numpy, not torchvision, whose import alone costs a one-liner 1.4 s)
            images[loaded] = torch.from_numpy(np.array(_square(_rgb(image), resolution))).permute(2, 0, 1)
            loaded += 1
    if unreadable:
        raise GaneditError(
            f"not readable as an image in {folder}: {_some(unreadable)}; replace or remove the damaged files"
        )
    if too_small:
        raise GaneditError(
            f"images smaller than {MIN_IMAGE_SIDE} px on a side in {folder}: {_some(too_small)}; remove them"
        )
    return images if dtype == torch.uint8 else as_float_images(images)


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _rgb(image):
    """RGB, with any transparency (alpha, or a palette's transparent colour) composited onto black."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if image.mode.startswith("I"):  # 16-bit greyscale: PIL's convert would clip it to 8 bits, not scale it
        image = image.point(lambda value: value / 257).convert("L")
    return image.convert("RGB")


def _square(image, resolution: int):
    """The largest centred square of `image`, resized to `resolution` with LANCZOS."""
    from PIL import Image

    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.LANCZOS)


def _some(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


class ImageBatches:
    """Endless minibatches of `images` [N, C, H, W]: each epoch a fresh random order of all N images.

    `images` are float (batches keep their dtype) or uint8 in [0, 255] as load_image_folder holds them:
    those stay uint8 (a quarter of float32's memory) and each batch is converted to float32 in [-1, 1]
    (x / 127.5 - 1, as_float_images) after it is gathered and flipped, so the batches are the same values
    the float32 images would give.

    The batches cut one stream, epoch after epoch, into pieces of `batch_size`: every batch is full, each
    epoch's images appear exactly once in the stream, and a batch may span two epochs (or several, when
    batch_size > N). Epoch e's order (and, with `flip`, which images are mirrored left-right) comes from
    a generator seeded by (seed + e), the seed being drawn from `generator` when the iterator is built.
    Batches are on `images`' device.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, generator: torch.Generator, flip: bool = False):
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"expected a non-empty [N, C, H, W] tensor, got shape {list(images.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise ValueError(f"expected uint8 or floating-point images, got {images.dtype}")
        self.images, self.batch_size, self.flip = images, batch_size, flip
        self.seed = _draw_seed(generator)
        self.taken = 0  # images taken from the stream so far
        self._epoch, self._order, self._mirrored = -1, None, None

    def __iter__(self) -> "ImageBatches":
        return self

    def __next__(self) -> torch.Tensor:
        pieces, filled = [], 0
        while filled < self.batch_size:
            epoch, offset = divmod(self.taken, len(self.images))
            self._prepare(epoch)
            size = min(len(self.images) - offset, self.batch_size - filled)
            piece = self.images[self._order[offset : offset + size].to(self.images.device)]
            if self.flip:
                mirrored = self._mirrored[offset : offset + size].to(self.images.device)
                piece = torch.where(mirrored[:, None, None, None], piece.flip(-1), piece)
            pieces.append(piece)
            filled += size
            self.taken += size
        return as_float_images(torch.cat(pieces))

    def _prepare(self, epoch: int) -> None:
        if epoch != self._epoch:
            rng = _seeded(self.seed + epoch)
            self._order = torch.randperm(len(self.images), generator=rng)
            self._mirrored = torch.rand(len(self.images), generator=rng) < 0.5
            self._epoch = epoch

    def state_dict(self) -> dict:
        """The counters to resume from (several processes: a collective call, holding every process's)."""
        return _with_every_rank({"seed": self.seed, "taken": self.taken, "count": len(self.images),
                                 "batch_size": self.batch_size})  # fmt: skip

    def load_state_dict(self, state: dict, source: str = "the resume state") -> None:
        """Continue from `state_dict()`'s state; the images and batch size must be those it was saved with.
        `source` names where the state came from in error messages."""
        counters = _counters(_own_rank(state, source), ("seed", "taken", "count", "batch_size"), source)
        saved, current = (counters["count"], counters["batch_size"]), (len(self.images), self.batch_size)
        if saved != current:
            raise GaneditError(
                f"resume state is for {saved[0]} images in batches of {saved[1]}, this run has {current[0]} "
                f"in batches of {current[1]}; resume with the same images and batch size, or start a new run"
            )
        self.seed, self.taken = counters["seed"], counters["taken"]
        self._epoch = -1


class GeneratedImages:
    """Endless batches `(images, labels)` generated on the fly by frozen unconditional generators.

    labels[i] is the index (into `generators`) of the generator that made images[i]. The labels of a
    batch are drawn independently from `proportions` (normalised; uniform when None), so the class
    counts of a batch are multinomial: right in expectation, not exactly per batch. Generators are
    called as G(z, None, truncation_psi, noise_mode) under `torch.no_grad()`, with z ~ N(0, I) drawn
    on the CPU; "random" synthesis noise is drawn from the global RNG seeded inside `fork_rng`, so
    batch k is fixed by the seed whatever the caller's global RNG. Only unconditional generators are
    taken, unless `classes` names the class each conditional generator draws (its one-hot label is passed).

    With `judge` and `keep`, an image is kept only where keep(judge(images)) is True (judge returns
    logits, or a dict of them, for a batch; keep returns a bool mask [n]); rejected images are replaced by
    new ones until the batch is full. If a generator's kept fraction falls below `min_keep_fraction`
    (after generating at least count / min_keep_fraction images for it), a GaneditError says so.
    Images come back on the first generator's device, labels (int64) too.
    """

    def __init__(
        self,
        generators: list[nn.Module],  # frozen unconditional generators, one per label
        proportions: list[float] | None,  # relative frequency of each label, None = uniform
        batch_size: int,  # images per batch
        generator: torch.Generator,  # seeded CPU generator: one seed is drawn from it here
        truncation_psi: float = 1.0,  # truncation of every generator
        judge=None,  # images -> logits (or a dict of them), used with `keep`
        keep=None,  # judge output -> bool mask [n] of the images to keep
        noise_mode: str = "random",  # synthesis noise: "random" samples the generators' full distribution
        min_keep_fraction: float = 0.02,  # below this kept fraction the filter is reported as too strict
        classes: list[int | None] | None = None,  # per generator: the class a conditional one draws, else None
    ):
        if not generators:
            raise ValueError("expected at least one generator")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if (judge is None) != (keep is None):
            raise ValueError("give judge and keep together, or neither")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if not 0 < min_keep_fraction <= 1:
            raise ValueError(f"min_keep_fraction must be in (0, 1], got {min_keep_fraction}")
        self.classes = list(classes) if classes is not None else [None] * len(generators)
        if len(self.classes) != len(generators):
            raise ValueError(f"{len(self.classes)} classes for {len(generators)} generators")
        for index, (G, label) in enumerate(zip(generators, self.classes, strict=True)):
            if num_classes(G) and label is None:
                raise GaneditError(
                    f"generator {index} is class-conditional ({num_classes(G)} classes); say which class it draws"
                )
            if label is not None and not 0 <= label < num_classes(G):
                raise GaneditError(f"generator {index} has classes 0..{num_classes(G) - 1}, not class {label}")
        self.generators, self.batch_size = generators, batch_size
        self.proportions = _checked_proportions(proportions, len(generators))
        self.truncation_psi, self.noise_mode = truncation_psi, noise_mode
        self.judge, self.keep, self.min_keep_fraction = judge, keep, min_keep_fraction
        self.device = next(generators[0].parameters()).device
        self.seed = _draw_seed(generator)
        self.batches = 0  # batches made so far

    def __iter__(self) -> "GeneratedImages":
        return self

    @torch.no_grad()
    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        rng = _seeded(self.seed + self.batches)
        labels = torch.multinomial(self.proportions, self.batch_size, replacement=True, generator=rng)
        images = None
        for index, G in enumerate(self.generators):
            chosen = labels == index
            if chosen.any():
                made = self._images_from(index, G, int(chosen.sum()), rng).to(self.device)
                if images is None:
                    images = made.new_empty([self.batch_size, *made.shape[1:]])
                images[chosen.to(self.device)] = made
        self.batches += 1
        return images, labels.to(self.device)

    def _images_from(self, index: int, G: nn.Module, count: int, rng: torch.Generator) -> torch.Tensor:
        """`count` images from generator `index`, all accepted by the filter when there is one."""
        device = next(G.parameters()).device
        kept, made, accepted = [], 0, 0
        budget = math.ceil(count / self.min_keep_fraction)
        while accepted < count:
            if made >= budget:
                raise GaneditError(
                    f"the image filter keeps too few images from generator {index}: {accepted} of {made} "
                    f"({accepted / made:.1%}, below {self.min_keep_fraction:.1%}); loosen the filter "
                    "(another class or threshold) or lower min_keep_fraction"
                )
            rate = max(accepted / made if made else 1.0, self.min_keep_fraction)
            size = min(self.batch_size, budget - made, math.ceil((count - accepted) / rate))
            z = torch.randn([size, G.z_dim], generator=rng).to(device)
            c = None
            if self.classes[index] is not None:
                c = torch.eye(num_classes(G))[torch.full([size], self.classes[index])].to(device)
            with seeded_noise(rng, device):
                images = G(z, c, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode).float()
            made += size
            if self.keep is not None:
                mask = self.keep(self.judge(images))
                if mask.dtype != torch.bool or mask.shape != (size,):
                    raise ValueError(
                        f"keep must return a bool mask of shape [{size}], got {mask.dtype} {list(mask.shape)}"
                    )
                images = images[mask.to(images.device)]
            images = images[: count - accepted]
            kept.append(images)
            accepted += len(images)
        return torch.cat(kept)

    def state_dict(self) -> dict:
        """The counters to resume from (several processes: a collective call, holding every process's)."""
        return _with_every_rank({"seed": self.seed, "batches": self.batches})

    def load_state_dict(self, state: dict, source: str = "the resume state") -> None:
        """Continue from `state_dict()`'s state; `source` names where it came from in error messages."""
        counters = _counters(_own_rank(state, source), ("seed", "batches"), source)
        self.seed, self.batches = counters["seed"], counters["batches"]


def _checked_proportions(proportions: list[float] | None, count: int) -> torch.Tensor:
    if proportions is None:
        return torch.ones(count, dtype=torch.float64) / count
    if len(proportions) != count:
        raise GaneditError(f"{len(proportions)} proportions for {count} generators; give one per generator")
    values = torch.tensor([float(value) for value in proportions], dtype=torch.float64)
    if not torch.isfinite(values).all() or (values < 0).any():
        raise GaneditError(f"proportions must be finite and non-negative, got {list(proportions)}")
    if values.sum() <= 0:
        raise GaneditError(f"proportions sum to 0 ({list(proportions)}); give at least one a positive value")
    return values / values.sum()


SEED_LIMIT = 2**62  # seeds are drawn below it, so that seed + counter stays a valid torch seed


def _draw_seed(generator: torch.Generator) -> int:
    """The source's seed: the (rank + 1)-th the generator draws (rank 0, or one process: the first)."""
    seeds = [int(torch.randint(SEED_LIMIT, [], generator=generator)) for _ in range(distributed.rank() + 1)]
    return seeds[-1]


def _with_every_rank(state: dict) -> dict:
    """A source's state; with several processes, rank 0's with every process's under "per_rank"."""
    if not distributed.active():
        return state
    return {**state, "per_rank": distributed.every_rank(state)}


def _own_rank(state, source: str):
    """This process's part of a source state `_with_every_rank` made (one process: the state itself)."""
    per_rank = state.get("per_rank") if isinstance(state, dict) else None
    if per_rank is None and not distributed.active():
        return state
    return distributed.own_rank(per_rank, source, "data source state")


def _counters(state, keys: tuple[str, ...], source: str) -> dict[str, int]:
    """The integers `keys` of a saved source state, each in [0, SEED_LIMIT), or a one-line error naming `source`."""
    if not isinstance(state, dict):
        raise state_mismatch(source, "its data source state is not a dict")
    for key in keys:
        value = state.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < SEED_LIMIT:
            raise state_mismatch(source, f"its data source {key} {value!r} is not a count")
    return {key: state[key] for key in keys}


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
