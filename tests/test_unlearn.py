"""Adapt-then-Unlearn's machinery on a tiny StyleGAN2: the distance, EWC, extrapolation, resuming,
reusing adapted models, and the command line's errors. Its effect is shown on the toy world in
test_toy_unlearn.py."""

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from helpers import interrupt_step, same_parameters, tiny_stylegan2_pair
from PIL import Image

import ganedit
from ganedit.cli import main
from ganedit.engine.adversarial import Trainer
from ganedit.engine.ewc import EWCPenalty, fisher_diagonal
from ganedit.errors import GaneditError
from ganedit.procedures.unlearn import (
    Repulsion,
    UnlearnSettings,
    ewc_names,
    ewc_parameters,
    extrapolate,
    flat,
    negative_subsets,
    trainable,
    unlearn,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"adapted_models": 2, "adapt_steps": 3, "steps": 4, "batch_size": 4, "fisher_samples": 3}


def images(count: int, seed: int, size: int = 16) -> torch.Tensor:
    return torch.rand([count, 3, size, size], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def write_folder(folder, count: int, seed: int, size: int = 24):
    folder.mkdir()
    for index, image in enumerate(images(count, seed, size)):
        array = ((image + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(array).save(folder / f"{index:03d}.png")
    return folder


@pytest.fixture(scope="module")
def pair():
    return tiny_stylegan2_pair()


@pytest.fixture
def model_file(tmp_path, pair):
    return ganedit.save_checkpoint(tmp_path / "model.safetensors", *pair)


def test_distance_is_the_mean_squared_difference_averaged_over_adapted_models():
    theta = torch.randn(1000)
    adapted = [theta + 0.1 * torch.randn(1000) for _ in range(4)]
    repulsion = Repulsion(theta, adapted, "el2", alpha=1.0, gamma=1.0, weight=1.0)
    other = torch.randn(1000)
    explicit = torch.stack([(other - a).square().mean() for a in adapted]).mean()
    assert torch.allclose(repulsion.raw_distance(other), explicit, rtol=1e-5)
    assert repulsion.initial == pytest.approx(
        float(torch.stack([(theta - a).square().mean() for a in adapted]).mean()), rel=1e-5
    )


def test_the_reference_distance_is_its_per_tensor_mean_times_k_over_2p_and_is_not_normalised():
    """d_ref = (K / 2P') sum_p sum_k mean_p (theta_p - theta_N,k,p)^2, as the reference's
    calc_difference_param_new computes it (per-tensor MSE, summed over k, / P', / 2 * K)."""
    sizes = [3, 1000, 40]
    theta = torch.randn(sum(sizes))
    adapted = [theta + 0.1 * torch.randn_like(theta) for _ in range(4)]
    repulsion = Repulsion(theta, adapted, "el2", alpha=1.0, gamma=1.0, weight=1.0, distance="reference", sizes=sizes)
    other = torch.randn_like(theta)
    per_tensor = [
        sum(float((o - a).square().mean()) for a in [a.split(sizes)[p] for a in adapted])
        for p, o in enumerate(other.split(sizes))
    ]
    reference = sum(value / len(sizes) / 2 * len(adapted) for value in per_tensor)
    assert repulsion.raw_distance(other).item() == pytest.approx(reference, rel=1e-4)
    assert repulsion.unit == 1.0  # the paper's alpha applies to d_ref as printed
    mean = Repulsion(theta, adapted, "el2", alpha=1.0, gamma=1.0, weight=1.0)
    assert mean.unit == mean.initial  # the default is in units of its start
    # the 3-element tensor weighs as much as the 1000-element one under d_ref, not under d
    bumped = theta.clone()
    bumped[:3] += 1.0
    assert repulsion.raw_distance(bumped) - repulsion.initial > 10 * (mean.raw_distance(bumped) - mean.initial)


def test_negatives_per_model_gives_disjoint_sets_where_the_pool_allows():
    settings = UnlearnSettings(adapted_models=3, negatives_per_model=10)
    subsets = negative_subsets(30, settings)
    assert [len(s) for s in subsets] == [10, 10, 10]
    assert len(set(torch.cat(subsets).tolist())) == 30
    small = negative_subsets(12, settings)
    assert [len(s) for s in small] == [10, 10, 10] and all(s.max() < 12 for s in small)
    halves = negative_subsets(30, UnlearnSettings(adapted_models=3))
    assert [len(s) for s in halves] == [15, 15, 15]


def test_the_adapted_model_is_stage_1s_g_ema(pair):
    """With a G_ema half-life far beyond the run, the adapted model stays the original; with none, it is G."""
    G, D = pair
    theta = flat(trainable(G)).detach()
    negatives = images(8, 1)
    frozen = run_api(pair, negatives, None, method="extrapolate", ema_kimg=1e9).adapted
    followed = run_api(pair, negatives, None, method="extrapolate", ema_kimg=0.0).adapted
    assert all(torch.allclose(a, theta, atol=1e-6) for a in frozen)
    assert all((a - theta).abs().max() > 1e-4 for a in followed)


def test_each_repulsion_is_largest_at_the_adapted_models_and_falls_with_distance(pair):
    G, _ = pair
    theta = flat(trainable(G)).detach()
    adapted = [theta + 0.01 * torch.randn_like(theta) for _ in range(2)]
    for kind in ("el2", "nl2", "il2"):
        term = Repulsion(theta, adapted, kind, alpha=2.0, gamma=1.0, weight=1.0)
        near, far = G, extrapolate(G, adapted, gamma=3.0)  # moved away from the adapted models
        assert term(far) < term(near), kind


def test_extrapolation_steps_against_the_mean_adaptation(pair):
    G, _ = pair
    theta = flat(trainable(G)).detach()
    adapted = [theta + 0.5, theta + 1.5]
    assert torch.allclose(flat(trainable(extrapolate(G, adapted, gamma=2.0))), theta - 2.0, atol=1e-5)


def test_ewc_covers_the_parameters_of_the_references_convs(conformance_dir):
    """The reference's EWC runs over every parameter of rosinality's `self.convs` (model.py,
    estimate_fisher): read a real rosinality checkpoint, map those tensors' names to ganedit's, and the
    EWC set is exactly them: kernels, style affines, noise strengths and biases above 4 px."""
    from ganedit.generators.formats.rosinality import _generator_rules
    from ganedit.store.safe_torch import safe_torch_load

    path = conformance_dir / "rosinality-sg2-tiny.pt"
    state = safe_torch_load(path, allowed_globals=(argparse.Namespace,))["g_ema"]
    convs = [key for key in state if re.fullmatch(r"convs\.\d+\.(conv\.weight|conv\.modulation\.\w+|noise\.weight|"
                                                 r"activate\.bias)", key)]  # fmt: skip
    expected = set()
    for key in convs:
        rename = next(rename for pattern, rename, _ in _generator_rules() if (match := pattern.fullmatch(key)))
        expected.add(rename(match).removeprefix("synthesis."))
    G = ganedit.load_generator(path)
    names = {name for name, _ in ewc_parameters(G)}
    assert len(convs) == 5 * 2 * 3  # three resolutions above 4 px, two layers each, five parameters each
    assert names == expected
    assert {"b4.conv1.weight", "b4.conv1.affine.weight", "b8.torgb.weight", "b4.const"}.isdisjoint(names)


def test_ewc_penalty_is_zero_at_the_start_and_pulls_back_every_covered_parameter(pair):
    G, D = pair
    fisher = fisher_diagonal(G, D, ewc_names(G), samples=3, seed=0)
    assert all((f >= 0).all() for f in fisher) and any((f > 0).any() for f in fisher)
    penalty = EWCPenalty(G, ewc_names(G), fisher, ewc_lambda=5e8)
    assert penalty(G).item() == 0.0
    assert all(p.requires_grad for p in D.parameters())  # the networks' gradient flags are restored
    moved = copy.deepcopy(G)
    with torch.no_grad():
        for _, p in ewc_parameters(moved):
            p.add_(0.01)
    gradients = torch.autograd.grad(penalty(moved), [p for _, p in ewc_parameters(moved)])
    for (name, _), f, g in zip(ewc_parameters(moved), fisher, gradients, strict=True):
        assert torch.allclose(g, 5e8 * f * 0.01, rtol=1e-3, atol=1e-6), name  # d/dtheta (lambda/2) F dtheta^2


def run_api(pair, negatives, positives, checkpoint=None, resume=False, every=0, **overrides):
    G, D = pair
    settings = UnlearnSettings(**{**TINY, **overrides})
    return unlearn(
        G, D, negatives, settings, positives=positives, checkpoint=checkpoint, checkpoint_every=every, resume=resume
    )


@pytest.mark.parametrize("interrupt_at", [2, 9])  # in stage 1 (second adapted model), in stage 2
def test_ctrl_c_saves_and_resume_finishes_with_the_uninterrupted_result(pair, tmp_path, monkeypatch, interrupt_at):
    negatives, positives = images(8, 1), images(8, 2)
    reference = run_api(pair, negatives, positives)
    checkpoint = tmp_path / "run.resume"
    original_step = interrupt_step(monkeypatch, interrupt_at, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        run_api(pair, negatives, positives, checkpoint=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = run_api(pair, negatives, positives, checkpoint=checkpoint, resume=True)
    assert same_parameters(resumed.generator, reference.generator)
    assert same_parameters(resumed.discriminator, reference.discriminator)


def test_a_killed_run_resumes_from_its_last_periodic_checkpoint(pair, tmp_path, monkeypatch):
    negatives, positives = images(8, 1), images(8, 2)
    reference = run_api(pair, negatives, positives)
    checkpoint = tmp_path / "run.resume"
    original_step = interrupt_step(monkeypatch, 8, lambda: sys.exit("killed"))  # nothing saved at the kill
    with pytest.raises(SystemExit):
        run_api(pair, negatives, positives, checkpoint=checkpoint, every=2)
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = run_api(pair, negatives, positives, checkpoint=checkpoint, every=2, resume=True)
    assert same_parameters(resumed.generator, reference.generator)


def test_a_resume_file_from_another_run_is_refused(pair, tmp_path, monkeypatch):
    negatives, positives = images(8, 1), images(8, 2)
    checkpoint = tmp_path / "run.resume"
    monkeypatch.setattr(Trainer, "train_step", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        run_api(pair, negatives, positives, checkpoint=checkpoint, every=1)
    monkeypatch.undo()
    run_api(pair, negatives, positives, checkpoint=checkpoint, every=1, adapt_steps=1, steps=1)
    with pytest.raises(GaneditError, match="different run"):
        run_api(pair, negatives, positives, checkpoint=checkpoint, resume=True, seed=5)


def test_the_same_seed_gives_the_same_model_and_extrapolation_needs_no_stage_2(pair):
    negatives, positives = images(8, 1), images(8, 2)
    a, b = run_api(pair, negatives, positives), run_api(pair, negatives, positives)
    assert same_parameters(a.generator, b.generator)
    quick = run_api(pair, negatives, None, method="extrapolate")
    assert quick.discriminator is None and len(quick.adapted) == TINY["adapted_models"]
    expected = extrapolate(pair[0], a.adapted, gamma=1.0)
    assert same_parameters(quick.generator, expected)


# --- command line -------------------------------------------------------------------------------------


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


TINY_FLAGS = ["--adapted-models", 2, "--adapt-steps", 2, "--steps", 3, "--batch-size", 4, "--device", "cpu", "-q"]


def test_cli_keeps_and_reuses_adapted_models_with_the_same_result(tmp_path, capsys, model_file):
    negatives, positives = write_folder(tmp_path / "neg", 6, 1), write_folder(tmp_path / "pos", 6, 2)
    kept = tmp_path / "adapted"
    base = [model_file, "--negatives", negatives, "--positives", positives, *TINY_FLAGS]
    code, _, err = cli(capsys, "unlearn", *base, "-o", tmp_path / "a.safetensors", "--keep-adapted", kept)
    assert code == 0, err
    files = sorted(kept.glob("*.safetensors"))
    assert len(files) == 2
    argv = [a for f in files for a in ("--adapted", f)]
    code, out, err = cli(capsys, "unlearn", *base, "-o", tmp_path / "b.safetensors", *argv, "--json")
    assert code == 0, err
    assert json.loads(out)["training"]["stage_1"] == "given"
    first, second = (ganedit.load_generator(tmp_path / name) for name in ("a.safetensors", "b.safetensors"))
    assert same_parameters(first, second)
    provenance = ganedit.load_model(tmp_path / "a.safetensors").metadata["provenance"]
    assert provenance["procedure"] == "unlearn" and provenance["parameters"]["repulsion"] == "el2"
    assert not (tmp_path / "a.safetensors.resume").exists()


def bad_input(capsys, tmp_path, *argv):
    output = tmp_path / "out.safetensors"
    code, _, err = cli(capsys, "unlearn", *argv, "-o", output)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ganedit: error:")
    assert not output.exists() and not (tmp_path / "out.safetensors.resume").exists()
    return err


def test_cli_bad_inputs_are_one_line_errors_with_no_output(tmp_path, capsys, model_file, pair):
    positives = write_folder(tmp_path / "pos", 4, 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no image files" in bad_input(capsys, tmp_path, model_file, "--negatives", empty, *TINY_FLAGS)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "a.png").write_text("not an image")
    assert "a.png" in bad_input(capsys, tmp_path, model_file, "--negatives", fake, *TINY_FLAGS)
    missing = tmp_path / "nowhere"
    assert "does not exist" in bad_input(capsys, tmp_path, model_file, "--negatives", missing, *TINY_FLAGS)
    generator_only = ganedit.save_checkpoint(tmp_path / "g.safetensors", pair[0])
    negatives = write_folder(tmp_path / "neg", 4, 1)
    err = bad_input(capsys, tmp_path, generator_only, "--negatives", negatives, "--positives", positives, *TINY_FLAGS)
    assert "no discriminator" in err and "adaptation needs one" in err
    err = bad_input(
        capsys,
        tmp_path,
        model_file,
        "--negatives",
        negatives,
        "--positives",
        positives,
        "--repulsion",
        "l3",
        *TINY_FLAGS,
    )
    assert "'l3' is not one of" in err and "el2" in err
    err = bad_input(capsys, tmp_path, model_file, "--negatives", negatives, *TINY_FLAGS)
    assert "at least 8" in err and "--positives" in err  # too few to learn a detector from, checked before any download


def test_cli_refuses_a_resume_file_from_a_different_run(tmp_path, capsys, model_file):
    negatives, positives = write_folder(tmp_path / "neg", 4, 1), write_folder(tmp_path / "pos", 4, 2)
    other = tmp_path / "other.safetensors"
    code, _, _ = cli(capsys, "unlearn", model_file, "--negatives", negatives, "--positives", positives, "-o", other,
                     "--checkpoint-every", 1, *TINY_FLAGS)  # fmt: skip
    assert code == 0
    # A resume file of the same name, left by a run with other settings:
    from ganedit.procedures.unlearn import _write_resume

    _write_resume(tmp_path / "out.safetensors.resume", "another run", ("adapted", 0), [torch.zeros(3)], None, None)
    argv = [model_file, "--negatives", negatives, "--positives", positives, "--resume", *TINY_FLAGS]
    output = tmp_path / "out.safetensors"
    code, _, err = cli(capsys, "unlearn", *argv, "-o", output)
    assert code == 2 and "different run" in err and not output.exists()


def test_cli_ctrl_c_exits_130_and_resume_gives_the_uninterrupted_model(tmp_path, model_file):
    negatives, positives = write_folder(tmp_path / "neg", 6, 1), write_folder(tmp_path / "pos", 6, 2)
    flags = [str(a) for a in ["--adapted-models", 2, "--adapt-steps", 12, "--steps", 12, "--batch-size", 4]]
    base = [sys.executable, "-m", "ganedit", "unlearn", str(model_file), "--negatives", str(negatives),
            "--positives", str(positives), *flags, "--device", "cpu", "-q", "--checkpoint-every", "3"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "-o", str(tmp_path / "whole.safetensors")], check=True, env=env, timeout=300)
    output = tmp_path / "cut.safetensors"
    resume_file = tmp_path / "cut.safetensors.resume"
    process = subprocess.Popen([*base, "-o", str(output)], env=env, stderr=subprocess.PIPE, text=True)
    for _ in range(600):
        if resume_file.exists() or process.poll() is not None:
            break
        import time

        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err and resume_file.exists() and not output.exists()
    subprocess.run([*base, "-o", str(output), "--resume"], check=True, env=env, timeout=300)
    assert same_parameters(ganedit.load_generator(output), ganedit.load_generator(tmp_path / "whole.safetensors"))
