"""The toy world: procedurally drawn 32x32 images of one geometric shape, with exact attributes.

Every image shows one filled shape of one flat colour on a flat background. Its attributes are known
exactly because they are what the renderer was asked to draw, so a classifier trained on them is an
oracle (see oracle.py) and "real data" is unlimited: any seed gives fresh samples.

Distributions of `sample` (all independent):
- shape, colour, background: uniform over the allowed subset (all of SHAPES, COLOURS, BACKGROUNDS
  unless restricted);
- size: uniform in [SIZE_MIN, SIZE_MAX]; it is the shape's circumradius as a fraction of half the
  image width (0.45 to 0.75, i.e. 7 to 12 pixels at 32 px);
- x, y: the shape's centre, uniform in [-(1 - size), 1 - size] each, in image coordinates where
  (-1, -1) is the top-left corner and (1, 1) the bottom-right (y points down), so the shape's
  circumscribed circle always lies inside the image;
- rotation: uniform in [-ROTATION_MAX, ROTATION_MAX] radians (30 degrees), counter-clockwise on
  screen. Rotation is kept small so that no shape can turn into another one (a square turned by 45
  degrees would be a diamond, a cross an X); for that reason neither a diamond nor an X is a shape.

Rendering tests each point of a grid SUPERSAMPLE times finer than the image for being inside the shape
(analytic inside-tests, batched over images) and averages the grid down to pixels, which antialiases
the edges. It is deterministic: the same attributes give the same image, bit for bit. Images are 32 px
(RESOLUTION) unless `resolution` asks for another size: the same shapes, drawn natively at that size
(crisp at any size, not resized), with the same positions and sizes as fractions of the image.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganedit.errors import GaneditError

RESOLUTION = 32
SUPERSAMPLE = 4
RENDER_CHUNK = 512  # images per pass of the supersampled renderer (about 100 MB of grid)
SIZE_MIN, SIZE_MAX = 0.45, 0.75
ROTATION_MAX = math.pi / 6

SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "crescent", "heart", "arrow", "ellipse"]

# Foreground colours, RGB in [0, 1]; each differs from every other by at least 0.35 in some channel.
COLOURS = ["red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"]
COLOUR_RGB = torch.tensor(
    [
        [0.95, 0.15, 0.15],  # red
        [0.15, 0.85, 0.20],  # green
        [0.20, 0.35, 1.00],  # blue
        [0.95, 0.90, 0.15],  # yellow
        [0.90, 0.20, 0.90],  # magenta
        [0.15, 0.90, 0.90],  # cyan
        [0.95, 0.95, 0.95],  # white
        [1.00, 0.55, 0.10],  # orange
    ]
)

# Backgrounds, RGB in [0, 1]; all dark, so that every foreground colour stands out on every one.
BACKGROUNDS = ["black", "grey", "navy"]
BACKGROUND_RGB = torch.tensor(
    [
        [0.00, 0.00, 0.00],  # black
        [0.30, 0.30, 0.30],  # grey
        [0.05, 0.08, 0.35],  # navy
    ]
)

ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "background": BACKGROUNDS}


@dataclass
class ToyBatch:
    """A batch of toy images and the attributes they were drawn with."""

    images: torch.Tensor  # [N, 3, 32, 32] float32 in [-1, 1]
    shape: torch.Tensor  # [N] long, index into SHAPES
    colour: torch.Tensor  # [N] long, index into COLOURS
    background: torch.Tensor  # [N] long, index into BACKGROUNDS
    size: torch.Tensor  # [N] float, circumradius as a fraction of half the image width
    x: torch.Tensor  # [N] float, centre in [-1, 1], left to right
    y: torch.Tensor  # [N] float, centre in [-1, 1], top to bottom
    rotation: torch.Tensor  # [N] float, radians, counter-clockwise

    def __len__(self) -> int:
        return self.images.shape[0]

    def labels(self) -> dict[str, torch.Tensor]:
        """The categorical attributes by name, as the oracle's heads are named."""
        return {attribute: getattr(self, attribute) for attribute in ATTRIBUTES}


def attribute_index(attribute: str, name_or_index: str | int) -> int:
    """The label index of a shape, colour or background given by name ("red") or index (0).

    Raises GaneditError, listing the valid names, for an unknown attribute or label.
    """
    if attribute not in ATTRIBUTES:
        raise GaneditError(f"unknown toy attribute {attribute!r}; choose one of: {', '.join(ATTRIBUTES)}")
    names = ATTRIBUTES[attribute]
    if isinstance(name_or_index, int) and not isinstance(name_or_index, bool):
        if 0 <= name_or_index < len(names):
            return name_or_index
        raise GaneditError(
            f"toy {attribute} index {name_or_index} is out of range; it must be in 0..{len(names) - 1} "
            f"({', '.join(names)})"
        )
    name = str(name_or_index).strip().lower()
    if name not in names:
        raise GaneditError(f"unknown toy {attribute} {name_or_index!r}; choose one of: {', '.join(names)}")
    return names.index(name)


