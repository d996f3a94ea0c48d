"""--card: a Hugging Face model card (README.md) beside every written model, with the licence it inherits.

The toy world's models are ganedit's (MIT); NVIDIA's network pickles carry NVIDIA's non-commercial licence,
and an edit of an edit inherits it through the provenance; a parent ganedit cannot place is "unknown".
"""

import json

import pytest
from huggingface_hub import ModelCard

from ganedit.cli import main
from ganedit.store.card import APACHE, MIT, NVIDIA_NC, UNKNOWN, combined_licence

TINY_EMBED_TUNE = ["--class", "heart", "--starts", "1", "--rounds", "1", "--steps", "1", "--batch-size", "2",
                   "--holdout", "4"]  # fmt: skip


def run(capsys, *args) -> tuple[int, dict | None, str]:
    code = main([*map(str, args), "--json", "-q"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_a_toy_edit_has_a_card_with_ganedits_licence_its_parent_and_its_evaluation(tmp_path, capsys):
    output = tmp_path / "heart.safetensors"
    code, report, err = run(capsys, "embed-tune", *TINY_EMBED_TUNE, "-o", output, "--card")
    assert code == 0, err
    card_file = tmp_path / "README.md"
    assert report["written"] == [str(output), str(card_file)]
    card = ModelCard.load(card_file)
    assert card.data.license == "mit" and card.data.library_name == "ganedit" and "embed-tune" in card.data.tags
    assert "`toy-biggan`" in card.text and "## Evaluation" in card.text and "heart" in card.text
    assert "MIT" in card.text.split("## Licence")[1].split("##")[0]
    assert 'ganedit.load_model("heart.safetensors")' in card.text

    # a second model in the same folder replaces a ganedit card, never a user's README
    code, _, err = run(capsys, "embed-tune", *TINY_EMBED_TUNE, "-o", tmp_path / "again.safetensors", "--card")
    assert code == 0, err
    assert "again.safetensors" in card_file.read_text()


def test_a_readme_that_is_not_a_card_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# my project\n")
    code, _, err = run(capsys, "embed-tune", *TINY_EMBED_TUNE, "-o", tmp_path / "x.safetensors", "--card")
    assert code == 2 and "is not a ganedit model card" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    assert (tmp_path / "README.md").read_text() == "# my project\n"


def test_nvidias_non_commercial_licence_carries_over_to_edits_of_edits(tmp_path, capsys, conformance_dir):
    first, second = tmp_path / "a" / "nv.safetensors", tmp_path / "b" / "nv2.safetensors"
    first.parent.mkdir(), second.parent.mkdir()
    assert run(capsys, "convert", conformance_dir / "nvidia-sg2-tiny.pkl", "-o", first, "--card")[0] == 0
    assert run(capsys, "convert", first, "-o", second, "--card")[0] == 0  # the parent is now a ganedit file
    for output in (first, second):
        card = ModelCard.load(output.parent / "README.md")
        assert card.data.license == "other" and card.data.license_name == "nvidia-source-code-license-nc"
        assert "non-commercial use only" in card.text and "carries over" in card.text
    assert "its provenance" in (second.parent / "README.md").read_text()


def test_a_parent_of_unknown_origin_is_said_to_be_unknown(tmp_path, capsys, conformance_dir):
    output = tmp_path / "ros.safetensors"
    assert run(capsys, "convert", conformance_dir / "rosinality-sg2-tiny.pt", "-o", output, "--card")[0] == 0
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.license == "unknown" and "could not tell the licence" in card.text


@pytest.mark.parametrize(
    ("parents", "expected", "also"),
    [
        ([MIT, MIT], "mit", None),
        ([MIT, NVIDIA_NC], "nvidia-source-code-license-nc", ["mit"]),  # the strictest term carries over
        ([APACHE, MIT], "mixed", None),
        ([UNKNOWN, NVIDIA_NC], "nvidia-source-code-license-nc", ["unknown"]),
    ],
)
def test_several_parents_licences_combine_to_the_strictest(parents, expected, also):
    parents = [{**licence, "from": [f"parent {k}"]} for k, licence in enumerate(parents)]
    combined = combined_licence(parents)
    assert combined["name"] == expected and combined.get("also") == also
    assert combined["from"] == [f"parent {k}" for k in range(len(parents))]


def test_an_export_has_a_card_and_keeps_the_licence(tmp_path, capsys, conformance_dir):
    output = tmp_path / "nv" / "G.safetensors"
    output.parent.mkdir()
    code, report, err = run(capsys, "export", conformance_dir / "nvidia-sg2-tiny.pkl", "--to", "nvidia-state",
                            "-o", output, "--card")  # fmt: skip
    assert code == 0, err
    assert str(output.parent / "README.md") in report["written"]
    card = ModelCard.load(output.parent / "README.md")
    assert card.data.license_name == "nvidia-source-code-license-nc" and "export" in card.data.tags

    folder = tmp_path / "toy-folder"  # a folder output: the card is the folder's README.md
    code, report, err = run(capsys, "export", conformance_dir / "biggan-deep-tiny", "--to", "biggan-folder",
                            "-o", folder, "--card")  # fmt: skip
    assert code == 0, err
    assert (folder / "README.md").is_file() and (folder / "config.json").is_file()
