"""`ganedit toy render`: a folder of toy-world images in one command (e.g. the negatives of unlearn)."""

import json

import pytest
import torch
from PIL import Image

from ganedit.cli import main
from ganedit.engine.sources import as_float_images, load_image_folder
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, predict

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def pngs(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_render_writes_n_pngs_named_in_the_order_drawn(capsys, tmp_path):
    folder = tmp_path / "new" / "stars"  # created, parents too
    code, out, err = run(capsys, "toy", "render", "--shape", "star", "-n", 12, "--out-dir", folder)
    assert code == 0, err
    names = pngs(folder)
    assert len(names) == 12 and "wrote 12 toy images" in out and str(folder) in out
    for index, name in enumerate(names):
        number, shape, colour, background = name.removesuffix(".png").split("_")
        assert number == f"{index:04d}" and shape == "star"
        assert colour in world.COLOURS and background in world.BACKGROUNDS
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 32)
    assert len({name.split("_")[2] for name in names}) > 1  # colours not restricted: several drawn


def test_the_same_seed_gives_the_same_files_bit_for_bit(capsys, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run(capsys, "toy", "render", "-n", 6, "--seed", seed, "--out-dir", tmp_path / name)[0] == 0
    read = {name: [(path.name, path.read_bytes()) for path in sorted((tmp_path / name).iterdir())] for name in "abc"}
    assert read["a"] == read["b"] and read["a"] != read["c"]


def test_the_oracle_recognises_the_rendered_attributes(capsys, tmp_path):
    folder = tmp_path / "red"
    code, _, err = run(capsys, "toy", "render", "--shape", "star,heart", "--colour", "red", "--background", "navy",
                       "--background", "grey", "-n", 40, "--seed", 1, "--out-dir", folder)  # fmt: skip
    assert code == 0, err
    names = pngs(folder)
    assert {name.split("_")[1] for name in names} == {"star", "heart"}
    images = load_image_folder(folder, world.RESOLUTION)  # as a command reading the folder sees it
    predicted = predict(load_oracle(), as_float_images(images))
    for position, attribute in ((1, "shape"), (2, "colour"), (3, "background")):
        named = torch.tensor([world.attribute_index(attribute, n[:-4].split("_")[position]) for n in names])
        assert (predicted[attribute] == named).float().mean() >= 0.9, attribute
    assert set(predicted["colour"].tolist()) == {world.COLOURS.index("red")}


def test_resolution_draws_larger_images(capsys, tmp_path):
    code, _, err = run(capsys, "toy", "render", "--shape", "ring", "-n", 3, "--resolution", 64, "--out-dir", tmp_path)
    assert code == 0, err  # an empty existing folder is fine
    for name in pngs(tmp_path):
        with Image.open(tmp_path / name) as image:
            assert image.size == (64, 64)


def test_json_document(capsys, tmp_path):
    code, out, err = run(capsys, "toy", "render", "--colour", "red", "--background", "black,grey", "-n", 4,
                         "--seed", 7, "--out-dir", tmp_path / "few", "--json")  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    assert document["command"] == "toy render" and document["schema"] == 1
    assert document["count"] == 4 and document["seed"] == 7 and document["resolution"] == 32
    assert document["shapes"] == world.SHAPES and document["colours"] == ["red"]
    assert document["backgrounds"] == ["black", "grey"]
    assert sorted(document["written"]) == [str(tmp_path / "few" / name) for name in pngs(tmp_path / "few")]
    code, out, _ = run(capsys, "toy", "render", "-n", 25, "--out-dir", tmp_path / "many", "--json")
    document = json.loads(out)
    assert code == 0 and document["written"] == [str(tmp_path / "many")] and document["count"] == 25
    assert len(pngs(tmp_path / "many")) == 25


@pytest.mark.parametrize(
    "option, value, valid",
    [
        ("--shape", "stra", "circle, square, triangle, star"),
        ("--colour", "red,bleu", "red, green, blue"),
        ("--background", "white", "black, grey, navy"),
        ("--shape", ",", "circle, square"),
    ],
)
def test_unknown_names_are_one_line_naming_the_valid_ones(capsys, tmp_path, option, value, valid):
    code, out, err = run(capsys, "toy", "render", option, value, "-n", 3, "--out-dir", tmp_path / "x")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and valid in err
    assert not (tmp_path / "x").exists()


def test_a_non_empty_folder_is_refused_unless_overwrite(capsys, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "mine.png")
    code, out, err = run(capsys, "toy", "render", "-n", 3, "--out-dir", tmp_path)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not empty" in err and "--overwrite" in err
    assert pngs(tmp_path) == ["mine.png"]
    code, _, err = run(capsys, "toy", "render", "-n", 3, "--out-dir", tmp_path, "--overwrite")
    assert code == 0 and len(pngs(tmp_path)) == 4
    assert "also holds 1 other image file" in err  # the user's own image is kept, and said to be there


def test_help_shows_examples(capsys):
    code, out, _ = run(capsys, "toy", "render", "--help")
    assert code == 0 and "Examples" in out and "--out-dir stars/" in out
    code, out, _ = run(capsys, "toy", "--help")
    assert code == 0 and "render" in out