def sample(
    n: int,
    generator: torch.Generator,
    shapes: Sequence[str | int] | None = None,
    colours: Sequence[str | int] | None = None,
    backgrounds: Sequence[str | int] | None = None,
    device: torch.device | str = "cpu",
    resolution: int = RESOLUTION,
) -> ToyBatch:
    """Draw `n` toy images with the distributions in the module docstring.

    n:           number of images.
    generator:   a CPU torch.Generator; the batch is a deterministic function of its state.
    shapes, colours, backgrounds: restrict that attribute to these labels (names or indices),
                 drawn uniformly; None allows all of them.
    device:      where the images are rendered and returned (attributes are drawn on the CPU, so the
                 labels do not depend on the device).
    resolution:  the images' side in pixels (the attributes do not depend on it).
    """
    attributes = [t.to(device) for t in draw_attributes(n, generator, shapes, colours, backgrounds)]
    return ToyBatch(render(*attributes, resolution=resolution), *attributes)


def draw_attributes(
    n: int,
    generator: torch.Generator,
    shapes: Sequence[str | int] | None = None,
    colours: Sequence[str | int] | None = None,
    backgrounds: Sequence[str | int] | None = None,
) -> tuple[torch.Tensor, ...]:
    """The attributes `sample` draws, as `render`'s arguments (shape, colour, background, size, x, y,
    rotation; [n] tensors on the CPU), without rendering: render them in pieces to bound the memory."""
    shape = _uniform_choice(n, "shape", shapes, generator)
    colour = _uniform_choice(n, "colour", colours, generator)
    background = _uniform_choice(n, "background", backgrounds, generator)
    size = SIZE_MIN + (SIZE_MAX - SIZE_MIN) * torch.rand(n, generator=generator)
    x = (1 - size) * (2 * torch.rand(n, generator=generator) - 1)
    y = (1 - size) * (2 * torch.rand(n, generator=generator) - 1)
    rotation = ROTATION_MAX * (2 * torch.rand(n, generator=generator) - 1)
    return shape, colour, background, size, x, y, rotation


def _uniform_choice(
    n: int, attribute: str, allowed: Sequence[str | int] | None, generator: torch.Generator
) -> torch.Tensor:
    """`n` labels drawn uniformly from `allowed` (all labels of `attribute` when None)."""
    if allowed is None:
        choices = torch.arange(len(ATTRIBUTES[attribute]))
    else:
        if len(allowed) == 0:
            raise GaneditError(f"the set of allowed toy {attribute}s is empty; give at least one")
        choices = torch.tensor(sorted({attribute_index(attribute, label) for label in allowed}))
    return choices[torch.randint(len(choices), (n,), generator=generator)]


