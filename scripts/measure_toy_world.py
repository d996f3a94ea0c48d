"""Measure what the shipped toy generators draw, read by the forgiving and by the strict toy oracle.

    python scripts/measure_toy_world.py                          # one JSON, then markdown tables
    python scripts/measure_toy_world.py --sheets /tmp/toy_sheets # also a labelled 64-sample sheet each

For every shipped toy generator it draws SAMPLES latents from SEED (toy-biggan: SAMPLES per class, the
same latents for every class), at truncation 1, and recovers from each latent what the model was made
to draw, with the training scripts' own decoding:

- toy-biggan: the class's shape; the colour and background that z codes (scripts/train_toy_biggan.py,
  `attributes_from_latents`: 'star' always red);
- toy-stylegan2, -a, -b: the shape (among the model's shapes), colour and background that z's buckets
  code (scripts/train_toy_stylegan2.py, `attributes_from_latents`);
- toy-stylegan2-warm, -cool: the same, except that z[1]'s four buckets code the domain's four colours
  (`set_bucket_layers` with a subset of colours): the bucket of 4 is the bucket of 8 halved.

Then both oracles read every sample. Reported, per generator and per designed shape: each oracle's
agreement with the designed shape, and the share of samples it reads as one of the model's shapes; per
generator: agreement per attribute and, where the model draws only some shapes or colours, the share
read inside that set. Where the oracles differ, the strict one is the measure of "the shape is really
drawn" (ganedit.toy.oracle). Takes about 30 s on one thread.

A sheet (--sheets DIR) shows 64 of a generator's samples (spread evenly over them, so over toy-biggan's
classes), upscaled x4 (nearest), each under the
strict oracle's reading of its shape: green where that is the designed shape, red (with the designed
shape beneath) where it is not.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import ganedit
from ganedit.generators.sampling import generate, sample_latents, to_uint8
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, predict

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the training scripts' decoding of latents
import train_toy_biggan  # noqa: E402
import train_toy_stylegan2  # noqa: E402

SAMPLES = 1000
SEED = 0
SHEET_SAMPLES, SHEET_COLUMNS, SHEET_SCALE = 64, 8, 4
STYLEGAN2S = [*train_toy_stylegan2.DOMAINS, *train_toy_stylegan2.COLOUR_DOMAINS]


@dataclass
class Designed:
    """A generator's samples and what each was designed to show."""

    images: torch.Tensor  # [N, 3, 32, 32] in [-1, 1]
    labels: dict[str, torch.Tensor]  # attribute -> [N] long label indices, as the oracle's heads
    shapes: list[str]  # the shapes the model draws at all
    colours: list[str]  # the colours it draws at all


def biggan_samples(samples: int, seed: int) -> Designed:
    """toy-biggan: `samples` latents per class, the same latents for every class."""
    G = ganedit.load_model("toy-biggan").generator
    z = sample_latents(G, samples, seed)
    images, labels = [], {attribute: [] for attribute in world.ATTRIBUTES}
    for index in range(len(train_toy_biggan.CLASS_NAMES)):
        classes = torch.full((samples,), index, dtype=torch.long)
        images.append(generate(G, z, classes, batch_size=250))
        shape, colour, background, *_ = train_toy_biggan.attributes_from_latents(z, classes)
        for attribute, value in zip(world.ATTRIBUTES, (shape, colour, background), strict=True):
            labels[attribute].append(value)
    labels = {attribute: torch.cat(values) for attribute, values in labels.items()}
    return Designed(torch.cat(images), labels, list(train_toy_biggan.CLASS_NAMES), list(world.COLOURS))


