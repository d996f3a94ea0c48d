"""Text-to-Unlearn's machinery: the toy captions and CLIP, the directional loss, which layers train,
resuming, and the command line's errors. Its effect is shown on the toy world in test_toy_text_unlearn.py."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import same_parameters, tiny_stylegan2_pair
from safetensors import safe_open

import ganedit
from ganedit.cli import main
from ganedit.errors import GaneditError
from ganedit.judges.clip import load_clip
from ganedit.procedures.text_unlearn import (
    TEMPLATES,
    ClipObjective,
    TextUnlearnSettings,
    directional_loss,
    filled_templates,
    layer_parameters,
    select_layers,
    styled_layers,
    text_direction,
    text_unlearn,
    wasserstein_1d,
)
from ganedit.toy import captions

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"steps": 4, "batch_size": 2}


@pytest.fixture(scope="module")
def pair():
    return tiny_stylegan2_pair()


@pytest.fixture(scope="module")
def clip():
    return load_clip("toy-clip")


@pytest.fixture
def model_file(tmp_path, pair):
    return ganedit.save_checkpoint(tmp_path / "model.safetensors", *pair)


def settings(**overrides) -> TextUnlearnSettings:
    return TextUnlearnSettings(**{"concept": "a red shape", "neutral": "a shape", **TINY, **overrides})


# --- toy captions and the toy CLIP ---------------------------------------------------------------------


def test_toy_tokens_end_with_the_highest_id_and_unknown_words_are_marked():
    tokens = captions.tokenize(["a red star", "a person wearing eyeglasses"])
    assert tokens.shape == (2, captions.CONTEXT_LENGTH)
    assert tokens[0, :5].tolist() == [
        captions.START,
        1,
        captions.WORD_IDS["red"],
        captions.WORD_IDS["star"],
        captions.END,
    ]
    assert (tokens[1] == captions.UNKNOWN).sum() == 3  # person, wearing, eyeglasses
    assert tokens.max() == captions.END == captions.VOCABULARY_SIZE - 1  # open_clip pools at the argmax
    assert captions.tokenize("a GRAY shape").tolist() == captions.tokenize("a grey shape").tolist()


def test_a_caption_fits_exactly_the_images_with_the_attributes_it_names():
    attributes = torch.tensor([[3, 0, 1], [3, 2, 1], [5, 0, 0]])  # star red grey, star blue grey, ring red black
    constraints = torch.tensor(
        [[-1, 0, -1], [3, -1, -1], [-1, -1, -1], [3, 0, 0]]
    )  # red, star, shape, red star on black
    assert captions.matches(attributes, constraints).tolist() == [
        [True, True, True, False],
        [False, True, True, False],
        [True, False, True, False],
    ]
    assert captions.caption(3, 0, 1) == "a red star on a grey background"
    assert captions.caption(-1, -1, -1) == "a shape"
    assert captions.caption(5, 7, -1) == "an orange ring"


def test_the_toy_clip_tells_colours_apart_and_passes_gradients_to_images_only(clip):
    from ganedit.toy import world

    batch = world.sample(64, torch.Generator().manual_seed(3))
    images = batch.images.clone().requires_grad_(True)
    embedded = clip.encode_images(images)
    assert torch.allclose(embedded.norm(dim=1), torch.ones(64), atol=1e-5)
    prompts = [f"a {colour} shape" for colour in world.COLOURS]
    predicted = (embedded @ clip.encode_text(prompts).T).argmax(dim=1)
    assert (predicted == batch.colour).float().mean() >= 0.9
    embedded.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())
    assert not clip.training and not clip.train().training  # stays in eval mode


def test_the_toy_clip_file_records_how_it_was_trained():
    from ganedit.judges.clip import toy_clip_path

    with safe_open(str(toy_clip_path()), "pt") as file:
        training = json.loads(file.metadata()["training"])
    assert training["script"] == "scripts/train_toy_clip.py"
    assert training["zero_shot_accuracy"]["clean"]["colour"] >= 0.95


def test_unknown_clip_names_and_missing_weight_files_are_refused():
    with pytest.raises(GaneditError, match="unknown CLIP model 'ViT-Q-99'"):
        load_clip("ViT-Q-99")
    with pytest.raises(GaneditError, match="does not exist"):
        load_clip("ViT-B-32:/nowhere/weights.pt")
    with pytest.raises(GaneditError, match="no pretrained CLIP weights 'nonsense'"):
        load_clip("ViT-B-32:nonsense")


TINY_CLIP = {  # a tiny open_clip architecture, registered the way open_clip reads its own configs
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture
def tiny_open_clip(tmp_path):
    """A registered tiny open_clip architecture, its random weights saved to a file, and that model."""
    import open_clip
    from safetensors.torch import save_file

    (tmp_path / "ganedit-test-tiny.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "ganedit-test-tiny.json")
    torch.manual_seed(0)
    original = open_clip.create_model("ganedit-test-tiny").eval()
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(tmp_path / "w.safetensors"))
    return tmp_path / "w.safetensors", original


def assert_same_clip(clip, original):
    import open_clip

    images = torch.rand(2, 3, 64, 64) * 2 - 1
    mean, std = (
        torch.tensor(v).view(1, 3, 1, 1) for v in (open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)
    )
    with torch.no_grad():
        expected = original.encode_image(((images + 1) / 2 - mean) / std)
        expected_text = original.encode_text(open_clip.get_tokenizer("ganedit-test-tiny")(["a photo"]))
    assert torch.allclose(clip.encode_images(images), expected / expected.norm(dim=1, keepdim=True), atol=1e-5)
    assert torch.allclose(clip.encode_text(["a photo"]), expected_text / expected_text.norm(), atol=1e-5)


def test_an_open_clip_architecture_loads_a_local_weights_file_exactly(tiny_open_clip, tmp_path):
    weights, original = tiny_open_clip
    assert_same_clip(load_clip(f"ganedit-test-tiny:{weights}"), original)
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    with pytest.raises(GaneditError, match="cannot load CLIP weights"):
        load_clip(f"ganedit-test-tiny:{tmp_path / 'bad.safetensors'}")


def test_pretrained_weights_in_the_hugging_face_cache_load_offline(tiny_open_clip, tmp_path, monkeypatch):
    import open_clip.pretrained
    from huggingface_hub import constants

    weights, original = tiny_open_clip
    cache = tmp_path / "hub"
    snapshot = cache / "models--ganedit--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (cache / "models--ganedit--tiny" / "refs").mkdir()
    (cache / "models--ganedit--tiny" / "refs" / "main").write_text("0" * 40)
    (snapshot / "open_clip_model.safetensors").write_bytes(weights.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "ganedit-test-tiny", {"test": {"hf_hub": "ganedit/tiny/"}})
    monkeypatch.setenv("GANEDIT_OFFLINE", "1")
    clip = load_clip("ganedit-test-tiny:test")
    assert clip.name == "ganedit-test-tiny:test"
    assert_same_clip(clip, original)


def test_offline_without_cached_weights_names_the_file_and_how_to_provide_it(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "GANEDIT_OFFLINE": "1"}
    code = "from ganedit.judges.clip import load_clip; load_clip('ViT-B-32')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "ViT-B-32:openai" in message and "vit_base_patch32_clip_224.openai" in message
    assert str(tmp_path / "hf") in message and "--clip ViT-B-32:/path/to/weights" in message


# --- the objective ----------------------------------------------------------------------------------


def test_the_text_direction_points_from_the_concept_to_the_neutral_prompt_over_nadas_templates(clip):
    assert len(TEMPLATES) == 79 and filled_templates("a red shape")[0] == "a bad photo of a red shape."
    direction = text_direction(clip, "a red shape", "a shape")
    red, plain = clip.encode_text(filled_templates("a red shape")), clip.encode_text(filled_templates("a shape"))
    expected = (plain - red).mean(dim=0)  # NADA's compute_text_direction: mean of unit-norm differences
    assert torch.allclose(direction, expected / expected.norm(), atol=1e-5)
    single = text_direction(clip, "a red shape", "a shape", templates=False)
    red, plain = clip.encode_text(["a red shape"])[0], clip.encode_text(["a shape"])[0]
    assert torch.allclose(single, (plain - red) / (plain - red).norm(), atol=1e-5)
    with pytest.raises(GaneditError, match="identically"):
        text_direction(clip, "a shape", "a  shape")


def test_the_directional_loss_is_finite_at_the_start_and_falls_when_images_move_along_the_direction(clip):
    from ganedit.toy import world

    reds = world.sample(16, torch.Generator().manual_seed(0), colours=["red"]).images
    greens = world.sample(16, torch.Generator().manual_seed(0), colours=["green"]).images  # same shapes, not red
    direction = text_direction(clip, "a red shape", "a shape")
    frozen_reds, frozen_greens = clip.encode_images(reds), clip.encode_images(greens)
    x_t = reds.clone().requires_grad_(True)
    at_start = directional_loss(clip, x_t, frozen_reds, direction)
    at_start.backward()
    assert at_start.item() == pytest.approx(1.0) and torch.isfinite(x_t.grad).all()
    assert directional_loss(clip, greens, frozen_reds, direction) < 0.8  # red -> not red agrees with the direction
    assert directional_loss(clip, reds, frozen_greens, direction) > 1.2  # and the reverse disagrees


def test_at_delta_zero_the_gradient_is_bounded_not_one_over_epsilon(clip):
    """x_t == x_f (step 0): the cosine is undefined; its first-order term gives a gradient of the size a
    real edit's has, where normalising by |Delta_I| + 1e-7 gave one about 1e6 times larger."""
    from ganedit.toy import world

    reds = world.sample(8, torch.Generator().manual_seed(0), colours=["red"]).images
    direction = text_direction(clip, "a red shape", "a shape")
    frozen = clip.encode_images(reds)

    def gradient_norm(x):
        x = x.clone().requires_grad_(True)
        directional_loss(clip, x, frozen, direction).backward()
        return x.grad.norm().item()

    at_zero = gradient_norm(reds)
    moved = gradient_norm(reds + 0.2 * torch.randn(reds.shape, generator=torch.Generator().manual_seed(1)))
    assert 0 < at_zero < 10 * moved, (at_zero, moved)


