"""Recipes on the command line: every editing command is a recipe, given as a file, as options, or both.

A command declares two dataclasses with `ganedit.settings.setting` fields: its *run* (models, judge,
inputs, outputs) and its procedure's *settings*. `recipe_options` turns both into click options, and
`resolve` lays the values over each other, later over earlier:

    the dataclasses' defaults
    < the packaged recipe the model's zoo entry names (the embedded toy models' short runs), or, with
      no model given anywhere, the command's default recipe (ganedit/data/recipes/COMMAND.toml)
    < --recipe FILE
    < the options given on the command line

and checks everything before any model is loaded. The resolved recipe goes into the output's metadata;
`ganedit info OUT --recipe` prints it as TOML, and running it again repeats the run.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import click

from ganedit.errors import GaneditError
from ganedit.settings import COMMAND_LINE, as_dict, checked, click_options, from_mapping, given_options, read_toml
from ganedit.store import zoo


@dataclass
class Resolved:
    run: object  # the run dataclass, every field resolved
    settings: object  # the procedure's settings dataclass
    recipe: dict  # what to write into the output's metadata: command, run fields, [settings]


COMMANDS: dict[str, tuple[type, type]] = {}  # command -> (run dataclass, settings dataclass)


def recipe_options(command: str, run_cls, settings_cls):
    """The click options of a command: --recipe, then one per run field, then one per setting."""
    COMMANDS[command] = (run_cls, settings_cls)

    def apply(function):
        function = click_options(settings_cls)(function)
        function = click_options(run_cls)(function)
        return click.option(
            "--recipe",
            "recipe_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A recipe file (TOML): models, inputs, settings, outputs; options given here override it.",
        )(function)

    return apply


def editing_command(command: str, run_cls, settings_cls, *, resumable: bool = True):
    """The options every editing command shares, after its own: --recipe and the generated ones, --resume
    (a resumable procedure), --json, --fid-against / --inception-weights, the gates (--fail-under,
    --fail-over; ganedit.cli.gates.EditChecks), and --device / --quiet / --offline."""
    from ganedit.cli.gates import fid_options, gate_options
    from ganedit.cli.main import common_options

    def apply(function):
        function = common_options(function)
        function = gate_options(fid_options(function))
        function = click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")(
            function
        )
        if resumable:
            function = click.option("--resume", is_flag=True, help="Continue the interrupted run from OUTPUT.resume.")(
                function
            )
        return recipe_options(command, run_cls, settings_cls)(function)

    return apply


def resolve(command: str, run_cls, settings_cls, options: dict, recipe_file: Path | None, model_key: str = "model"):
    """The run and settings of a command from defaults, packaged recipe, recipe file and options."""
    user_run, user_settings = {}, {}
    if recipe_file is not None:
        user_run, user_settings = split_recipe(read_toml(recipe_file), command, run_cls, settings_cls, str(recipe_file))
    given_run, given_settings = (
        given_options(run_cls, options, include_hidden=True),
        given_options(settings_cls, options),
    )
    models = given_run.get(model_key) or user_run.get(model_key)
    base_file = _base_recipe(command, models)
    base_run, base_settings = {}, {}
    if base_file is not None:
        base_run, base_settings = split_recipe(read_toml(base_file), command, run_cls, settings_cls, str(base_file))
    run = from_mapping(run_cls, {**base_run, **user_run, **given_run}, COMMAND_LINE)
    settings = from_mapping(settings_cls, {**base_settings, **user_settings, **given_settings}, COMMAND_LINE)
    recipe = {
        "command": command,
        **{key: value for key, value in as_dict(run).items() if value is not None and value != []},
        "settings": as_dict(settings),
    }
    return Resolved(run, settings, recipe)


def split_recipe(recipe: dict, command: str, run_cls, settings_cls, where: str) -> tuple[dict, dict]:
    """(run values, settings values) of a recipe, checked: its command, known keys, types and ranges."""
    recipe = dict(recipe)
    named = recipe.pop("command", command)
    if named != command:
        raise GaneditError(f"{where}: a recipe for `ganedit {named}`, not `ganedit {command}`; run that command")
    settings = recipe.pop("settings", {})
    if not isinstance(settings, dict):
        raise GaneditError(f"{where}: settings must be a table ([settings]), got {settings!r}")
    known = {spec.name for spec in dataclasses.fields(run_cls)}
    for key in recipe:
        if key not in known:
            raise GaneditError(
                f"{where}: unknown key {key!r} for `ganedit {command}`; known: {', '.join(sorted(known))}, [settings]"
            )
    return checked(run_cls, recipe, where), checked(settings_cls, settings, f"{where} [settings]")


def _base_recipe(command: str, models) -> Path | None:
    if not models:
        return zoo.packaged_recipe(command)
    names = [models] if isinstance(models, str) else list(models)
    files = {zoo.recipe_for(name, command) for name in names}
    return files.pop() if len(files) == 1 else None


def require(value, message: str):
    """A run value that must be given somewhere (option or recipe): the value, or a one-line error."""
    if value is None or value == []:
        raise GaneditError(message)
    return value


def model_output_grid(run, inputs=()) -> tuple[str, Path, Path | None]:
    """A single-model run's MODEL, -o OUTPUT and --grid, each required where it must be, checked writable (and
    neither the model nor one of the other `inputs`)."""
    from ganedit.cli.main import check_writable

    model = require(run.model, "give MODEL (a path or zoo name) or `model` in the recipe")
    output = Path(require(run.output, "say where to write: -o FILE (or `output` in the recipe)"))
    grid = Path(run.grid) if run.grid else None
    check_writable(output, grid, inputs=[model, *inputs])
    check_card(run.card, output)
    return model, output, grid


CARD_HELP = "Also write a model card (README.md, Hugging Face format) beside the output: licence, recipe, evaluation."


def check_card(wanted: bool, output: Path | None, folder: bool = False) -> None:
    """With --card (`wanted`), refuse before any work a README.md beside `output` that is not a ganedit card."""
    if wanted and output is not None:
        from ganedit.store.card import check_card_target

        check_card_target(output, folder)


def write_card_of(wanted: bool, output: Path, folder: bool = False) -> list[str]:
    """With --card, the model card of the model just written to `output` (its provenance read back from the
    file, so that the card says what the file says); the paths written."""
    if not wanted:
        return []
    from ganedit.store.card import write_card

    provenance, class_names = written_provenance(output)
    return [str(write_card(output, provenance, class_names, folder))]


def written_provenance(path: Path) -> tuple[dict, list[str] | None]:
    """The provenance and class names stored in a ganedit model or embed-tune patch file."""
    import json

    from ganedit.store.checkpoint import read_header

    metadata, _ = read_header(path)
    if "ganedit.patch" in metadata:
        patch = json.loads(metadata["ganedit.patch"])
        return patch["provenance"], patch.get("class_names")
    return json.loads(metadata.get("ganedit.provenance", "{}")), json.loads(metadata.get("ganedit.class_names", "null"))
