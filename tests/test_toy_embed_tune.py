"""embed-tune's effect on the toy world, measured by the oracle on held-out latents.

The shipped toy BigGAN-deep has two designed-in defects (scripts/train_toy_biggan.py):
- 'heart' is a shape the oracle knows and the generator never saw: re-purposing must take it from
  near-zero accuracy (the best existing class's) to a clear majority;
- 'star' was only ever drawn red: repairing it (init from its own row, diversity term in the oracle's
  feature space) must widen its colours and its mean pairwise toy perceptual distance (the toy
  world's LPIPS, the paper's diversity measure) while it stays a star.
Each effect is compared with the no-edit baseline and with how much that baseline moves between two
independent sets of held-out latents (seed-to-seed noise).
"""

import math

import pytest
import torch
from helpers import tune

import ganedit
from ganedit.generators.sampling import sample_latents
from ganedit.judges import load_judge, resolve_label
from ganedit.judges.perceptual import load_perceptual, mean_pairwise_distance
from ganedit.procedures import embed_tune as et
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, predict

HELD_OUT = 300
PERCEPTUAL_HELD_OUT = 64  # images whose 2016 pairs give a mean pairwise perceptual distance


@pytest.fixture(scope="module")
def toy():
    bundle = ganedit.load_model("toy-biggan")
    return bundle.generator, bundle.class_names


@pytest.fixture(scope="module")
def oracle():
    return load_oracle()


@pytest.fixture(scope="module")
def judge():
    return load_judge("toy")


def oracle_labels(generator, oracle, embedding, seed):
    """The oracle's shape and colour labels for HELD_OUT images of one class embedding."""
    z = sample_latents(generator, HELD_OUT, seed)
    with torch.no_grad():
        images = generator.from_embedding(z, embedding.expand(HELD_OUT, -1), 1.0)
    return predict(oracle, images)


def mean_pairwise_perceptual(generator, perceptual, embedding, seed):
    z = sample_latents(generator, PERCEPTUAL_HELD_OUT, seed)
    with torch.no_grad():
        images = generator.from_embedding(z, embedding.expand(PERCEPTUAL_HELD_OUT, -1), 1.0)
    return mean_pairwise_distance(perceptual, images)


def accuracy(labels, shape):
    return (labels["shape"] == world.SHAPES.index(shape)).float().mean().item()


def colour_entropy(labels):
    """Entropy (bits) of the oracle's colour distribution: 0 for one colour, 3 for all 8 alike."""
    p = torch.bincount(labels["colour"], minlength=len(world.COLOURS)).float() / len(labels["colour"])
    p = p[p > 0]
    return float(-(p * p.log2()).sum())


def test_the_defects_are_there(toy, oracle):
    generator, names = toy
    assert "heart" not in names
    star = oracle_labels(generator, oracle, generator.class_embeddings[names.index("star")], seed=1)
    assert accuracy(star, "star") > 0.8
    assert colour_entropy(star) < 0.5  # collapsed: (nearly) always red
    circle = oracle_labels(generator, oracle, generator.class_embeddings[names.index("circle")], seed=1)
    assert colour_entropy(circle) > 2.5  # the other classes cover the palette


def test_repurposing_teaches_an_unseen_class(toy, oracle, judge):
    generator, names = toy
    heart = resolve_label(judge, "heart")
    baseline = [  # no edit: the best any existing class does, on two independent held-out sets
        max(accuracy(oracle_labels(generator, oracle, row, seed), "heart") for row in generator.class_embeddings)
        for seed in (1, 2)
    ]
    result = tune(generator, judge, [heart], class_names=names, init="top", seed=0)
    report = result.reports[0]
    assert report.new and result.class_names[-1] == "heart"
    after = [accuracy(oracle_labels(generator, oracle, result.embeddings[0], seed), "heart") for seed in (1, 2)]
    noise = abs(baseline[0] - baseline[1])
    print(f"heart accuracy: baseline {baseline}, after {after}, seed-to-seed noise {noise:.3f}")
    assert max(baseline) < 0.2
    assert min(after) > 0.6
    assert min(after) - max(baseline) > 10 * max(noise, 0.02)