def test_adam_keeps_moving_after_step_0():
    """The bug this guards against: a first gradient of order 1/epsilon filled Adam's second moment and
    every later update was crushed (the parameters moved 0.7303 in step 1 and 0.7308 in 300 steps)."""
    G, clip = ganedit.load_generator("toy-stylegan2"), load_clip("toy-clip")
    original = dict(G.named_parameters())

    def distance_moved(iterations):
        trained = text_unlearn(G, [clip], settings(steps=iterations, batch_size=4, concept_weighting=False))
        squares = sum(((p - original[n].detach()) ** 2).sum() for n, p in trained.generator.named_parameters())
        return float(squares.sqrt())

    first, tenth = distance_moved(1), distance_moved(10)
    assert tenth > 2 * first, (first, tenth)


def test_concept_weighting_pulls_only_the_samples_that_show_the_concept(clip):
    from ganedit.procedures.text_unlearn import concept_probability, prompt_embedding
    from ganedit.toy import world

    batch = world.sample(200, torch.Generator().manual_seed(2))
    with torch.no_grad():
        shows = concept_probability(
            clip,
            clip.encode_images(batch.images),
            prompt_embedding(clip, "a red shape"),
            prompt_embedding(clip, "a shape"),
        )
    red = batch.colour == 0
    assert shows[red].min() > 0.2 and shows[~red].max() < 0.01
    objective = ClipObjective([clip], settings(), None)
    others = batch.images[~red][:8]
    moved = world.sample(8, torch.Generator().manual_seed(9), colours=["blue"]).images
    assert objective(moved, others).item() < 0.01  # no concept in x_f: (almost) nothing to gain
    assert ClipObjective([clip], settings(concept_weighting=False), None)(moved, others).item() > 0.5


