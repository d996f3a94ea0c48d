"""Recipes: every shipped recipe validates without downloading anything, bad recipes are refused before any
model loads, and a run from a recipe equals the same run from options (and from `ganedit info --recipe`)."""

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import same_parameters, tiny_stylegan2_pair
from PIL import Image

import ganedit
from ganedit.cli import main
from ganedit.cli.recipe import COMMANDS, resolve
from ganedit.judges.classifiers import places365_labels, resolve_label
from ganedit.settings import read_toml
from ganedit.store import zoo
from ganedit.toy.world import ATTRIBUTES, SHAPES

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.toml")) + sorted((REPO / "ganedit" / "data" / "recipes").glob("*.toml"))


class Labels:
    """A judge's label list, without its weights (enough for resolve_label)."""

    def __init__(self, labels):
        self.labels = list(labels)


def judge_labels(spec: str) -> list[str]:
    from torchvision import models

    if spec == "toy":
        return SHAPES
    if spec.startswith("toy:"):
        return ATTRIBUTES[spec.split(":", 1)[1]]
    if spec.startswith("places365-"):
        return places365_labels()
    return models.get_model_weights(spec).DEFAULT.meta["categories"]


def test_every_command_that_edits_takes_recipes_and_there_are_recipes_for_each():
    assert set(COMMANDS) == {"embed-tune", "merge", "unlearn", "text-unlearn"}
    assert {read_toml(path)["command"] for path in RECIPES} == set(COMMANDS)
    for command in COMMANDS:
        assert zoo.packaged_recipe(command).is_file()  # the command's default


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_recipe_validates_and_names_what_exists(path):
    recipe = read_toml(path)
    run_cls, settings_cls = COMMANDS[recipe["command"]]
    given = {}
    if recipe["command"] == "text-unlearn" and "concept" not in recipe.get("settings", {}):
        given["concept"] = "a red shape"  # a command's default recipe leaves the user's own input out
    resolved = resolve(
        recipe["command"], run_cls, settings_cls, given, path, "models" if "models" in recipe else "model"
    )
    run = resolved.run
    models = getattr(run, "models", None) or [run.model]
    for model in models:
        assert model in zoo.REGISTRY or Path(model).suffix in (".pt", ".pkl", ".safetensors"), model
        if model in zoo.REGISTRY:
            assert zoo.REGISTRY[model].kind == "generator"
    judges = run.judge if isinstance(run.judge, list) else [run.judge] if run.judge else []
    for spec in judges:
        labels = Labels(judge_labels(spec))
        for name in getattr(run, "classes", []):
            assert 0 <= resolve_label(labels, name) < len(labels.labels)
        if getattr(run, "feature", None) and spec != "toy":
            resolve_label(labels, run.feature)
    for clip in getattr(run, "clip", []):
        assert clip == "toy-clip" or clip.startswith("ViT-")
    if path.parent.name == "recipes" and path.parent.parent == REPO:
        text = path.read_text()
        assert text.startswith("#") and "output" in recipe  # says where its numbers come from, and writes