def test_repairing_a_collapsed_class_widens_its_colours(toy, oracle, judge):
    generator, names = toy
    star = resolve_label(judge, "star")
    row = generator.class_embeddings[names.index("star")]
    baseline = [colour_entropy(oracle_labels(generator, oracle, row, seed)) for seed in (1, 2)]
    perceptual = load_perceptual("toy")
    settings = et.EmbedTuneSettings(init="target", diversity="features", diversity_weight=5.0, seed=0)
    result = et.embed_tune(generator, judge, [star], settings, class_names=names, perceptual=perceptual)
    report = result.reports[0]
    assert not report.new and report.column == names.index("star")
    # the paper's diversity, toy version: mean pairwise perceptual distance, in the report and on held-out sets
    assert report.after.mean_pairwise_perceptual > report.before.mean_pairwise_perceptual
    distance_before = [mean_pairwise_perceptual(generator, perceptual, row, seed) for seed in (1, 2)]
    distance_after = [mean_pairwise_perceptual(generator, perceptual, result.embeddings[0], seed) for seed in (1, 2)]
    distance_noise = abs(distance_before[0] - distance_before[1])
    print(f"star mean pairwise toy perceptual distance: before {distance_before}, after {distance_after}")
    assert min(distance_after) - max(distance_before) > max(5 * distance_noise, 0.25)
    after = [oracle_labels(generator, oracle, result.embeddings[0], seed) for seed in (1, 2)]
    entropy = [colour_entropy(labels) for labels in after]
    noise = abs(baseline[0] - baseline[1])
    star_accuracy = [accuracy(labels, "star") for labels in after]
    print(f"star colour entropy: baseline {baseline}, after {entropy}; star accuracy after {star_accuracy}")
    assert max(baseline) < 0.2
    assert min(entropy) - max(baseline) > max(10 * noise, 1.5)
    for labels in after:  # still recognisably a star: the oracle's most frequent shape, by far
        shares = torch.bincount(labels["shape"], minlength=len(world.SHAPES)).float() / HELD_OUT
        assert shares.argmax() == world.SHAPES.index("star") and shares.max() > 0.45
    assert not math.isnan(result.reports[0].after.diversity)


def test_cli_patch_then_apply_equals_the_full_model(tmp_path, capsys):
    from ganedit.cli import main

    quick = ["--class", "heart", "--starts", "1", "--rounds", "1", "--steps", "2", "--holdout", "4", "--quiet"]
    assert main(["embed-tune", *quick, "-o", str(tmp_path / "full.safetensors")]) == 0
    assert main(["embed-tune", *quick, "--patch", "-o", str(tmp_path / "heart.patch.safetensors")]) == 0
    assert (tmp_path / "heart.patch.safetensors").stat().st_size < 50_000
    patched = tmp_path / "patched.safetensors"
    assert main(["apply-patch", str(tmp_path / "heart.patch.safetensors"), "toy-biggan", "-o", str(patched)]) == 0
    full, applied = ganedit.load_model(tmp_path / "full.safetensors"), ganedit.load_model(patched)
    assert applied.class_names == full.class_names and applied.class_names[-1] == "heart"
    assert torch.equal(applied.generator.embeddings.weight, full.generator.embeddings.weight)
    assert applied.metadata["provenance"]["parents"][0]["source"] == "toy-biggan"
    capsys.readouterr()
    # a patch only applies to the model it was made from
    assert (
        main(["apply-patch", str(tmp_path / "heart.patch.safetensors"), str(patched), "-o", str(tmp_path / "x")]) == 2
    )
    assert "different config" in capsys.readouterr().err and not (tmp_path / "x").exists()
