"""`ganedit info`, `sample`, `convert` and `zoo`: looking at, drawing from and fetching models."""

import json
import math
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import DownloadBar, quiet_third_party, stderr_console, stdout_console
from ganedit.cli.main import (
    CONTEXT,
    SEED,
    FiniteFloat,
    add_plain_row,
    apply_common,
    check_room,
    check_writable,
    check_writable_folder,
    cli,
    common_options,
    emit_json,
)
from ganedit.cli.recipe import CARD_HELP, check_card, write_card_of
from ganedit.errors import GaneditError
from ganedit.generators import sampling
from ganedit.generators.registry import config_dict
from ganedit.judges import weights
from ganedit.settings import to_toml
from ganedit.store import zoo


def describe(bundle) -> dict:
    """Everything `ganedit info` reports about a loaded model."""
    generator, discriminator = bundle.generator, bundle.discriminator
    count = sampling.num_classes(generator)
    return {
        "model": bundle.source,  # as given: a path or a zoo name
        "format": bundle.format,
        "architecture": generator.arch,
        "resolution": sampling.resolution(generator),
        "classes": count,
        "class_names": bundle.class_names,
        "generator": {
            "parameters": sum(p.numel() for p in generator.parameters()),
            "config": config_dict(generator),
        },
        "discriminator": None
        if discriminator is None
        else {
            "architecture": discriminator.arch,
            "parameters": sum(p.numel() for p in discriminator.parameters()),
            "config": config_dict(discriminator),
        },
        "metadata": bundle.metadata,
    }


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit info biggan-deep-256
  ganedit info ffhq.pkl --json | jq .generator.config
  ganedit info edited.safetensors      # shows the provenance of a ganedit file
  ganedit info edited.safetensors --recipe > again.toml && ganedit unlearn --recipe again.toml""",
)
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.option(
    "--recipe", "as_recipe", is_flag=True,
    help="Print the recipe the model was made with, as TOML (run it again with `ganedit COMMAND --recipe FILE`).",
)  # fmt: skip
@common_options
def info(model, as_json, as_recipe, device, quiet, offline, allow_nonfinite):
    """Show a model's format, architecture, config, size, classes and provenance."""
    apply_common(device, quiet, offline, allow_nonfinite)
    report = describe(ganedit.load_model(model))
    if as_recipe:
        recipe = report["metadata"].get("provenance", {}).get("recipe")
        if recipe is None:
            raise GaneditError(f"{model} records no recipe (it was not written by a ganedit editing command)")
        click.echo(to_toml(recipe), nl=False)
        return
    if as_json:
        emit_json({**report, "written": []})
        return
    from rich.table import Table

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    add_plain_row(table, "source", report["model"])
    add_plain_row(table, "format", report["format"])
    add_plain_row(table, "architecture", report["architecture"])
    add_plain_row(table, "resolution", f"{report['resolution']} px")
    names = report["class_names"]
    classes = str(report["classes"]) if report["classes"] else "unconditional"
    if names:
        shown = ", ".join(names[:8]) + (f", ... ({len(names) - 8} more)" if len(names) > 8 else "")
        classes += f": {shown}"
    add_plain_row(table, "classes", classes)
    add_plain_row(table, "generator", f"{report['generator']['parameters']:,} parameters")
    add_plain_row(table, "  config", json.dumps(report["generator"]["config"]))
    if report["discriminator"]:
        add_plain_row(table, "discriminator", f"{report['discriminator']['parameters']:,} parameters")
        add_plain_row(table, "  config", json.dumps(report["discriminator"]["config"]))
    else:
        add_plain_row(table, "discriminator", "none")
    for key, value in report["metadata"].items():
        add_plain_row(table, key, json.dumps(value, default=str) if not isinstance(value, str) else value)
    stdout_console().print(table)


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit sample biggan-deep-256 --class daisy --class 'tiger shark' -n 8 -o grid.png
  ganedit sample ffhq.pkl -n 16 --seed 1 --truncation 0.7 -o faces.png
  ganedit sample edited.safetensors --class 3 -n 4 --out-dir samples/
  ganedit sample toy-stylegan2 -n 30 --showing star --judge toy --out-dir stars/   # negatives for unlearn""",
)
@click.argument("model")
@click.option(
    "--class",
    "classes",
    multiple=True,
    metavar="NAME_OR_INDEX",
    help="Class to sample (repeatable); names match case-insensitively. Default: classes drawn from the seed.",
)
@click.option(
    "-n",
    "--num",
    "count",
    default=8,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="Samples per class (unconditional: in all).",
)
@click.option(
    "--seed", default=0, show_default=True, type=SEED, help="Same seed, same latents and images, on any device."
)
@click.option(
    "--truncation",
    default=1.0,
    show_default=True,
    type=FiniteFloat(0, 1, low_open=True),
    help="BigGAN truncation t / StyleGAN2 psi.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write one PNG grid (one row per class)."
)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one PNG per sample.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1), help="Images generated at once.")
@click.option("--showing", metavar="LABEL", help="Keep only samples --judge calls LABEL (unconditional models): "
              "a folder of the model's own examples of a feature, e.g. negatives for unlearn.")  # fmt: skip