def stylegan2_samples(name: str, samples: int, seed: int) -> Designed:
    G = ganedit.load_model(name).generator
    z = sample_latents(G, samples, seed)
    shapes = train_toy_stylegan2.DOMAINS.get(name, list(world.SHAPES))
    shape, colour, background, *_ = train_toy_stylegan2.attributes_from_latents(z, shapes)
    colours = train_toy_stylegan2.COLOUR_DOMAINS.get(name)
    if colours is not None:  # z[1]'s 4 buckets code these colours; attributes_from_latents cut it in 8
        colour = torch.tensor([world.COLOURS.index(domain_colour) for domain_colour in colours])[colour // 2]
    labels = {"shape": shape, "colour": colour, "background": background}
    return Designed(generate(G, z, batch_size=250), labels, shapes, colours or list(world.COLOURS))


def share(mask: torch.Tensor) -> float:
    return round(mask.float().mean().item(), 4)


def measure(designed: Designed, readings: dict[str, dict[str, torch.Tensor]]) -> dict:
    """The figures of one generator (module docstring); readings: oracle name -> predict()'s output."""
    shape_set = torch.tensor([world.SHAPES.index(name) for name in designed.shapes])
    colour_set = torch.tensor([world.COLOURS.index(name) for name in designed.colours])

    def both(figure) -> dict[str, float]:
        return {oracle: figure(read) for oracle, read in readings.items()}

    report = {
        "samples": len(designed.images),
        "shapes": designed.shapes,
        "colours": designed.colours,
        "agreement": {
            attribute: both(lambda read, a=attribute: share(read[a] == designed.labels[a]))
            for attribute in world.ATTRIBUTES
        },
    }
    if len(designed.shapes) < len(world.SHAPES):
        report["read_as_its_shapes"] = both(lambda read: share(torch.isin(read["shape"], shape_set)))
    if len(designed.colours) < len(world.COLOURS):
        report["read_as_its_colours"] = both(lambda read: share(torch.isin(read["colour"], colour_set)))
    per_shape = {}
    for name in designed.shapes:
        chosen = designed.labels["shape"] == world.SHAPES.index(name)
        strict_other = readings["strict"]["shape"][chosen]
        strict_other = strict_other[strict_other != world.SHAPES.index(name)]
        per_shape[name] = {
            "samples": int(chosen.sum()),
            "agreement": both(lambda read, c=chosen, n=name: share(read["shape"][c] == world.SHAPES.index(n))),
            "read_as_its_shapes": both(lambda read, c=chosen: share(torch.isin(read["shape"][c], shape_set))),
            "strict_reads_instead": (
                world.SHAPES[int(strict_other.mode().values)] if len(strict_other) else None
            ),  # the strict oracle's most common other reading
        }
    report["per_shape"] = per_shape
    return report


def save_sheet(designed: Designed, strict_shapes: torch.Tensor, path: Path) -> None:
    """SHEET_SAMPLES samples spread evenly over all (so over toy-biggan's classes), labelled (module docstring)."""
    from PIL import Image, ImageDraw

    count = len(designed.images)
    order = torch.linspace(0, count - 1, min(count, SHEET_SAMPLES)).round().long()  # toy-biggan: every class
    size, caption = world.RESOLUTION * SHEET_SCALE, 26
    rows = -(-len(order) // SHEET_COLUMNS)
    sheet = Image.new("RGB", (SHEET_COLUMNS * (size + 4) + 4, rows * (size + caption + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    for position, index in enumerate(order.tolist()):
        image = to_uint8(designed.images[index : index + 1])[0].permute(1, 2, 0).numpy()
        tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
        left = 4 + (position % SHEET_COLUMNS) * (size + 4)
        top = 4 + (position // SHEET_COLUMNS) * (size + caption + 4)
        sheet.paste(tile, (left, top))
        read, meant = world.SHAPES[int(strict_shapes[index])], world.SHAPES[int(designed.labels["shape"][index])]
        draw.text((left + 2, top + size + 1), read, fill=(0, 140, 0) if read == meant else (200, 0, 0))
        if read != meant:
            draw.text((left + 2, top + size + 13), f"meant: {meant}", fill=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def markdown(results: dict) -> str:
    """Two tables: per generator (agreement per attribute, shares inside its set), per designed shape."""

    def pair(figures: dict[str, float]) -> str:
        return f"{100 * figures['forgiving']:.1f} / {100 * figures['strict']:.1f}"

    lines = [
        f"Forgiving / strict toy oracle, % of samples ({results['samples']} per generator, toy-biggan per class; "
        f"seed {results['seed']}, truncation 1).",
        "",
        "| generator | shape agrees | colour agrees | background agrees | read as its shapes | read as its colours |",
        "|---|---|---|---|---|---|",
    ]
    for name, report in results["generators"].items():
        agreement = report["agreement"]
        inside = [
            pair(report[key]) if key in report else "(all)" for key in ("read_as_its_shapes", "read_as_its_colours")
        ]
        lines.append(
            f"| {name} | {pair(agreement['shape'])} | {pair(agreement['colour'])} | {pair(agreement['background'])} "
            f"| {inside[0]} | {inside[1]} |"
        )
    lines += [
        "",
        "| generator | designed shape | samples | shape agrees (forgiving / strict) | strict - forgiving | "
        "read as its shapes | strict's most common other reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, report in results["generators"].items():
        for shape, row in report["per_shape"].items():
            difference = 100 * (row["agreement"]["strict"] - row["agreement"]["forgiving"])
            lines.append(
                f"| {name} | {shape} | {row['samples']} | {pair(row['agreement'])} | {difference:+.1f} "
                f"| {pair(row['read_as_its_shapes'])} | {row['strict_reads_instead'] or '-'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help="latents per generator (default %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="latent seed (default %(default)s)")
    parser.add_argument("--sheets", type=Path, help="write a labelled 64-sample sheet per generator to this folder")
    arguments = parser.parse_args()

    oracles = {"forgiving": load_oracle(), "strict": load_oracle(strict=True)}
    results = {
        "samples": arguments.samples,
        "seed": arguments.seed,
        "truncation": 1.0,
        "oracles": {name: oracle.training_record.get("script") for name, oracle in oracles.items()},
        "generators": {},
    }
    generators = {"toy-biggan": lambda: biggan_samples(arguments.samples, arguments.seed)}
    generators |= {name: lambda n=name: stylegan2_samples(n, arguments.samples, arguments.seed) for name in STYLEGAN2S}
    for name, draw in generators.items():
        designed = draw()
        readings = {oracle_name: predict(oracle, designed.images) for oracle_name, oracle in oracles.items()}
        results["generators"][name] = measure(designed, readings)
        if arguments.sheets is not None:
            save_sheet(designed, readings["strict"]["shape"], arguments.sheets / f"{name}.png")
    print(json.dumps(results, indent=1))
    print()
    print(markdown(results))


if __name__ == "__main__":
    main()