def test_a_zoo_entry_names_the_recipe_that_fits_it():
    assert zoo.recipe_for("toy-stylegan2", "unlearn") == zoo.packaged_recipe("unlearn")
    assert zoo.recipe_for("toy-stylegan2-a", "merge").stem == "merge-shapes"
    assert zoo.recipe_for("stylegan2-ffhq-256", "unlearn") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('command = "unlearn"\nmodel = "toy-stylegan2"\nsteps = 3\n', "unknown key 'steps'"),
        ('command = "unlearn"\n[settings]\nsteps = "abc"\n', "steps must be an integer, got 'abc'"),
        ('command = "unlearn"\n[settings]\nbatch_size = 1.5\n', "batch_size must be an integer, got 1.5"),
        ('command = "unlearn"\n[settings]\nlr = nan\n', "lr must be a finite number"),
        ('command = "unlearn"\n[settings]\nseed = "x"\n', "seed must be an integer"),
        ('command = "unlearn"\n[settings]\nadapted_models = 0\n', "adapted_models must be at least 1"),
        ('command = "unlearn"\n[settings]\nrepulsion = "l3"\n', "repulsion must be one of el2, nl2, il2"),
        ('command = "unlearn"\noutput = 5\n', "output must be a string, got 5"),
        ('command = "unlearn"\neval_samples = 1\n', "eval_samples must be at least 2"),
        ('command = "merge"\n', "a recipe for `ganedit merge`, not `ganedit unlearn`"),
        ('command = "unlearn"\n[settings]\nsurprise = 1\n', "unknown setting 'surprise'"),
        ("command = \n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_is_refused_in_one_line_naming_the_key_and_the_file(tmp_path, capsys, text, message):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    output = tmp_path / "out.safetensors"
    code = main(["unlearn", "--recipe", str(recipe), "--feature", "star", "-o", str(output), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(recipe) in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists()


def test_merge_recipe_values_of_the_wrong_type_are_refused_on_a_dry_run(tmp_path, capsys):
    for text, message in [
        ("[settings]\nblock_weights = 3\n", "block_weights must be a table"),
        ("[settings]\ndensity = 'high'\n", "density must be a number"),
        ("[settings]\nweights = ['a']\n", "weights must be a number"),
    ]:
        recipe = tmp_path / "bad.toml"
        recipe.write_text('command = "merge"\n' + text)
        code = main(["merge", "--recipe", str(recipe), "--dry-run", "-q"])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_options_override_the_recipe_and_the_recipe_overrides_the_packaged_one(tmp_path):
    run_cls, settings_cls = COMMANDS["unlearn"]
    recipe = tmp_path / "r.toml"
    recipe.write_text('command = "unlearn"\nfeature = "red"\n[settings]\nsteps = 7\nbatch_size = 4\n')
    resolved = resolve("unlearn", run_cls, settings_cls, {"batch_size": 2}, recipe)
    assert resolved.run.model == "toy-stylegan2" and resolved.run.feature == "red"  # packaged default, then file
    assert resolved.settings.steps == 7 and resolved.settings.batch_size == 2  # the option wins
    assert resolved.settings.adapt_steps == 25  # from the packaged toy recipe
    assert resolved.recipe["settings"]["batch_size"] == 2 and resolved.recipe["feature"] == "red"
    assert set(resolved.recipe["settings"]) == {f.name for f in dataclasses.fields(settings_cls)}


def _folder(path: Path, count: int, seed: int) -> Path:
    path.mkdir()
    rng = torch.Generator().manual_seed(seed)
    for i in range(count):
        pixels = (torch.rand(16, 16, 3, generator=rng) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(path / f"{i}.png")
    return path


def test_a_run_from_a_recipe_equals_the_run_from_options_and_info_recipe_repeats_it(tmp_path, capsys):
    model = ganedit.save_checkpoint(tmp_path / "model.safetensors", *tiny_stylegan2_pair())
    negatives, positives = _folder(tmp_path / "neg", 4, 0), _folder(tmp_path / "pos", 8, 1)
    flags = ["--negatives", negatives, "--positives", positives, "--adapted-models", 2, "--adapt-steps", 2,
             "--steps", 3, "--batch-size", 2, "--fisher-samples", 2, "--device", "cpu", "-q"]  # fmt: skip
    first = tmp_path / "first.safetensors"
    assert main([str(a) for a in ["unlearn", model, "-o", first, *flags]]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["info", str(first), "--recipe"]) == 0
    again = tmp_path / "again.toml"
    again.write_text(capsys.readouterr().out)
    assert read_toml(again)["settings"]["adapt_steps"] == 2
    second = tmp_path / "second.safetensors"
    assert main(["unlearn", "--recipe", str(again), "-o", str(second), "--device", "cpu", "-q"]) == 0
    assert same_parameters(ganedit.load_generator(first), ganedit.load_generator(second))