def test_the_global_baseline_is_the_similarity_to_the_concept(clip):
    from ganedit.procedures.text_unlearn import prompt_embedding
    from ganedit.toy import world

    images = world.sample(8, torch.Generator().manual_seed(1)).images
    objective = ClipObjective([clip], settings(method="global"), None)
    expected = (clip.encode_images(images) @ prompt_embedding(clip, "a red shape")).mean()
    assert objective(images, images).item() == pytest.approx(expected.item(), abs=1e-5)


def test_wasserstein_distance_of_shifted_scores_is_the_shift():
    scores = torch.randn(100)
    assert wasserstein_1d(scores, scores.flip(0) + 2.5) == pytest.approx(2.5, abs=1e-5)


# --- what trains ------------------------------------------------------------------------------------


def test_each_w_entry_styles_its_convolution_and_the_last_one_only_torgb(pair):
    G, _ = pair
    groups = styled_layers(G)
    assert len(groups) == G.num_ws and groups[-1] == []
    assert groups[0] == [G.synthesis.b4] and groups[1] == [G.synthesis.b8.conv0] and groups[2] == [G.synthesis.b8.conv1]
    names = [name for name, _ in layer_parameters(G, "synthesis")]
    assert names and not any(".torgb." in n or n.startswith("mapping.") for n in names)
    assert any(".torgb." in n for n, _ in layer_parameters(G, "synthesis+torgb"))
    assert any(n.startswith("mapping.") for n, _ in layer_parameters(G, "all"))


