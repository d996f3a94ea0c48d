"""`ganedit merge`: the command line of ganedit.procedures.merge (GAN Cocktail)."""

import sys
from pathlib import Path

import click
import torch

import ganedit
from ganedit.cli.console import stderr_console, stdout_console
from ganedit.cli.main import CONTEXT, add_plain_row, apply_common, check_writable, cli, common_options, emit_json
from ganedit.errors import GaneditError
from ganedit.procedures.merge import RULES, MergeSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOY_MODELS = ("toy-stylegan2-warm", "toy-stylegan2-cool")  # the default: two colour domains
TOY_JUDGES = {  # the oracle head that tells each toy model's domain
    "toy-stylegan2-warm": "toy:colour",
    "toy-stylegan2-cool": "toy:colour",
    "toy-stylegan2-a": "toy:shape",
    "toy-stylegan2-b": "toy:shape",
    "toy-stylegan2": "toy:shape",
}
# Settings for the embedded toy models, used where neither option nor config gives one: a run in under
# a minute on a 2-core CPU (the defaults of MergeSettings are the paper's, for real 128-256 px models).
TOY_DEFAULTS = {
    "rooting_steps": 150,
    "steps": 100,
    "discriminator_warmup": 50,
    "batch_size": 8,
    "pl_weight": 0.0,
    "w_avg_samples": 2000,
}
SETTING_DEFAULTS = {
    name: getattr(MergeSettings, name) for name in MergeSettings.__dataclass_fields__ if name != "block_weights"
}
CONFIG_KEYS = {"models", "output", "names", "parent_classes", "rooted", "keep_rooted", "judge", "eval_samples"} | set(
    MergeSettings.__dataclass_fields__
)


def _default(name: str) -> str:
    toy = f"; toy models: {TOY_DEFAULTS[name]}" if name in TOY_DEFAULTS else ""
    return f"(default {SETTING_DEFAULTS[name]}{toy})"


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(item) for item in text.replace(",", " ").split()]
    except ValueError:
        raise GaneditError(f"expected comma-separated numbers, got {text!r}") from None


