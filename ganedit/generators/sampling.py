"""Sampling any supported generator with fixed seeds: latents, classes, images, plain grids (labelled: grids.py).

Latents are drawn on the CPU from a seeded `torch.Generator` and only then moved to the device, so the
same seed gives the same latents, and so the same images up to floating-point rounding, on any device.

- BigGAN-deep: z = t * truncated_normal(-2, 2) and the batch-norm statistics of truncation t
  (the pytorch-pretrained-biggan convention).
- StyleGAN2: z ~ N(0, I); truncation psi pulls w towards the stored average latent.
"""

import contextlib
import difflib
from collections.abc import Iterator
from pathlib import Path

import torch

from ganedit.errors import GaneditError


def num_classes(generator: torch.nn.Module) -> int:
    """Number of classes the generator is conditioned on (0 = unconditional)."""
    if generator.arch == "biggan-deep":
        return generator.config.num_classes
    return generator.config.c_dim


def resolution(generator: torch.nn.Module) -> int:
    if generator.arch == "biggan-deep":
        return 4 * 2 ** sum(1 for upsample, _, _ in generator.config.layers if upsample)
    return generator.config.img_resolution


def sample_latents(generator: torch.nn.Module, count: int, seed: int, truncation: float = 1.0) -> torch.Tensor:
    """`count` latents for `generator`, reproducible from `seed` on any device (drawn on the CPU)."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(count, generator.config.z_dim, generator=rng)
    if generator.arch == "biggan-deep":
        outside = z.abs() > 2
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng)
            outside = z.abs() > 2
        z = z * truncation
    return z


@contextlib.contextmanager
def seeded_noise(seed: int | torch.Generator, device: torch.device) -> Iterator[None]:
    """Within the block, the global RNG (which "random" synthesis noise draws from) is seeded.

    seed: an int, or a generator to draw one from. The global state outside is restored afterwards, so
    a run that saves its generator's state resumes exactly.
    """
    if isinstance(seed, torch.Generator):
        seed = int(torch.randint(2**62, [], generator=seed))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def resolve_classes(requested: list[str], class_names: list[str] | None, count: int) -> list[int]:
    """Class indices for names or indices given by a user (names match case-insensitively)."""
    if count == 0 and requested:
        raise GaneditError("this generator is unconditional: it has no classes; drop --class")
    lowered = {name.lower(): index for index, name in enumerate(class_names or [])}
    indices = []
    for item in requested:
        if item.strip().lstrip("-").isdigit():
            index = int(item)
            if not 0 <= index < count:
                raise GaneditError(f"class index {index} is out of range: this generator has classes 0..{count - 1}")
        elif item.lower() in lowered:
            index = lowered[item.lower()]
        else:
            if not class_names:
                raise GaneditError(
                    f"unknown class {item!r}: this model has no class names; give an index 0..{count - 1}"
                )
            close = difflib.get_close_matches(item.lower(), list(lowered), n=5, cutoff=0.6)
            close += [name for name in lowered if item.lower() in name and name not in close][: 5 - len(close)]
            hint = f"close matches: {', '.join(repr(name) for name in close)}" if close else "see `ganedit info MODEL`"
            raise GaneditError(f"unknown class {item!r}; {hint}")
        indices.append(index)
    return indices


@torch.no_grad()
def generate(
    generator: torch.nn.Module,
    z: torch.Tensor,
    classes: torch.Tensor | None = None,
    truncation: float = 1.0,
    batch_size: int = 16,
) -> torch.Tensor:
    """Images in [-1, 1] (float32, CPU) for latents `z` and class indices `classes` (None: unconditional)."""
    device = next(generator.parameters()).device
    count = num_classes(generator)
    if count and classes is None:
        raise GaneditError("this generator is class-conditional: choose classes with --class")
    images = []
    for start in range(0, len(z), batch_size):
        z_batch = z[start : start + batch_size].to(device)
        if generator.arch == "biggan-deep":
            out = generator(z_batch, classes[start : start + batch_size].to(device), truncation)
        else:
            c = None
            if count:
                c = torch.nn.functional.one_hot(classes[start : start + batch_size], count).float().to(device)
            out = generator(z_batch, c, truncation_psi=truncation, noise_mode="const")
        images.append(out.float().cpu())
    return torch.cat(images)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float NCHW to uint8 NCHW (values outside are clipped); uint8 images (a folder) as they are."""
    if images.dtype == torch.uint8:
        return images
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def save_grid(images: torch.Tensor, path: Path, columns: int) -> None:
    """One PNG with the images in rows of `columns`, written atomically."""
    _save_png(tile(to_uint8(images), columns), path)


def tile(images: torch.Tensor, columns: int, padding: int = 2, fill: int = 255) -> torch.Tensor:
    """Images [N, C, H, W] laid out in rows of `columns` (the last row may be short), `padding` pixels of
    `fill` around and between them: torchvision's make_grid layout, without importing torchvision (1.4 s)."""
    count, channels, height, width = images.shape
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    cell_h, cell_w = height + padding, width + padding
    grid = images.new_full([channels, rows * cell_h + padding, columns * cell_w + padding], fill)
    for index, image in enumerate(images):
        top, left = (index // columns) * cell_h + padding, (index % columns) * cell_w + padding
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_each(images: torch.Tensor, folder: Path, names: list[str]) -> list[Path]:
    """One PNG per image, `folder/NAME.png`, each written atomically (the folder made if needed)."""
    from ganedit.store.atomic import make_folder

    make_folder(folder)
    paths = []
    for image, name in zip(to_uint8(images), names, strict=True):
        paths.append(folder / f"{name}.png")
        _save_png(image, paths[-1])
    return paths


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    from ganedit.store.atomic import atomic_write

    atomic_write(path, lambda temporary: Image.fromarray(image.permute(1, 2, 0).numpy()).save(temporary, format="PNG"))