@click.option("--judge", "judge_spec", metavar="SPEC", help="The classifier of --showing (`toy`: the toy oracle).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def sample(model, classes, count, seed, truncation, output, out_dir, batch_size, showing, judge_spec, as_json, device,
           quiet, offline, allow_nonfinite):  # fmt: skip
    """Generate images from a model with a fixed seed."""
    if output is None and out_dir is None:
        raise click.UsageError("say where to write: -o grid.png and/or --out-dir DIR")
    if (showing is None) != (judge_spec is None):
        raise click.UsageError("--showing LABEL and --judge SPEC go together")
    check_writable(output, inputs=[model])
    if out_dir is not None:
        check_writable_folder(out_dir, "--out-dir")
    torch_device = apply_common(device, quiet, offline, allow_nonfinite)
    bundle = ganedit.load_model(model, device=torch_device)
    generator = bundle.generator
    total_classes = sampling.num_classes(generator)
    if classes:
        indices = sampling.resolve_classes(list(classes), bundle.class_names, total_classes)
    elif total_classes:
        indices = torch.randint(total_classes, (1,), generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        indices = [None]
    per_row = count
    labels = torch.tensor([index for index in indices for _ in range(count)]) if total_classes else None
    if showing is not None:
        from ganedit.cli.judging import judge_for
        from ganedit.procedures.unlearn import mine_negatives

        if total_classes or classes or truncation != 1.0:
            raise GaneditError("--showing works on unconditional models, untruncated; drop --class / --truncation")
        judge, feature = judge_for(judge_spec, None, showing, torch_device)
        with stderr_console().status(f"generating until {judge.name} finds {count} showing {showing!r}"):
            images = mine_negatives(generator, judge, feature, count, seed)
    else:
        z = sampling.sample_latents(generator, count * len(indices), seed, truncation)
        with stderr_console().status(f"generating {len(z)} images on {torch_device}"):
            images = sampling.generate(generator, z, labels, truncation, batch_size)
    written = []
    if output is not None:
        columns = per_row if total_classes else math.ceil(math.sqrt(count))
        sampling.save_grid(images, output, columns)
        written.append(str(output))
    if out_dir is not None:
        names = [
            f"{'unconditional' if index is None else f'class{index:04d}'}_seed{seed}_{i:04d}"
            for index in indices
            for i in range(count)
        ]
        written += [str(path) for path in sampling.save_each(images, out_dir, names)]
    report = {
        "model": str(model),
        "seed": seed,
        "truncation": truncation,
        "classes": [
            {"index": index, "name": bundle.class_names[index] if bundle.class_names else None}
            for index in indices
            if index is not None
        ],
        "images": len(images),
        "showing": showing,
        "judge": getattr(judge, "name", None) if showing is not None else None,
        "written": written,
    }
    if as_json:
        emit_json(report)
    else:
        shown = written if len(written) <= 3 else written[:2] + [f"... ({len(written) - 2} more)"]
        stdout_console().print(f"wrote {len(images)} images: {', '.join(shown)}")


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit convert biggan-deep-256 -o biggan-deep-256.safetensors
  ganedit convert network-snapshot.pkl -o ffhq.safetensors""",
)
@click.argument("model")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .safetensors file to write.",
)
@click.option("--card", is_flag=True, help=CARD_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@common_options
def convert(model, output, card, as_json, device, quiet, offline, allow_nonfinite):
    """Convert any supported checkpoint to ganedit's own format (safetensors with provenance)."""
    from ganedit.generators.formats import resolve_model_path
    from ganedit.store.provenance import make_provenance, parent_record

    apply_common(device, quiet, offline, allow_nonfinite)
    path = resolve_model_path(model)
    check_writable(output, inputs=[path])
    check_card(card, output)
    bundle = ganedit.load_model(path)
    check_room(output, [bundle.generator, bundle.discriminator])
    provenance = make_provenance("convert", {"source_format": bundle.format}, [parent_record(str(model), path, bundle)])
    ganedit.save_checkpoint(
        output, bundle.generator, bundle.discriminator, bundle.class_names, provenance, extra=bundle.metadata
    )
    report = {
        "model": str(model),
        "format": bundle.format,
        "output": str(output),
        "written": [str(output)] + write_card_of(card, output),
        "discriminator": bundle.discriminator is not None,
    }
    if as_json:
        emit_json(report)
    else:
        stdout_console().print(f"wrote {output} ({bundle.format} -> ganedit safetensors)")


@cli.group(context_settings=CONTEXT)
def zoo_group():
    """Named models: list the registry, download into the cache."""


cli.add_command(zoo_group, name="zoo")


@zoo_group.command(
    "list",
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit zoo list
  ganedit zoo list --json | jq '.entries[] | select(.cached)'""",
)
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def zoo_list(as_json):
    """Show every zoo model, its source, licence, hash policy and whether it is cached."""
    rows = []
    for model in zoo.REGISTRY.values():
        cached = zoo.cached_files(model)
        rows.append(
            {
                "name": model.name,
                "description": model.description,
                "architecture": model.architecture,
                "format": model.format,
                "resolution": model.resolution,
                "classes": model.classes,
                "licence": model.licence,
                "size_mb": model.size_mb,
                "files": [{"filename": f.filename, "urls": list(f.urls), "sha256": f.sha256} for f in model.files],
                "hash": zoo.hash_policy(model),
                "cached": all(cached.values()),
                "path": str(zoo.model_dir(model)),
            }
        )
    if as_json:
        emit_json({"cache": str(zoo.cache_root()), "entries": rows, "written": []})
        return
    from rich.table import Table

    table = Table(title=f"ganedit zoo (cache: {zoo.cache_root()})")
    short_hash = {
        "published sha256": "published",
        "pinned at first download": "pinned",
        "to be pinned at first download": "on first use",
        "shipped with ganedit": "shipped",
    }
    for column in ("name", "px", "classes", "size", "licence", "sha256", "cached"):
        table.add_column(column, no_wrap=column != "licence", min_width=10 if column == "licence" else None)
    for row in rows:
        add_plain_row(
            table,
            row["name"],
            row["resolution"],
            row["classes"] or "-",
            f"{row['size_mb']:g} MB" if row["size_mb"] else "?",
            row["licence"].split(" (")[0],
            short_hash[row["hash"]],
            "yes" if row["cached"] else "no",
        )
    stdout_console().print(table)


@zoo_group.command(
    "download",
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit zoo download biggan-deep-256
  ganedit zoo download --judges resnet50,vit_b_16 --clip ViT-B-32 --lpips alex,vgg --inception
  ganedit zoo download stylegan2-ffhq-256 --all-aux --json     # warm a CI cache in one step

\b
--judges SPECS   torchvision classifiers as --judge / --classifier name them (resnet50,
                 resnet50:IMAGENET1K_V2, places365-resnet18), into the torch hub cache
--clip SPECS     open_clip models as --clip names them (ViT-B-32, ViT-B-16:laion2b_s34b_b88k),
                 into the Hugging Face hub cache
--lpips NETS     LPIPS trunks (alex, vgg; their linear weights ship with the lpips package)
--inception      torch-fidelity's Inception (FID, KID, IS, precision / recall)
--all-aux        all the weights ganedit's defaults use: resnet50, ViT-B-32, alex and vgg, Inception
Lists are comma-separated, and each option can be repeated. Each is loaded once, as a run loads it,
so later runs find it cached (offline too). Offline mode (GANEDIT_OFFLINE=1 / HF_HUB_OFFLINE=1) refuses.""",
)
@click.argument("name", required=False)
@click.option("--judges", multiple=True, metavar="SPECS", help="Classifier weights to fetch (comma-separated).")
@click.option("--clip", "clips", multiple=True, metavar="SPECS", help="CLIP weights to fetch (comma-separated).")
@click.option("--lpips", multiple=True, metavar="NETS", help="LPIPS networks to fetch: alex, vgg (comma-separated).")
@click.option("--inception", is_flag=True, help="Fetch torch-fidelity's Inception weights.")
@click.option("--all-aux", is_flag=True, help="Fetch every judge, CLIP, LPIPS and Inception weight the defaults use.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print where the model is, and what was downloaded, as JSON.")
def zoo_download(name, judges, clips, lpips, inception, all_aux, quiet, as_json):
    """Download a zoo model into the cache (and pin its sha256 on first download), and the weights of
    judges, CLIP, LPIPS and Inception into theirs."""
    aux = {
        "judges": _comma_list(judges),
        "clips": _comma_list(clips),
        "lpips": _comma_list(lpips),
        "inception": inception,
    }
    if all_aux:
        aux = {key: value or weights.AUX_DEFAULTS[key] for key, value in aux.items()}
    if name is None and not any(aux.values()):
        raise click.UsageError("say what to download: a zoo model NAME and/or --judges / --clip / --lpips / "
                               "--inception / --all-aux")  # fmt: skip
    stderr_console().quiet = quiet
    zoo.set_download_progress(DownloadBar)
    path, written, fetched = None, [], []
    if name is not None:
        entry = zoo.lookup(name)
        folder = zoo.model_dir(entry)
        missing = [folder / file for file, cached in zoo.cached_files(entry).items() if not cached]
        with quiet_third_party(quiet):
            path = zoo.resolve(name, offline=False)
        written = [str(file) for file in missing if file.is_file()]
    if any(aux.values()):
        with quiet_third_party(quiet):
            fetched = weights.fetch_aux_weights(**aux)
    written += [file for record in fetched for file in record["written"]]
    if as_json:
        emit_json({"model": name, "path": None if path is None else str(path), "aux": fetched, "written": written})
        return
    if name is not None:
        stdout_console().print(f"{name}: {path}")
    for record in fetched:
        files = ", ".join(record["written"]) or "already cached"
        stdout_console().print(f"{record['kind']} {record['name']}: {files}", markup=False, highlight=False)


def _comma_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--judges a,b --judges c` as ("a", "b", "c")."""
    return tuple(item.strip() for value in values for item in value.split(",") if item.strip())
