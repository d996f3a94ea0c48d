"""`ganedit toy render`: folders of toy-world images (ganedit.toy.world), e.g. negatives for `unlearn`."""

from pathlib import Path

import click
import torch

from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.main import CONTEXT, SEED, apply_common, check_writable_folder, cli, common_options, emit_json
from ganedit.errors import GaneditError

MAX_RENDER = 100_000  # images one command renders
RENDER_PIXELS = 2**21  # pixels rendered and written at a time: 2,048 images at 32 px, 2 at 1024 px
LISTED_FILES = 10  # up to this many files, --json's `written` lists them; more, it names the folder


@cli.group(context_settings=CONTEXT)
def toy_group():
    """The toy world: procedurally drawn shapes with known attributes (see README, "The toy world")."""


cli.add_command(toy_group, name="toy")


def _names(attribute: str, values: tuple[str, ...]) -> list[str]:
    """The canonical names of `values` (each repeatable option value may be comma-separated), in the toy
    world's order, without repeats; all of them when none are given. Unknown names: GaneditError."""
    from ganedit.toy import world

    given = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if values and not given:
        raise GaneditError(f"--{attribute} is empty; give one or more of: {', '.join(world.ATTRIBUTES[attribute])}")
    indices = {world.attribute_index(attribute, name) for name in given}
    return [name for index, name in enumerate(world.ATTRIBUTES[attribute]) if not given or index in indices]


@toy_group.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit toy render --shape star -n 30 --out-dir stars/           # negatives for unlearn --negatives stars/
  ganedit toy render --colour red --background black,grey -n 100 --out-dir red/
  ganedit toy render --shape heart,ring --resolution 256 --seed 1 --out-dir big/

\b
Each image shows one shape in one colour on one background, drawn uniformly from the allowed ones (all,
unless --shape/--colour/--background restrict them), at the toy world's random size, position and
rotation. Files are named NNNN_SHAPE_COLOUR_BACKGROUND.png in the order drawn; the same options and
--seed give the same images, bit for bit. --resolution draws the shapes natively at that size (crisp,
not resized; default the toy world's 32 px).""",
)
@click.option(
    "--shape", "shapes", multiple=True, metavar="NAMES",
    help="Shapes to draw (repeatable or comma-separated). Default: all.",
)  # fmt: skip
@click.option(
    "--colour", "colours", multiple=True, metavar="NAMES",
    help="Colours to draw (repeatable or comma-separated). Default: all.",
)  # fmt: skip
@click.option(
    "--background", "backgrounds", multiple=True, metavar="NAMES",
    help="Backgrounds (repeatable or comma-separated). Default: all.",
)  # fmt: skip
@click.option(
    "-n", "--num", "count", default=30, show_default=True, type=click.IntRange(1, MAX_RENDER), help="Images to render."
)
@click.option(
    "--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the PNGs into (created if missing; must be empty unless --overwrite).",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=SEED, help="Same seed and options, same images.")
@click.option(
    "--resolution", default=None, type=click.IntRange(8, 1024), metavar="PX",
    help="Image side in pixels.  [default: the toy world's, 32]",
)  # fmt: skip
@click.option(
    "--overwrite", is_flag=True,
    help="Write into a non-empty folder: files of the same name are replaced, other files are kept.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@common_options
def render(shapes, colours, backgrounds, count, out_dir, seed, resolution, overwrite, as_json, device, quiet, offline,
           allow_nonfinite):  # fmt: skip
    """Render toy-world images into a folder of PNGs (a folder of negatives in one command)."""
    from ganedit.engine.sources import _is_image_name
    from ganedit.generators.sampling import save_each
    from ganedit.toy import world

    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    allowed = {
        "shape": _names("shape", shapes),
        "colour": _names("colour", colours),
        "background": _names("background", backgrounds),
    }
    resolution = resolution or world.RESOLUTION
    if out_dir.exists() and not out_dir.is_dir():
        raise GaneditError(f"--out-dir {out_dir} is a file; give a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise GaneditError(
            f"--out-dir {out_dir} is not empty; give an empty or new folder, or --overwrite to write into it"
        )
    check_writable_folder(out_dir, "--out-dir")
    before = {path.name for path in out_dir.iterdir()} if out_dir.exists() else set()

    attributes = world.draw_attributes(
        count, torch.Generator().manual_seed(seed), allowed["shape"], allowed["colour"], allowed["background"]
    )
    digits = max(4, len(str(count - 1)))
    names = [
        f"{index:0{digits}d}_{world.SHAPES[s]}_{world.COLOURS[c]}_{world.BACKGROUNDS[b]}"
        for index, (s, c, b) in enumerate(zip(*(a.tolist() for a in attributes[:3]), strict=True))
    ]
    per_chunk = max(1, RENDER_PIXELS // resolution**2)
    written = []
    with stderr_console().status(f"rendering {count} toy images at {resolution} px into {out_dir}"):
        for start in range(0, count, per_chunk):
            chunk = [a[start : start + per_chunk].to(torch_device) for a in attributes]
            images = world.render(*chunk, resolution=resolution).cpu()
            written += save_each(images, out_dir, names[start : start + per_chunk])

    others = sorted(name for name in before - {path.name for path in written} if _is_image_name(name))
    if others:
        from rich.text import Text

        plural = "s" if len(others) != 1 else ""
        note = (f"note: {out_dir} also holds {len(others)} other image file{plural} (e.g. {others[0]}), which a "
                "command reading the folder takes too")  # fmt: skip
        stderr_console().print(Text(note, style="yellow"), soft_wrap=True)
    report = {
        "out_dir": str(out_dir),
        "count": count,
        "resolution": resolution,
        "seed": seed,
        "shapes": allowed["shape"],
        "colours": allowed["colour"],
        "backgrounds": allowed["background"],
        "written": [str(path) for path in written] if count <= LISTED_FILES else [str(out_dir)],
    }
    if as_json:
        emit_json(report)
        return

    def described(attribute: str, plural: str) -> str:
        chosen, every = allowed[attribute], world.ATTRIBUTES[attribute]
        return f"all {len(every)} {plural}" if len(chosen) == len(every) else ", ".join(chosen)

    stdout_console().print(
        f"wrote {count} toy images ({resolution} px; {described('shape', 'shapes')}; "
        f"{described('colour', 'colours')}; {described('background', 'backgrounds')}) to {out_dir}",
        markup=False,
        highlight=False,
    )