@cli.command(
    "merge",
    context_settings=CONTEXT,
    epilog="""\b
MODELS default to the two embedded toy colour-domain models (toy-stylegan2-warm toy-stylegan2-cool);
class i of the merged model is MODELS[i], named by --names or the models' names.

\b
Examples:
  ganedit merge -o cocktail.safetensors                                  # the two toy colour domains
  ganedit merge cats.pkl dogs.pkl --names cats,dogs -o pets.safetensors --judge resnet50
  ganedit merge a.pt b.pt c.pt --root 1 --proportions 1,1,2 -o abc.safetensors --keep-rooted rooted/
  ganedit merge a.pt b.pt c.pt --rooted rooted/rooted-0.safetensors --rooted rooted/rooted-2.safetensors \\
      --root 1 -o abc.safetensors                                         # reuse rooted models
  ganedit merge --config merge.toml --dry-run                             # validate and print the plan
  ganedit merge a.pkl b.pkl --no-rooting -o naive.safetensors             # the naive-averaging baseline

\b
Merge rules (the root is the base, tau_i = theta_i - theta_root): mean (the paper's uniform average),
task-arithmetic (theta_root + sum w_i tau_i; --weights, default 1/N), ties (trim to --density, elect
signs, disjoint mean; --weights default 1), slerp (two models; --weights t, default 0.5).
--block-weight PREFIX=S scales the merged offset of the parameters starting with PREFIX (mapping,
synthesis.b64, D.b32, ...). A conditional parent gives its class --parent-class (default 0).
--config FILE.toml: the same names as the options, with underscores (models = ["a.pkl", "b.pkl"],
names = [...], rooting = false, block_weights = {mapping = 0.5}); options given on the command line win.
The run checkpoints to OUTPUT.resume every --checkpoint-every steps and on Ctrl-C; --resume continues it.""",
)
@click.argument("models", nargs=-1)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="The merged model.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="merge.toml with the run's settings.")
@click.option("--names", help="Class names, comma-separated, one per model (default: the models' names).")
@click.option("--root", help="The root model: index or class name (default: the first).")
@click.option("--rule", type=click.Choice(RULES), help="How the root and rooted models combine (default mean).")
@click.option("--weights", help="Rule weights, comma-separated (see below).")
@click.option("--density", type=click.FloatRange(0, 1, min_open=True), help="ties: share of entries kept (0.2).")
@click.option("--block-weight", "block_weights", multiple=True, metavar="PREFIX=S", help="Scale a block's offset.")
@click.option("--proportions", help="Class proportions of union fine-tuning, comma-separated (default uniform).")
@click.option("--no-rooting", is_flag=True, default=None, help="Naive baseline: average the parents directly.")
@click.option("--rooting-steps", type=click.IntRange(0), help=f"Steps per rooted model {_default('rooting_steps')}.")
@click.option("--steps", type=click.IntRange(0), help=f"Union fine-tuning steps {_default('steps')}.")
@click.option("--batch-size", type=click.IntRange(1), help=f"Images per step {_default('batch_size')}.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help=f"Adam learning rate {_default('lr')}.")
@click.option("--r1-gamma", type=click.FloatRange(0), help=f"R1 weight {_default('r1_gamma')}.")
@click.option("--pl-weight", type=click.FloatRange(0), help=f"Path-length weight {_default('pl_weight')}.")
@click.option(
    "--discriminator-warmup",
    type=click.IntRange(0),
    help=f"D-only steps before each stage's steps (not the paper's) {_default('discriminator_warmup')}.",
)
@click.option("--parent-class", "parent_classes", help="Conditional parents: the class each gives, comma-separated.")
@click.option("--keep-rooted", type=click.Path(file_okay=False, path_type=Path), help="Save the rooted models here.")
@click.option("--rooted", multiple=True, type=click.Path(path_type=Path), help="Reuse rooted models (skips rooting).")
@click.option(
    "--judge",
    "judge_spec",
    metavar="SPEC",
    help="Classifier for the report (toy models: toy:colour or toy:shape, by domain).",
)
@click.option(
    "--eval-samples",
    type=click.IntRange(2),
    help="Fixed latents per class in the report (default 1000; toy models: 500).",
)
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), help="PNG: one row per class, before/after.")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(0), help="0 = only on Ctrl-C.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run from OUTPUT.resume.")
@click.option("--dry-run", is_flag=True, help="Only validate, and print the plan.")
@click.option("--seed", type=int, help="Same seed, same result on the same device (default 0).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@common_options
def merge_command(models, output, config_file, names, root, rule, weights, density, block_weights, proportions,
                  no_rooting, rooting_steps, steps, batch_size, lr, r1_gamma, pl_weight, discriminator_warmup,
                  parent_classes, keep_rooted, rooted, judge_spec, eval_samples, grid, checkpoint_every, resume,
                  dry_run, seed, as_json, device, quiet, offline):  # fmt: skip
    """Merge N StyleGAN2 generators into one class-conditional model: GAN Cocktail."""
    torch_device = apply_common(device, quiet, offline)
    config = _read_config(config_file) if config_file is not None else {}
    given = {
        "models": list(models) or None, "output": str(output) if output else None,
        "names": names.split(",") if names else None, "root": root, "rule": rule, "weights": _floats(weights),
        "density": density, "proportions": _floats(proportions),
        "block_weights": dict(_block_weight(item) for item in block_weights) or None,
        "rooting": False if no_rooting else None, "rooting_steps": rooting_steps, "steps": steps,
        "batch_size": batch_size, "lr": lr, "r1_gamma": r1_gamma, "pl_weight": pl_weight,
        "discriminator_warmup": discriminator_warmup,
        "parent_classes": [int(v) for v in _floats(parent_classes)] if parent_classes else None,
        "rooted": [str(p) for p in rooted] or None, "keep_rooted": str(keep_rooted) if keep_rooted else None,
        "judge": judge_spec, "eval_samples": eval_samples, "seed": seed,
    }  # fmt: skip
    run = {**config, **{key: value for key, value in given.items() if value is not None}}
    model_names = [str(m) for m in run.get("models") or TOY_MODELS]
    if len(model_names) < 2:
        raise GaneditError(f"merge needs at least two models, got {len(model_names)}; give two or more checkpoints")
    if run.get("output") is None and not dry_run:
        raise GaneditError("say where to write the merged model: -o OUTPUT (or output = ... in --config)")
    output = Path(run["output"]) if run.get("output") else None
    check_writable(output, grid)

    from ganedit.cli.console import TrainingProgress
    from ganedit.generators.formats import resolve_model_path
    from ganedit.procedures import merge as mg
    from ganedit.store.provenance import make_provenance, parent_record

    paths = [resolve_model_path(m) for m in model_names]
    bundles = [ganedit.load_model(path, device=torch_device) for path in paths]
    class_names = run.get("names") or [_display_name(m) for m in model_names]
    if len(class_names) != len(model_names):
        raise GaneditError(f"{len(class_names)} names for {len(model_names)} models; give one name per model")
    sources = run.get("parent_classes") or [None] * len(bundles)
    if len(sources) != len(bundles):
        raise GaneditError(f"{len(sources)} parent classes for {len(bundles)} models; give one per model")
    parents = [
        mg.Parent(b.generator, b.discriminator, name.strip(), source)
        for b, name, source in zip(bundles, class_names, sources, strict=True)
    ]
    toy = all(m in TOY_JUDGES for m in model_names)
    values = {
        name: run[name] if run.get(name) is not None else (TOY_DEFAULTS.get(name, default) if toy else default)
        for name, default in SETTING_DEFAULTS.items()
    }
    values["root"] = _root_index(run.get("root"), class_names)
    values["block_weights"] = run.get("block_weights") or {}
    settings = MergeSettings(**values)
    if run.get("rooted") and not settings.rooting:
        raise GaneditError("--rooted reuses rooted models, and --no-rooting roots nothing; drop one of the two")
    plan = mg.validate(parents, settings)
    if dry_run:
        report = {"plan": plan, "settings": vars(settings), "models": model_names}
        if as_json:
            emit_json(report)
        else:
            out = stdout_console()
            out.print(
                f"merge {len(parents)} models into classes {', '.join(plan['classes'])} ({plan['resolution']} px)"
            )
            for stage in plan["stages"]:
                out.print(f"  {stage}")
            out.print("valid; nothing was trained (--dry-run)")
        return

    rooted_models = [_read_rooted(Path(p), torch_device) for p in run["rooted"]] if run.get("rooted") else None
    keep = Path(run["keep_rooted"]) if run.get("keep_rooted") else None
    if keep is not None and keep.exists() and not keep.is_dir():
        raise GaneditError(f"--keep-rooted {keep} is a file; give a folder")
    judge = _judge(run.get("judge"), TOY_JUDGES[model_names[0]] if toy else None, torch_device)
    checkpoint = output.with_name(output.name + ".resume")
    with TrainingProgress(quiet=quiet) as progress:
        result = mg.merge(
            parents, settings, rooted=rooted_models, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            resume=resume, progress=progress,
        )  # fmt: skip

    parent_records = [parent_record(m, p) for m, p in zip(model_names, paths, strict=True)]
    parent_records += [parent_record(p, Path(p)) for p in run.get("rooted") or []]
    resolved_config = {"models": model_names, "names": class_names, "parent_classes": sources, **vars(settings)}
    parameters = {"config": resolved_config}
    if keep is not None and rooted_models is None and settings.rooting:
        keep.mkdir(parents=True, exist_ok=True)
        for j, pair in enumerate(result.rooted):
            if pair is not None:
                provenance = make_provenance(
                    "merge-rooting", {**parameters, "rooted_class": j}, parent_records, settings.seed
                )
                ganedit.save_checkpoint(keep / f"rooted-{j}.safetensors", pair[0], pair[1], class_names, provenance)
    evaluation = {"training": result.info}
    if judge is not None:
        samples = run.get("eval_samples") or (500 if toy else 1000)
        stderr_console().print(f"evaluating on {samples} fixed latents per class ...")
        evaluation.update(
            mg.evaluate_merge(
                {"averaged": result.averaged[0], "merged": result.generator}, parents, judge, samples, settings.seed
            )
        )
    provenance = make_provenance("merge", parameters, parent_records, settings.seed, evaluation)
    ganedit.save_checkpoint(output, result.generator, result.discriminator, class_names, provenance)
    checkpoint.unlink(missing_ok=True)
    if grid is not None:
        _save_grid(result.averaged[0], result.generator, len(parents), grid, settings.seed)
    report = {"models": model_names, "class_names": class_names, "written": str(output),
              "grid": str(grid) if grid else None, **evaluation}  # fmt: skip
    if as_json:
        emit_json(report)
        return
    _print_report(report, judge is not None)


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise GaneditError(f"config file {path} does not exist; check the path")
    try:
        config = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise GaneditError(f"{path} is not valid TOML: {error}") from None
    config = {key.replace("-", "_"): value for key, value in config.items()}
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise GaneditError(f"{path}: unknown keys {unknown}; known: {', '.join(sorted(CONFIG_KEYS))}")
    return config


def _block_weight(item: str) -> tuple[str, float]:
    prefix, _, value = item.partition("=")
    try:
        return prefix.strip(), float(value)
    except ValueError:
        raise GaneditError(f"--block-weight {item!r}: expected PREFIX=NUMBER, e.g. mapping=0.5") from None


def _display_name(model: str) -> str:
    from ganedit.store import zoo

    return model if model in zoo.REGISTRY else Path(model).stem


def _root_index(root, class_names: list[str]) -> int:
    if root is None:
        return 0
    if isinstance(root, int) or str(root).strip().isdigit():
        return int(root)
    lowered = [name.lower() for name in class_names]
    if str(root).lower() not in lowered:
        raise GaneditError(f"--root {root!r} is neither an index nor one of the class names {class_names}")
    return lowered.index(str(root).lower())


def _read_rooted(path: Path, device) -> tuple:
    bundle = ganedit.load_model(path, device=device)
    if bundle.discriminator is None:
        raise GaneditError(f"{path} has no discriminator; give the files --keep-rooted wrote")
    return bundle.generator, bundle.discriminator


def _judge(spec, toy_judge: str | None, device):
    from ganedit.judges import load_judge

    if spec is None and toy_judge is None:
        stderr_console().print("no --judge: the report's per-class quality and accuracy are skipped")
        return None
    return load_judge(spec or toy_judge, device=device)


def _save_grid(before, after, classes: int, path: Path, seed: int, count: int = 8) -> None:
    from ganedit.generators.sampling import generate, sample_latents, save_grid

    z = sample_latents(after, count, seed)
    rows = []
    for i in range(classes):
        labels = torch.full([count], i)
        rows += [generate(before, z, labels), generate(after, z, labels)]
    save_grid(torch.cat(rows), path, columns=count)


def _print_report(report: dict, judged: bool) -> None:
    from rich.table import Table

    out = stdout_console()
    if judged:
        table = Table(title=f"merge judged by {report['judge']} ({report['samples']} fixed latents per class)")
        table.add_column("class", no_wrap=True)
        table.add_column("FID: parent (floor) / averaged / merged")
        table.add_column("accuracy: parent / averaged / merged")
        for row in report["classes"]:
            add_plain_row(
                table, row["class"], " / ".join(f"{row[k]['fid']:.2f}" for k in ("parent", "averaged", "merged")),
                " / ".join(f"{row[k]['accuracy']:.1%}" for k in ("parent", "averaged", "merged")),
            )  # fmt: skip
        out.print(table)
    out.print(f"wrote {report['written']}" + (f" and {report['grid']}" if report["grid"] else ""))
