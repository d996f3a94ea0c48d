"""GAN Cocktail's machinery: function-preserving conditioning, merge rules, per-class w_avg, resuming,
the reference formats, and the command line's errors. Its effect is shown on the toy world in
test_toy_merge.py."""

import json
import os
import signal

import pytest
import torch
from helpers import interrupt_step, same_parameters, tiny_stylegan2_pair

import ganedit
from ganedit.cli import main
from ganedit.engine.adversarial import Trainer
from ganedit.engine.ewc import EWCPenalty, fisher_diagonal
from ganedit.errors import GaneditError
from ganedit.procedures.merge import (
    MergeSettings,
    Parent,
    combine,
    conditional_copy,
    ewc_parameters,
    merge,
    merge_models,
    recompute_w_avg,
    slerp,
    ties,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"rooting_steps": 3, "steps": 4, "batch_size": 4, "pl_weight": 2.0, "w_avg_samples": 64}


def parents(count: int = 2, c_dim: int = 0) -> list[Parent]:
    return [Parent(*tiny_stylegan2_pair(c_dim, seed=i), f"class{i}") for i in range(count)]


def one_hot(labels: list[int], classes: int) -> torch.Tensor:
    return torch.eye(classes)[labels]


# --- conditioning ---------------------------------------------------------------------------------------


def test_conditional_copy_of_an_unconditional_parent_computes_the_same_for_every_class():
    parent = parents(1)[0]
    G, D = conditional_copy(parent, 3, None, seed=0)
    assert G.c_dim == 3 and D.c_dim == 3 and D.config.cmap_dim == D.config.channels[0]
    z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(1))
    c = one_hot([0, 1, 2, 0, 1, 2, 0, 1], 3)
    images = parent.generator(z)
    torch.testing.assert_close(G(z, c), images, atol=1e-5, rtol=0)
    torch.testing.assert_close(D(images, c), parent.discriminator(images), atol=1e-5, rtol=0)
    # the class path is there (random class columns, one shared embedding), so training can separate classes
    assert G.mapping.fc0.weight[:, G.z_dim :].abs().min() > 0
    assert torch.equal(G.mapping.embed.weight[:, 0], G.mapping.embed.weight[:, 2])
    assert torch.equal(G.mapping.w_avg_per_class[2], parent.generator.mapping.w_avg)


def test_conditional_copy_of_a_conditional_parent_keeps_the_class_it_learned():
    G0, D0 = tiny_stylegan2_pair(c_dim=2, seed=3)
    G, D = conditional_copy(Parent(G0, D0, "two", source_class=1), 3, (32, 1, 0.01), seed=0)
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
    images = G0(z, one_hot([1] * 4, 2))
    for k in range(3):
        torch.testing.assert_close(G(z, one_hot([k] * 4, 3)), images, atol=1e-5, rtol=0)
        torch.testing.assert_close(D(images, one_hot([k] * 4, 3)), D0(images, one_hot([1] * 4, 2)), atol=1e-5, rtol=0)


# --- merge rules --------------------------------------------------------------------------------------