def render(
    shape: torch.Tensor,
    colour: torch.Tensor,
    background: torch.Tensor,
    size: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rotation: torch.Tensor,
    resolution: int = RESOLUTION,
) -> torch.Tensor:
    """Draw one shape per image; every argument but `resolution` is a [N] tensor as in ToyBatch.

    Returns [N, 3, resolution, resolution] (32 px by default) float32 in [-1, 1] on the arguments'
    device: the foreground colour where the shape covers a pixel, the background elsewhere, mixed in
    proportion at the edges. Images are drawn RENDER_CHUNK at a time at 32 px (fewer at larger sizes, in
    proportion to the pixels), which bounds the memory of the supersampled grid.
    """
    if resolution < 1:
        raise ValueError(f"resolution must be at least 1, got {resolution}")
    attributes = (shape, colour, background, size, x, y, rotation)
    per_chunk = max(1, RENDER_CHUNK * RESOLUTION**2 // resolution**2)
    chunks = zip(*(attribute.split(per_chunk) for attribute in attributes), strict=True)
    return torch.cat([_render_chunk(*chunk, resolution) for chunk in chunks])


def _render_chunk(
    shape: torch.Tensor,
    colour: torch.Tensor,
    background: torch.Tensor,
    size: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rotation: torch.Tensor,
    resolution: int,
) -> torch.Tensor:
    coverage = shape_coverage(shape, size, x, y, rotation, resolution)  # [N, 1, H, W] in [0, 1]
    device = coverage.device
    foreground = COLOUR_RGB.to(device)[colour][:, :, None, None]  # [N, 3, 1, 1]
    backdrop = BACKGROUND_RGB.to(device)[background][:, :, None, None]
    image = coverage * foreground + (1 - coverage) * backdrop
    return image * 2 - 1


def shape_coverage(
    shape: torch.Tensor,
    size: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    rotation: torch.Tensor,
    resolution: int = RESOLUTION,
) -> torch.Tensor:
    """The fraction of each pixel that the shape covers, [N, 1, resolution, resolution] in [0, 1]."""
    u, v = _shape_frame(size, x, y, rotation, resolution)  # [N, S*resolution, S*resolution] each
    inside = torch.zeros_like(u, dtype=torch.bool)
    for index, inside_test in enumerate(INSIDE_TESTS):
        chosen = shape == index
        if chosen.any():
            inside[chosen] = inside_test(u[chosen], v[chosen])
    return F.avg_pool2d(inside[:, None].float(), SUPERSAMPLE)


def _shape_frame(
    size: torch.Tensor, x: torch.Tensor, y: torch.Tensor, rotation: torch.Tensor, resolution: int = RESOLUTION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each supersampled point in its shape's own frame: centred, unrotated, circumradius 1, y up."""
    points = resolution * SUPERSAMPLE
    grid = (torch.arange(points, device=size.device, dtype=torch.float32) + 0.5) / points * 2 - 1
    right = grid[None, None, :] - x[:, None, None]  # [N, 1, W]
    up = -(grid[None, :, None] - y[:, None, None])  # [N, H, 1]; image rows point down
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    scale = size[:, None, None]
    u = (cos * right + sin * up) / scale
    v = (cos * up - sin * right) / scale
    return u, v


# Inside-tests of the shapes in their own frame (u right, v up, circumradius about 1).


def _inside_polygon(u: torch.Tensor, v: torch.Tensor, vertices: list[tuple[float, float]]) -> torch.Tensor:
    """Even-odd rule: a point is inside if a ray from it to the right crosses the boundary an odd
    number of times. Works for any simple polygon, convex or not."""
    inside = torch.zeros_like(u, dtype=torch.bool)
    for (u0, v0), (u1, v1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        if v0 == v1:
            continue  # a horizontal edge is never crossed by a horizontal ray
        straddles = (v0 > v) != (v1 > v)
        crossing_u = u0 + (v - v0) * (u1 - u0) / (v1 - v0)
        inside ^= straddles & (u < crossing_u)
    return inside


def _star_vertices(points: int, outer: float, inner: float) -> list[tuple[float, float]]:
    """A star (or, with inner == outer * cos(pi / points), a regular polygon) with a tip pointing up."""
    vertices = []
    for k in range(2 * points):
        radius = outer if k % 2 == 0 else inner
        angle = math.pi / 2 + k * math.pi / points
        vertices.append((radius * math.cos(angle), radius * math.sin(angle)))
    return vertices


SQUARE = [(-0.7071, -0.7071), (0.7071, -0.7071), (0.7071, 0.7071), (-0.7071, 0.7071)]
TRIANGLE = _star_vertices(3, 1.0, 0.5)  # inner radius cos(60 deg): the mid-points of the sides
STAR = _star_vertices(5, 1.0, 0.45)
_ARM, _HALF_WIDTH = 0.95, 0.3
CROSS = [
    (_HALF_WIDTH, _ARM), (_HALF_WIDTH, _HALF_WIDTH), (_ARM, _HALF_WIDTH),
    (_ARM, -_HALF_WIDTH), (_HALF_WIDTH, -_HALF_WIDTH), (_HALF_WIDTH, -_ARM),
    (-_HALF_WIDTH, -_ARM), (-_HALF_WIDTH, -_HALF_WIDTH), (-_ARM, -_HALF_WIDTH),
    (-_ARM, _HALF_WIDTH), (-_HALF_WIDTH, _HALF_WIDTH), (-_HALF_WIDTH, _ARM),
]  # fmt: skip
ARROW = [(0.0, 1.0), (0.7, 0.1), (0.28, 0.1), (0.28, -0.95), (-0.28, -0.95), (-0.28, 0.1), (-0.7, 0.1)]


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u**2 + v**2 <= 1.0


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    radius_squared = u**2 + v**2
    return (radius_squared <= 1.0) & (radius_squared >= 0.55**2)


def _crescent(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """A disc with a smaller disc bitten out of its right side; opens to the right."""
    return (u**2 + v**2 <= 1.0) & ((u - 0.45) ** 2 + v**2 > 0.8**2)


def _heart(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The classic sextic heart (x^2 + y^2 - 1)^3 <= x^2 y^3, scaled and shifted to circumradius ~1."""
    hx, hy = 1.2 * u, 1.2 * v + 0.15
    return (hx**2 + hy**2 - 1) ** 3 <= hx**2 * hy**3


def _ellipse(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Lying flat: semi-axes 1 (horizontal) and 0.5."""
    return u**2 + (v / 0.5) ** 2 <= 1.0


def _polygon_test(vertices: list[tuple[float, float]]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda u, v: _inside_polygon(u, v, vertices)


# One inside-test per entry of SHAPES, in the same order.
INSIDE_TESTS = [
    _circle,
    _polygon_test(SQUARE),
    _polygon_test(TRIANGLE),
    _polygon_test(STAR),
    _polygon_test(CROSS),
    _ring,
    _crescent,
    _heart,
    _polygon_test(ARROW),
    _ellipse,
]
assert len(INSIDE_TESTS) == len(SHAPES)