def test_default_training_leaves_mapping_and_torgb_as_they_were(pair, clip):
    G, _ = pair
    result = text_unlearn(G, [clip], settings())
    before, after = G.state_dict(), result.generator.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and not any(".torgb." in n or n.startswith("mapping.") for n in changed)
    assert any(".conv" in n for n in changed)
    assert same_parameters(G, tiny_stylegan2_pair()[0])  # the input model is untouched


def test_adaptive_layer_selection_trains_only_the_chosen_layers(pair, clip):
    G, _ = pair
    w = G.mapping(torch.randn(2, G.z_dim), None)
    chosen = select_layers(G, ClipObjective([clip], settings(), None), w, k=2, iterations=1, noise_mode="random")
    assert len(chosen) == 2 and G.num_ws - 1 not in chosen
    result = text_unlearn(G, [clip], settings(steps=1, auto_layers=1))
    before, after = G.state_dict(), result.generator.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    group_names = [
        {f"synthesis.{n}" for n, p in G.synthesis.named_parameters() if any(p is q for m in g for q in m.parameters())}
        for g in styled_layers(G)
    ]
    assert changed and sum(changed <= names for names in group_names if names) == 1, changed  # one layer trained


def test_anchor_and_lpips_terms_appear_in_the_losses(pair, clip):
    from ganedit.judges.perceptual import load_perceptual

    G, _ = pair
    result = text_unlearn(G, [clip], settings(lpips_weight=1.0, anchor_weight=10.0), perceptual=load_perceptual("toy"))
    assert set(result.info["final_losses"]) == {"clip", "lpips", "anchor"}
    with pytest.raises(GaneditError, match="perceptual"):
        text_unlearn(G, [clip], settings(lpips_weight=1.0))


def test_an_image_pair_direction_and_an_ensemble_run(pair, clip):
    from ganedit.toy import world

    G, _ = pair
    reds = world.sample(8, torch.Generator().manual_seed(0), colours=["red"]).images
    others = world.sample(8, torch.Generator().manual_seed(0), colours=["green", "blue"]).images
    result = text_unlearn(G, [clip, clip], settings(clip_weights=[1.0, 0.5]), direction_images=(reds, others))
    assert result.info["direction"] == "image pairs" and result.info["steps"] == TINY["steps"]
    with pytest.raises(GaneditError, match="one --clip-weight per --clip"):
        text_unlearn(G, [clip], settings(clip_weights=[1.0, 0.5]))


def test_the_same_seed_gives_the_same_model(pair, clip):
    G, _ = pair
    a, b = text_unlearn(G, [clip], settings()), text_unlearn(G, [clip], settings())
    c = text_unlearn(G, [clip], settings(seed=1))
    assert same_parameters(a.generator, b.generator) and not same_parameters(a.generator, c.generator)


@pytest.mark.parametrize("interrupt_at", [1, 3])
def test_ctrl_c_saves_and_resume_finishes_with_the_uninterrupted_result(
    pair, clip, tmp_path, monkeypatch, interrupt_at
):
    G, _ = pair
    reference = text_unlearn(G, [clip], settings())
    checkpoint = tmp_path / "run.resume"
    calls = {"n": 0}
    original = ClipObjective.__call__

    def call(self, *args):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)  # arrives inside a step: the step finishes, saves, stops
        return original(self, *args)

    monkeypatch.setattr(ClipObjective, "__call__", call)
    with pytest.raises(KeyboardInterrupt):
        text_unlearn(G, [clip], settings(), checkpoint=checkpoint)
    monkeypatch.setattr(ClipObjective, "__call__", original)
    assert checkpoint.is_file()
    resumed = text_unlearn(G, [clip], settings(), checkpoint=checkpoint, resume=True)
    assert same_parameters(resumed.generator, reference.generator)
    with pytest.raises(GaneditError, match="different run"):
        text_unlearn(G, [clip], settings(seed=3), checkpoint=checkpoint, resume=True)