def test_the_mean_is_task_arithmetic_with_weight_one_over_n_and_block_weights_scale_the_offset():
    tensors = [torch.randn(5, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    mean = combine(tensors, 1, MergeSettings(rule="mean"))
    torch.testing.assert_close(mean, torch.stack(tensors).mean(dim=0))
    arithmetic = combine(tensors, 1, MergeSettings(rule="task-arithmetic"))
    torch.testing.assert_close(arithmetic, mean)
    half = combine(tensors, 1, MergeSettings(block_weights={"mapping": 0.5, "mapping.fc1": 0.0}), "mapping.fc0.weight")
    torch.testing.assert_close(half, tensors[1] + 0.5 * (mean - tensors[1]))
    none = combine(tensors, 1, MergeSettings(block_weights={"mapping": 0.5, "mapping.fc1": 0.0}), "mapping.fc1.weight")
    torch.testing.assert_close(none, tensors[1])


def test_ties_trims_elects_the_sign_and_averages_the_agreeing_entries():
    taus = [torch.tensor([3.0, -1.0, 0.1, 2.0]), torch.tensor([1.0, 4.0, 0.2, -0.5]), torch.tensor([-2.0, 2.0, 0, 1])]
    merged = ties(taus, [1.0, 1.0, 1.0], density=0.5)
    # kept (top 2 of each): [3, 0, 0, 2], [1, 4, 0, 0], [-2, 2, 0, 0]; elected signs +, +, 0, +;
    # the means of the kept entries with the elected sign: (3 + 1) / 2, (4 + 2) / 2, 0, 2
    torch.testing.assert_close(merged, torch.tensor([2.0, 3.0, 0.0, 2.0]))


def test_slerp_interpolates_on_the_sphere_and_keeps_its_endpoints():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([1.0, 1.0]) / 2**0.5)


def test_each_class_embedding_comes_from_the_model_that_learned_it_and_buffers_from_the_root():
    models = [conditional_copy(p, 3, None, seed=0) for p in parents(3)]
    for i, (G, D) in enumerate(models):
        with torch.no_grad():
            G.mapping.embed.weight.add_(torch.randn_like(G.mapping.embed.weight))
            D.mapping.embed.weight.add_(torch.randn_like(D.mapping.embed.weight))
            G.synthesis.b8.conv0.noise_const.fill_(i)
    G, D = merge_models(models, MergeSettings(root=1))
    for i, (G_i, D_i) in enumerate(models):
        assert torch.equal(G.mapping.embed.weight[:, i], G_i.mapping.embed.weight[:, i])
        assert torch.equal(D.mapping.embed.weight[:, i], D_i.mapping.embed.weight[:, i])
    assert torch.equal(G.synthesis.b8.conv0.noise_const, models[1][0].synthesis.b8.conv0.noise_const)
    mean = torch.stack([m[0].synthesis.b8.conv1.weight for m in models]).mean(dim=0)
    torch.testing.assert_close(G.synthesis.b8.conv1.weight, mean)


def test_w_avg_is_recomputed_per_class_and_truncation_pulls_towards_the_class_centre():
    G, _ = conditional_copy(parents(1)[0], 2, None, seed=0)
    with torch.no_grad():
        G.mapping.embed.weight.normal_()
        G.mapping.fc0.weight.normal_()  # make the classes' w differ
    recompute_w_avg(G, [1.0, 3.0], samples=256, seed=0)
    z = torch.randn(256, G.z_dim, generator=torch.Generator().manual_seed(0))
    for k in range(2):
        w = G.mapping(z, one_hot([k] * 256, 2))[:, 0]
        torch.testing.assert_close(G.mapping.w_avg_per_class[k], w.mean(dim=0), atol=1e-4, rtol=0)
        truncated = G.mapping(z[:1], one_hot([k], 2), truncation_psi=0.0)[0, 0]
        torch.testing.assert_close(truncated, G.mapping.w_avg_per_class[k])
    expected = 0.25 * G.mapping.w_avg_per_class[0] + 0.75 * G.mapping.w_avg_per_class[1]
    torch.testing.assert_close(G.mapping.w_avg, expected)


# --- the procedure ------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_model_and_reused_rooted_models_give_it_too():
    models = parents(3)
    a, b = merge(models, MergeSettings(**TINY)), merge(models, MergeSettings(**TINY))
    assert same_parameters(a.generator, b.generator) and same_parameters(a.discriminator, b.discriminator)
    reused = merge(models, MergeSettings(**TINY), rooted=[pair for pair in a.rooted if pair is not None])
    assert same_parameters(reused.generator, a.generator)
    naive = merge(models, MergeSettings(**{**TINY, "rooting": False}))
    assert not same_parameters(naive.generator, a.generator)


def test_discriminator_warmup_adds_D_only_steps_before_each_stage(monkeypatch):
    D_only = []
    original_step = Trainer.train_step

    def recording_step(self, *args, **kwargs):
        D_only.append(self.step < self.config.discriminator_warmup)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_step", recording_step)
    merge(parents(2), MergeSettings(**TINY, discriminator_warmup=2))
    assert D_only == [True] * 2 + [False] * TINY["rooting_steps"] + [True] * 2 + [False] * TINY["steps"]


@pytest.mark.parametrize("interrupt_at", [2, 5, 8])  # rooting the first, the second model; union fine-tuning
def test_ctrl_c_saves_and_resume_finishes_with_the_uninterrupted_result(tmp_path, monkeypatch, interrupt_at):
    models = parents(3)
    reference = merge(models, MergeSettings(**TINY))
    checkpoint = tmp_path / "run.resume"
    original_step = interrupt_step(monkeypatch, interrupt_at, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        merge(models, MergeSettings(**TINY), checkpoint=checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = merge(models, MergeSettings(**TINY), checkpoint=checkpoint, resume=True)
    assert same_parameters(resumed.generator, reference.generator)
    assert same_parameters(resumed.discriminator, reference.discriminator)
    with pytest.raises(GaneditError, match="different run"):
        merge(models, MergeSettings(**{**TINY, "seed": 4}), checkpoint=checkpoint, resume=True)


# --- the baselines: TransferGAN and EWC -----------------------------------------------------------------


def record_steps(monkeypatch) -> list:
    """Every train_step call of any Trainer: (trainer id, the extra generator loss it was given)."""
    calls = []
    original_step = Trainer.train_step

    def recording_step(self, real, c=None, extra_generator_loss=None):
        calls.append((id(self), extra_generator_loss))
        return original_step(self, real, c, extra_generator_loss)

    monkeypatch.setattr(Trainer, "train_step", recording_step)
    return calls


@pytest.mark.parametrize("method", ["transfergan", "ewc"])
def test_the_baselines_fine_tune_the_roots_copy_without_rooting_or_averaging(monkeypatch, method):
    models = parents(3)
    calls = record_steps(monkeypatch)
    result = merge(models, MergeSettings(**TINY, root=1, method=method))
    assert len({trainer for trainer, _ in calls}) == 1 and len(calls) == TINY["steps"]  # union only, no rooting
    assert all((extra is not None) == (method == "ewc") for _, extra in calls)
    root_G, root_D = conditional_copy(models[1], 3, None, seed=0)
    start_G, start_D = result.averaged
    assert same_parameters(start_D, root_D)  # the start is the root's copy itself: nothing averaged in
    assert all(torch.equal(a, b) for a, b in zip(start_G.parameters(), root_G.parameters(), strict=True))
    assert result.rooted == [None, None, None] and result.info["method"] == method
    averaged = merge(models, MergeSettings(**{**TINY, "steps": 0}, root=1)).averaged[0]  # the cocktail's start
    assert not all(torch.equal(a, b) for a, b in zip(averaged.parameters(), root_G.parameters(), strict=True))


def test_the_ewc_penalty_pulls_towards_the_anchor_in_proportion_to_the_fisher_diagonal():
    G, D = conditional_copy(parents(1)[0], 2, None, seed=0)
    G.requires_grad_(True)
    D.requires_grad_(False)
    names = ["synthesis.b8.conv1.weight", "synthesis.b16.torgb.bias"]
    label = one_hot([0], 2)
    fisher = fisher_diagonal(G, D, names, samples=3, seed=0, c=label)
    rng = torch.Generator().manual_seed(0)  # F by hand: the per-sample squared gradients of D's logit, averaged
    expected = [torch.zeros_like(f) for f in fisher]
    for _ in range(3):
        z = torch.randn([1, G.z_dim], generator=rng)
        params = [dict(G.named_parameters())[n] for n in names]
        grads = torch.autograd.grad(D(G(z, label, noise_mode="const"), label).sum(), params)
        expected = [e + g.square() / 3 for e, g in zip(expected, grads, strict=True)]
    for f, e in zip(fisher, expected, strict=True):
        torch.testing.assert_close(f, e)
        assert f.abs().sum() > 0
    assert all(p.requires_grad for p in G.parameters()) and not any(p.requires_grad for p in D.parameters())

    penalty = EWCPenalty(G, names, fisher, ewc_lambda=3.0)
    assert penalty(G).item() == 0.0
    (at_anchor,) = torch.autograd.grad(penalty(G), [G.synthesis.b8.conv1.weight])
    assert at_anchor.abs().max() == 0  # zero gradient at the anchor
    with torch.no_grad():
        G.synthesis.b8.conv1.weight.add_(0.5)
        G.synthesis.b8.conv0.weight.add_(0.5)  # not covered: no penalty, no gradient
    value = penalty(G)
    torch.testing.assert_close(value, 1.5 * (fisher[0] * 0.25).sum())  # (lambda / 2) sum F d^2
    grad_covered, grad_other = torch.autograd.grad(value, [G.synthesis.b8.conv1.weight, G.synthesis.b8.conv0.weight],
                                                   allow_unused=True)  # fmt: skip
    torch.testing.assert_close(grad_covered, 3.0 * fisher[0] * 0.5)  # lambda F (theta - theta*)
    assert grad_covered.abs().max() > 0 and grad_other is None


def test_ewc_covers_every_generator_parameter_but_the_class_embedding_and_holds_g_nearer_the_root():
    G, _ = conditional_copy(parents(1)[0], 2, None, seed=0)
    names = ewc_parameters(G)
    assert "mapping.embed.weight" not in names and "mapping.embed.bias" not in names
    assert len(names) == len(list(G.parameters())) - 2
    models = parents(2)
    root_G, _ = conditional_copy(models[0], 2, None, seed=0)

    def distance(G):
        return sum((a - b).square().sum() for a, b in zip(G.parameters(), root_G.parameters(), strict=True))

    settings = {**TINY, "steps": 6}
    transfer = merge(models, MergeSettings(**settings, method="transfergan"))
    held = merge(models, MergeSettings(**settings, method="ewc", ewc_lambda=1e6, fisher_samples=8))
    assert distance(held.generator) < distance(transfer.generator)
    assert held.info["fisher_mean"] > 0


def test_an_interrupted_ewc_baseline_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    models, settings = parents(2), MergeSettings(**TINY, method="ewc", fisher_samples=4)
    reference = merge(models, settings)
    checkpoint = tmp_path / "ewc.resume"
    original_step = interrupt_step(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        merge(models, settings, checkpoint=checkpoint)
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = merge(models, settings, checkpoint=checkpoint, resume=True)
    assert same_parameters(resumed.generator, reference.generator)
    with pytest.raises(GaneditError, match="different run"):
        merge(models, MergeSettings(**TINY, method="transfergan"), checkpoint=checkpoint, resume=True)


def test_the_ema_rampup_setting_is_adas_by_default_and_zero_is_the_references_none():
    assert MergeSettings().training(0).ema_rampup == 0.05
    assert MergeSettings(ema_rampup=0).training(0).ema_rampup is None
    assert MergeSettings().training(0).ema_kimg == 10.0


# --- the reference formats ----------------------------------------------------------------------------


def test_nvidia_unconditional_and_conditional_pickles_merge_and_train(tmp_path, capsys, conformance_dir):
    unconditional = conformance_dir / "nvidia-sg2-tiny.pkl"
    conditional = conformance_dir / "nvidia-sg2-tiny-c2.pkl"
    output = tmp_path / "merged.safetensors"
    argv = ["merge", unconditional, conditional, "--name", "plain", "--name", "second", "--parent-class", 0,
            "--parent-class", 1, "-o", output,
            "--rooting-steps", 2, "--steps", 2, "--batch-size", 4, "--device", "cpu", "-q", "--json"]  # fmt: skip
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["class_names"] == ["plain", "second"]
    bundle = ganedit.load_model(output)
    assert bundle.class_names == ["plain", "second"] and bundle.generator.c_dim == 2
    assert bundle.discriminator.config.cmap_dim == 64 and bundle.discriminator.config.mapping_layers == 8
    provenance = bundle.metadata["provenance"]
    assert provenance["procedure"] == "merge" and provenance["parameters"]["config"]["parent_classes"] == [0, 1]
    assert [p["source"] for p in provenance["parents"]] == [str(unconditional), str(conditional)]
    code = main(["sample", str(output), "--class", "second", "-n", "2", "-o", str(tmp_path / "s.png"), "-q"])
    assert code == 0 and (tmp_path / "s.png").is_file()
    code = main(["info", str(output)])
    assert code == 0 and "rooting_steps" in capsys.readouterr().out


def test_a_rosinality_checkpoint_merges_from_a_recipe_and_the_recipe_repeats_the_run(tmp_path, capsys, conformance_dir):
    model = conformance_dir / "rosinality-sg2-tiny.pt"
    recipe = tmp_path / "merge.toml"
    recipe.write_text(
        f'command = "merge"\nmodels = ["{model}", "{model}"]\nnames = ["left", "right"]\n'
        f'output = "{tmp_path / "m.safetensors"}"\n'
        '[settings]\nrooting_steps = 2\nsteps = 2\nbatch_size = 4\nrule = "ties"\nblock_weights = {mapping = 0.5}\n'
    )
    code = main(["merge", "--recipe", str(recipe), "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    first = ganedit.load_model(tmp_path / "m.safetensors")
    settings = first.metadata["provenance"]["parameters"]["config"]
    assert settings["rule"] == "ties" and settings["block_weights"] == {"mapping": 0.5}
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m.safetensors"), "--recipe"]) == 0
    again = tmp_path / "again.toml"
    again.write_text(capsys.readouterr().out)
    code = main(["merge", "--recipe", str(again), "-o", str(tmp_path / "again.safetensors"), "--device", "cpu", "-q"])
    assert code == 0, capsys.readouterr().err
    assert same_parameters(first.generator, ganedit.load_model(tmp_path / "again.safetensors").generator)


# --- bad input ----------------------------------------------------------------------------------------


def write_model(path, c_dim: int = 0, channels=(32, 32, 32), with_D: bool = True, resolution: int = 16):
    G, D = tiny_stylegan2_pair(c_dim, channels)
    if resolution != 16:
        from ganedit.generators.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

        G = StyleGAN2Generator(G.config.__class__(**{**vars(G.config), "img_resolution": resolution,
                                                      "channels": [32] * 4}))  # fmt: skip
        D = StyleGAN2Discriminator(D.config.__class__(**{**vars(D.config), "img_resolution": resolution,
                                                          "channels": [32] * 4}))  # fmt: skip
    return ganedit.save_checkpoint(path, G, D if with_D else None)


@pytest.mark.parametrize(
    "case, message",
    [
        ("one model", "at least two models"),
        ("different architectures", "different generator architectures"),
        ("different resolutions", "different resolutions"),
        ("no discriminator", "has no discriminator"),
        ("duplicate names", "duplicate class names"),
        ("proportions", "3 proportions for 2 models"),
        ("unknown root", "neither an index nor one of the class names"),
        ("block weight", "matches no parameter"),
        ("rooted without rooting", "drop one of the two"),
        ("ewc without rooting", "--method ewc neither roots nor averages"),
        ("transfergan with a rule", "--method transfergan does not average, so --rule"),
        ("transfergan keeping rooted", "--keep-rooted means nothing to it"),
        ("ewc lambda 0", "--ewc-lambda must be"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, capsys, case, message):
    a = write_model(tmp_path / "a.safetensors")
    b = write_model(tmp_path / "b.safetensors")
    models = {
        "one model": [a],
        "different architectures": [a, write_model(tmp_path / "w.safetensors", channels=(32, 32, 16))],
        "different resolutions": [a, write_model(tmp_path / "r.safetensors", resolution=32)],
        "no discriminator": [a, write_model(tmp_path / "g.safetensors", with_D=False)],
    }.get(case, [a, b])
    extra = {
        "duplicate names": ["--name", "cats", "--name", "Cats"],
        "proportions": ["--proportion", 1, "--proportion", 2, "--proportion", 3],
        "unknown root": ["--root", "dogs"],
        "block weight": ["--block-weight", "synthesis.b1024=0.5"],
        "rooted without rooting": ["--no-rooting", "--rooted", b],
        "ewc without rooting": ["--method", "ewc", "--no-rooting"],
        "transfergan with a rule": ["--method", "transfergan", "--rule", "ties"],
        "transfergan keeping rooted": ["--method", "transfergan", "--keep-rooted", tmp_path / "kept"],
        "ewc lambda 0": ["--method", "ewc", "--ewc-lambda", 0],
    }.get(case, [])
    output = tmp_path / "out.safetensors"
    code = main([str(v) for v in ["merge", *models, *extra, "-o", output, "--steps", 1, "--rooting-steps", 1, "-q"]])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not output.exists() and not output.with_name(output.name + ".resume").exists()


def test_dry_run_validates_and_prints_the_plan_without_training(tmp_path, capsys):
    a, b = write_model(tmp_path / "a.safetensors"), write_model(tmp_path / "b.safetensors")
    code = main(["merge", str(a), str(b), "--root", "b", "--discriminator-warmup", "5", "--dry-run", "--json", "-q"])
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert code == 0 and plan["root"] == "b" and "rooting b -> a" in plan["stages"][0]
    assert "after 5 D-only steps" in plan["stages"][0] and "after 5 D-only steps" in plan["stages"][-1]
    assert list(tmp_path.iterdir()) == [a, b] or sorted(tmp_path.iterdir()) == sorted([a, b])


def test_a_baseline_from_the_cli_prints_its_plan_and_writes_its_method_into_the_provenance(tmp_path, capsys):
    a, b = write_model(tmp_path / "a.safetensors"), write_model(tmp_path / "b.safetensors")
    code = main(["merge", str(a), str(b), "--method", "ewc", "--dry-run", "--json", "-q"])
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert code == 0 and plan["method"] == "ewc" and not any(stage.startswith("rooting") for stage in plan["stages"])
    assert "EWC penalty" in plan["stages"][-1]
    output = tmp_path / "tg.safetensors"
    flags = ["--steps", 2, "--batch-size", 4, "--device", "cpu", "-q", "--judge", "toy:colour", "--eval-samples", 4]
    code = main([str(v) for v in ["merge", a, b, "--method", "transfergan", "-o", output, "--json", *flags]])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert set(report["classes"][0]) == {"class", "parent", "root", "merged"}
    assert report["training"]["method"] == "transfergan"
    provenance = ganedit.load_model(output).metadata["provenance"]
    assert provenance["procedure"] == "merge" and provenance["parameters"]["config"]["method"] == "transfergan"


def test_cli_keeps_and_reuses_rooted_models_and_resumes(tmp_path, capsys):
    a, b = write_model(tmp_path / "a.safetensors"), write_model(tmp_path / "b.safetensors")
    flags = ["--rooting-steps", 2, "--steps", 2, "--batch-size", 4, "--device", "cpu", "-q"]
    kept = tmp_path / "rooted"
    code = main([str(v) for v in ["merge", a, b, "-o", tmp_path / "first.safetensors", "--keep-rooted", kept, *flags]])
    assert code == 0, capsys.readouterr().err
    assert [p.name for p in kept.iterdir()] == ["rooted-1.safetensors"]
    argv = ["merge", a, b, "-o", tmp_path / "second.safetensors", "--rooted", kept / "rooted-1.safetensors", *flags]
    code = main([str(v) for v in argv])
    assert code == 0, capsys.readouterr().err
    first, second = (ganedit.load_model(tmp_path / n) for n in ("first.safetensors", "second.safetensors"))
    assert same_parameters(first.generator, second.generator)
    assert second.metadata["provenance"]["parents"][-1]["source"].endswith("rooted-1.safetensors")
    code = main([str(v) for v in ["merge", a, b, "-o", tmp_path / "third.safetensors", "--resume", *flags]])
    assert code == 2 and "does not exist" in capsys.readouterr().err
