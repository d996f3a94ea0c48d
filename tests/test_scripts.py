"""The toy world's training scripts run end to end (a few steps each) and write loadable models.

The shipped toy models are made by these scripts; a script that no longer runs cannot reproduce them.
(train_toy_stylegan2.py and train_toy_biggan.py had both stopped running, unnoticed, until this test.)
Full-length runs and their figures are in each script's docstring.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ganedit
from ganedit.generators.sampling import generate, num_classes, sample_latents

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
QUICK = {
    "stylegan2": [
        "train_toy_stylegan2.py", "toy-stylegan2-a", "--render-steps", "3", "--discriminator-steps", "2",
        "--batch-size", "4", "-o",
    ],
    "stylegan2-shape-aware-d": [
        "train_toy_stylegan2.py", "toy-stylegan2-a", "--render-steps", "3", "--discriminator-steps", "2",
        "--batch-size", "4", "--shape-steps", "2", "--shape-weight", "1.0", "-o",
    ],
    "biggan": ["train_toy_biggan.py", "--render-steps", "2", "--sharpen-steps", "1", "--batch-size", "4", "--output"],
}  # fmt: skip


def run_script(arguments: list[str], output: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPTS / arguments[0]), *arguments[1:], str(output)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("kind", sorted(QUICK))
def test_training_script_writes_a_model_with_its_provenance(kind, tmp_path):
    output = tmp_path / f"{kind}.safetensors"
    result = run_script(QUICK[kind], output)
    assert result.returncode == 0, result.stderr[-2000:]
    bundle = ganedit.load_model(output)
    assert bundle.metadata["provenance"]["procedure"].startswith("train-toy-"), bundle.metadata
    G = bundle.generator
    z = sample_latents(G, 4, seed=0)
    images = generate(G, z, torch.zeros(4, dtype=torch.long) if num_classes(G) else None)
    assert images.shape[0] == 4 and torch.isfinite(images).all()
    if kind.startswith("stylegan2"):
        assert bundle.discriminator is not None  # unlearn and merge need D
    if kind == "stylegan2-shape-aware-d":  # the shape head is dropped: D keeps StyleGAN2's architecture
        parameters = bundle.metadata["provenance"]["parameters"]
        assert (parameters["discriminator_shape_steps"], parameters["discriminator_shape_weight"]) == (2, 1.0)
        assert not any("head" in key for key in bundle.discriminator.state_dict())


def test_toy_clip_script_refuses_to_write_a_model_below_the_required_accuracy(tmp_path):
    output = tmp_path / "clip.safetensors"
    result = run_script(["train_toy_clip.py", "--steps", "2", "--batch-size", "16", "--out"], output)
    assert result.returncode != 0
    assert "not written: zero-shot accuracy below the requirement" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the model nor its candidate file


@pytest.mark.parametrize("name", ["toy-stylegan2-warm", "toy-stylegan2-cool"])
def test_colour_domain_script_rebuilds_the_shipped_generator(name, tmp_path):
    """The colour domains are derived, not trained: the script's generator is the shipped one (its D is
    trained on for --discriminator-steps, 0 here), permuted or not."""
    output = tmp_path / f"{name}.safetensors"
    result = run_script(["train_toy_stylegan2.py", name, "--discriminator-steps", "0", "-o"], output)
    assert result.returncode == 0, result.stderr[-2000:]
    rebuilt, shipped = ganedit.load_model(output), ganedit.load_model(name)
    assert rebuilt.metadata["provenance"]["parents"][0]["source"] == "toy-stylegan2"
    z = sample_latents(shipped.generator, 16, seed=0)
    torch.testing.assert_close(generate(rebuilt.generator, z, None), generate(shipped.generator, z, None))


def test_the_discriminator_probe_reports_every_figure():
    """scripts/probe_toy_discriminators.py (issue 19's measure of how well D knows shapes) runs and reports the
    probe of a shipped D beside its two controls; a tiny run, so the figures are only checked to be shares."""
    command = [sys.executable, str(SCRIPTS / "probe_toy_discriminators.py"), "--models", "toy-stylegan2-a",
               "--train", "200", "--test", "100"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout[: result.stdout.index("\n|")])
    rows = [report["discriminators"]["toy-stylegan2-a"], report["random_initialisation"], report["strict_oracle"]]
    assert all(0 <= figures[key] <= 1 for figures in rows for key in ("shape", "shape_group"))
    assert report["strict_oracle"]["shape"] > 0.9  # the plain CNN on clean renderings: the ceiling
