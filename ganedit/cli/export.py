"""`ganedit export`: the command line of ganedit.generators.formats.export."""

from pathlib import Path

import click

import ganedit
from ganedit.cli.console import stdout_console
from ganedit.cli.main import CONTEXT, apply_common, cli, common_options, emit_json
from ganedit.cli.recipe import CARD_HELP, check_card
from ganedit.generators.formats.export import TARGETS


@cli.command(
    context_settings=CONTEXT,
    epilog="""\b
Examples:
  ganedit export edited.safetensors --to rosinality -o edited.pt
  ganedit export ffhq.pkl --to nvidia-state -o ffhq.safetensors      # and ffhq.json
  ganedit export heart.safetensors --to biggan-folder -o heart-biggan/
  ganedit export toy-stylegan2 --to rosinality -o toy.pt --json | jq -r .load

\b
Formats (plain tensors only: torch.load(weights_only=True) and safetensors read them):
  rosinality     OUT.pt: g_ema and latent_avg; g (the same tensors) and d when the model has a
                 discriminator. For Generator / Discriminator of rosinality/stylegan2-pytorch
                 (unconditional StyleGAN2 only; its code never applies NVIDIA's conv_clamp).
  nvidia-state   OUT.safetensors: G_ema.* and D.* named as NVIDIA's state_dict(), and OUT.json: the
                 init kwargs of NVlabs/stylegan2-ada-pytorch's training/networks.py (widths
                 min(channel_base // res, channel_max); num_fp16_res 0). Load it with:
                   kwargs, tensors = json.load(open("OUT.json")), load_file("OUT.safetensors")
                   G = Generator(**kwargs["G_ema_init_kwargs"])
                   G.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")})
                 (stylegan3's networks_stylegan2.py takes the synthesis_kwargs entries as keywords.)
                 A network pickle (.pkl) is not written: a runnable one carries NVIDIA's Python source
                 inside it, which ganedit does not ship.
  biggan-folder  OUT/config.json and OUT/pytorch_model.bin, for pytorch-pretrained-biggan's
                 BigGAN.from_pretrained("OUT"), embed-tune's appended classes included; the class
                 names go to OUT/class_names.json. A model whose first blocks are narrower than
                 the package's fixed 16 x channel_width (the toy BigGAN) is widened with zero
                 channels: the same images.
Each export reads back into ganedit (`ganedit info OUT`) with the model's outputs.""",
)
@click.argument("model")
@click.option("--to", "to", required=True, type=click.Choice(list(TARGETS)), help="The format to write.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The file to write (a folder for biggan-folder; NAME.safetensors for nvidia-state).",
)
@click.option("--card", is_flag=True, help=CARD_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was written, and how to load it, as JSON.")
@common_options
def export(model, to, output, card, as_json, device, quiet, offline, allow_nonfinite):
    """Write a model in the format of rosinality's or NVIDIA's StyleGAN2 code or of pytorch-pretrained-biggan."""
    from ganedit.generators.formats import resolve_model_path
    from ganedit.store.card import write_card
    from ganedit.store.provenance import make_provenance, parent_record

    apply_common(device, quiet, offline, allow_nonfinite)
    folder = to == "biggan-folder"
    check_card(card, output, folder)
    path = resolve_model_path(model)
    bundle = ganedit.load_model(path)
    bundle.source = str(path)
    exported = ganedit.export_model(bundle, to, output)
    if card:  # the card of the exported files: an "export" of the model, its own provenance kept as the parent's
        stored = bundle.metadata.get("provenance") or {}
        provenance = make_provenance("export", {"to": to, "source_format": bundle.format},
                                     [parent_record(str(model), path, bundle)], stored.get("seed"),
                                     stored.get("evaluation"), stored.get("recipe"))  # fmt: skip
        exported.written.append(write_card(output, provenance, bundle.class_names, folder))
    report = {
        "model": str(model),
        "format": exported.source_format,
        "to": to,
        "output": str(output),
        "written": [str(path) for path in exported.written],
        "discriminator": exported.discriminator,
        "notes": exported.notes,
        "load": exported.load,
    }
    if as_json:
        emit_json(report)
        return
    console = stdout_console()
    console.print(
        f"wrote {', '.join(report['written'])} ({exported.source_format} -> {to})", markup=False, highlight=False
    )
    for note in exported.notes:
        console.print(f"note: {note}", markup=False, highlight=False)