# --- the command line ---------------------------------------------------------------------------------


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


TINY_FLAGS = ["--iterations", 3, "--batch-size", 2, "--eval-samples", 20, "--clip", "toy-clip", "--lpips", "toy",
              "--device", "cpu", "-q"]  # fmt: skip


def test_cli_writes_a_model_whose_metadata_names_the_procedure(tmp_path, capsys, model_file):
    output = tmp_path / "out.safetensors"
    code, out, _ = cli(capsys, "text-unlearn", model_file, "--concept", "a red shape", "--neutral", "a shape",
                       "-o", output, "--json", *TINY_FLAGS)  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["training"]["steps"] == 3 and "clip_score_after" in report and "fd_clip_after" in report
    provenance = ganedit.load_model(output).metadata["provenance"]
    assert provenance["procedure"] == "text-unlearn"
    assert provenance["parameters"]["concept"] == "a red shape" and provenance["parameters"]["clips"] == ["toy-clip"]
    assert not (tmp_path / "out.safetensors.resume").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--concept", "", "--neutral", "a shape"], "concept prompt is empty"),
        (["--concept", "  ", "--neutral", "a shape"], "concept prompt is empty"),
        (["--concept", "A  Shape", "--neutral", "a shape"], "are the same"),
        (["--concept", "a red shape", "--neutral", "a shape", "--clip", "ViT-Q-99"], "unknown CLIP model"),
        (
            ["--concept", "a red shape", "--neutral", "a shape", "--clip-weight", "1", "--clip-weight", "2"],
            "one --clip-weight",
        ),
        (["--concept", "a red shape", "--neutral", "a shape", "--concept-images", "x"], "both --concept-images"),
        (["--concept", "a red shape"], "--neutral is required"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2_without_output(tmp_path, capsys, model_file, arguments, message):
    output = tmp_path / "out.safetensors"
    code, _, err = cli(capsys, "text-unlearn", model_file, *arguments, "-o", output, "-q")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists()


def test_cli_takes_the_direction_from_two_image_folders(tmp_path, capsys, model_file):
    from PIL import Image

    from ganedit.generators.sampling import to_uint8
    from ganedit.toy import world

    for name, colours in (("red", ["red"]), ("other", ["green", "blue"])):
        (tmp_path / name).mkdir()
        images = world.sample(4, torch.Generator().manual_seed(0), colours=colours).images
        for index, image in enumerate(to_uint8(images)):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / name / f"{index}.png")
    output = tmp_path / "out.safetensors"
    code, out, err = cli(capsys, "text-unlearn", model_file, "--concept", "a red shape", "--neutral", "a shape",
                         "--concept-images", tmp_path / "red", "--neutral-images", tmp_path / "other", "-o", output,
                         "--json", *TINY_FLAGS)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["training"]["direction"] == "image pairs"
    assert ganedit.load_model(output).metadata["provenance"]["parameters"]["concept_images"] == str(tmp_path / "red")
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "text-unlearn", model_file, "--concept", "a red shape", "--neutral", "a shape",
                       "--concept-images", tmp_path / "empty", "--neutral-images", tmp_path / "other", "-o",
                       tmp_path / "x.safetensors", *TINY_FLAGS)  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()


def test_cli_refuses_biggan_models(tmp_path, capsys):
    output = tmp_path / "out.safetensors"
    code, _, err = cli(capsys, "text-unlearn", "toy-biggan", "--concept", "a red shape", "--neutral", "a shape",
                       "-o", output, "-q")  # fmt: skip
    assert code == 2 and "StyleGAN2" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()


def test_cli_resume_without_a_file_is_refused(tmp_path, capsys, model_file):
    output = tmp_path / "out.safetensors"
    code, _, err = cli(capsys, "text-unlearn", model_file, "--concept", "a red shape", "--neutral", "a shape",
                       "-o", output, "--resume", *TINY_FLAGS)  # fmt: skip
    assert code == 2 and "does not exist" in err and not output.exists()
