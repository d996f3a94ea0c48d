"""embed-tune: the objective is methods.md section 1's, the run is reproducible, results save and patch.

A tiny random BigGAN-deep (32 px) and small random-weight judges keep this file fast on a CPU. With a
random judge the target probability is still a meaningful objective: it is the judge's own.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from helpers import tune
from safetensors.torch import save_file
from torch import nn

import ganedit
from ganedit.cli import main
from ganedit.errors import GaneditError
from ganedit.generators.biggan_deep import BigGANDeep
from ganedit.judges.classifiers import Judge, Preprocess
from ganedit.judges.features import alexnet_conv5
from ganedit.judges.perceptual import load_perceptual, mean_pairwise_distance
from ganedit.procedures import embed_tune as et

NUM_CLASSES = 6
CLASS_NAMES = [f"c{i}" for i in range(NUM_CLASSES)]


def tiny_generator(seed: int = 0) -> BigGANDeep:
    torch.manual_seed(seed)
    config = BigGANDeep.Config(
        output_dim=32,
        z_dim=16,
        class_embed_dim=16,
        channel_width=4,
        num_classes=NUM_CLASSES,
        layers=[[False, 4, 4], [True, 4, 2], [True, 2, 1], [True, 1, 1]],
        attention_layer_position=2,
        eps=1e-4,
        n_stats=51,
    )
    generator = BigGANDeep(config).eval()
    with torch.no_grad():  # a spread-out table, as a trained model has
        generator.embeddings.weight.normal_(0, 0.5)
    return generator


def colour_judge(labels: list[str], seed: int = 1) -> Judge:
    """A random linear classifier of 4x4-pooled colours: random, but strongly image-dependent."""
    torch.manual_seed(seed)
    head = nn.Linear(48, len(labels))
    with torch.no_grad():
        head.weight.mul_(20)
    network = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 48), nn.Tanh(), head)
    return Judge(network, labels, "colour-judge", Preprocess(None, 32), head)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


@pytest.fixture(scope="module")
def judge():
    return colour_judge(CLASS_NAMES + ["new0", "new1"])


FAST = dict(starts=2, rounds=2, steps=3, batch_size=4, holdout=6)


@pytest.fixture(scope="module")
def conv5():
    """AlexNet conv5 with random weights: the real network's shapes and gradients, no download."""
    return alexnet_conv5(random_weights_for_tests=True)


def hand_loss(generator, judge, e, z, target, lo, hi, alpha, pairs, space, conv5=None):
    """L for one start, written directly from methods.md (no batching over starts)."""
    clamped = torch.max(torch.min(e, hi), lo)
    images = generator.from_embedding(z, clamped.expand(len(z), -1), 1.0)
    logits, features = judge.logits_and_features(images)
    ce = F.cross_entropy(logits, torch.full((len(z),), target))
    if space == "alexnet-conv5":
        phi = conv5(images)
    else:
        phi = {"softmax": logits.softmax(1), "features": features, "pixels": images.flatten(1)}[space]
    ratios = [
        torch.linalg.norm(phi[a] - phi[b]) / torch.linalg.norm(z[a] - z[b])
        for a, b in zip(*pairs.tolist(), strict=True)
    ]
    return ce - alpha * torch.stack(ratios).mean()


@pytest.mark.parametrize("space", ["softmax", "features", "alexnet-conv5", "pixels"])
def test_one_adam_step_equals_the_hand_computed_update(generator, judge, conv5, space):
    targets = torch.tensor([1, 1, 4])
    init = generator.class_embeddings.detach()[[0, 2, 3]] * 1.5  # some entries outside the box
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    lr, weight_decay, alpha, n = 0.05, 0.9, 0.3, 4
    tuned = et.optimise(
        generator,
        judge,
        init,
        targets,
        lo,
        hi,
        rounds=1,
        steps=1,
        batch_size=n,
        lr=lr,
        weight_decay=weight_decay,
        diversity=space,
        diversity_weight=alpha,
        diversity_network=conv5,
        truncation=1.0,
        seed=5,
    )
    z = et.round_latents(generator, 1, 3, n, 5, 1.0)[0]
    pairs = et.pair_indices(1, 1, n, 5)[0, 0]
    for start in range(3):
        e = init[start].clone().requires_grad_(True)
        with et.frozen(generator):
            hand_loss(generator, judge, e, z[start], int(targets[start]), lo, hi, alpha, pairs, space, conv5).backward()
        gradient = e.grad + weight_decay * e.detach()  # Adam's weight decay is an L2 term in the gradient
        # First Adam step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
        expected = e.detach() - lr * gradient / (gradient.abs() + 1e-8)
        torch.testing.assert_close(tuned[start], torch.max(torch.min(expected, hi), lo), atol=1e-5, rtol=1e-5)


def test_diversity_term_is_a_scalar_per_start_that_backpropagates(generator, judge):
    embeddings = generator.class_embeddings.detach()[:3].clone().requires_grad_(True)
    z = et.round_latents(generator, 1, 3, 4, 0, 1.0)[0]
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    labels = torch.tensor([0, 1, 2]).repeat_interleave(4)
    pairs = et.pair_indices(1, 1, 4, 0)[0, 0]
    with_term = et.am_loss(generator, judge, embeddings, z, labels, lo, hi, 1.0, "pixels", 0.5, pairs)
    without = et.am_loss(generator, judge, embeddings, z, labels, lo, hi, 1.0, "off", 0.5, pairs)
    assert with_term.shape == (3,)
    assert (with_term < without).all()  # L = L_CE - alpha * L_div with L_div > 0
    (with_term - without).sum().backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("space", ["softmax", "features", "alexnet-conv5", "pixels"])
def test_diversity_gradient_is_non_zero_and_proportional_to_its_weight(generator, judge, conv5, space):
    """d(L(alpha) - L(0))/de = -alpha dL_div/de: the term pushes e, and twice the weight pushes twice as hard."""
    embeddings, z, labels, lo, hi, pairs = one_step_inputs(generator)

    def diversity_gradient(alpha):
        e = embeddings.clone().requires_grad_(True)
        with et.frozen(generator):
            with_term = et.am_loss(generator, judge, e, z, labels, lo, hi, 1.0, space, alpha, pairs, "fp32", conv5)
            without = et.am_loss(generator, judge, e, z, labels, lo, hi, 1.0, "off", alpha, pairs, "fp32", conv5)
            (with_term - without).sum().backward()
        return e.grad

    once, twice = diversity_gradient(1.0), diversity_gradient(2.0)
    assert (once.norm(dim=1) > 1e-6).all(), once.norm(dim=1)
    # up to float cancellation of the cross-entropy gradient, which both losses share
    assert (twice - 2 * once).norm() < 1e-3 * (2 * once).norm()


def test_alexnet_conv5_features_have_its_shape_and_pass_gradients(conv5):
    images = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_(True)
    features = conv5(images)
    assert features.shape == (3, 256 * 6 * 6)  # conv5 after its ReLU and max-pool, at 224 px
    features.square().sum().backward()
    assert images.grad.abs().sum() > 0
    assert not conv5.training and not any(p.requires_grad for p in conv5.parameters())
    reference = conv5.trunk(conv5.preprocess(images.detach()))  # the torchvision trunk on the preprocessed images
    torch.testing.assert_close(features.detach(), reference.flatten(1))


def test_alexnet_conv5_offline_without_its_weights_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("GANEDIT_OFFLINE", "1")
    with pytest.raises(GaneditError) as error:
        alexnet_conv5()
    message = str(error.value)
    assert "\n" not in message
    assert "alexnet-owt-7be5be79.pth" in message and str(tmp_path / "empty-torch-home") in message
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message
    with pytest.raises(GaneditError, match="alexnet-owt-7be5be79.pth"):  # embed_tune loads it when not given one
        tune(tiny_generator(), colour_judge(CLASS_NAMES), [1], diversity="alexnet-conv5", diversity_weight=1.0, **FAST)


def test_alexnet_conv5_diversity_works_with_any_judge(generator, judge, conv5, monkeypatch):
    from ganedit.judges import features

    built = []
    monkeypatch.setattr(features, "alexnet_conv5", lambda: built.append(1) or conv5)  # the default, without a download
    settings = dict(diversity="alexnet-conv5", diversity_weight=50.0, **FAST)
    tuned = tune(generator, judge, [1], **settings)
    assert built == [1] and tuned.parameters["diversity"] == "alexnet-conv5"
    given = et.embed_tune(generator, judge, [1], et.EmbedTuneSettings(**settings), diversity_network=conv5)
    assert built == [1]  # a given network is used as it is
    torch.testing.assert_close(given.embeddings, tuned.embeddings)
    without = tune(generator, judge, [1], diversity="off", **FAST)
    assert not torch.allclose(tuned.embeddings, without.embeddings)


def test_mean_pairwise_perceptual_distance_is_reported_before_and_after(generator, judge, tmp_path):
    perceptual = load_perceptual("toy")
    result = et.embed_tune(
        generator, judge, [2, judge.labels.index("new0")], et.EmbedTuneSettings(**FAST),
        class_names=CLASS_NAMES, perceptual=perceptual,
    )  # fmt: skip
    assert result.perceptual == perceptual.name
    z = result.holdout_z
    with torch.no_grad():
        for report, before, after in zip(result.reports, result.before_embeddings, result.embeddings, strict=True):
            for scores, embedding in ((report.before, before), (report.after, after)):
                images = generator.from_embedding(z, embedding.expand(len(z), -1), 1.0)
                pairs = [(a, b) for a in range(len(z)) for b in range(a + 1, len(z))]
                by_hand = sum(float(perceptual(images[[a]], images[[b]])) for a, b in pairs) / len(pairs)
                assert scores.mean_pairwise_perceptual == pytest.approx(by_hand, rel=1e-4)
    assert result.reports[1].before.mean_pairwise_perceptual != result.reports[1].after.mean_pairwise_perceptual
    images = generator.from_embedding(z, result.embeddings[0].expand(len(z), -1), 1.0)
    assert mean_pairwise_distance(perceptual, images[[0, 0, 0]]) == pytest.approx(0, abs=1e-6)  # same image: 0

    et.save_model(result, tmp_path / "full.safetensors", [{"source": "tiny", "sha256": "0" * 64}])
    evaluation = ganedit.load_model(tmp_path / "full.safetensors").metadata["provenance"]["evaluation"]
    assert evaluation["perceptual_distance"] == perceptual.name and evaluation["held_out_latents"] == FAST["holdout"]
    saved = evaluation["classes"][0]["after"]
    assert saved["mean_pairwise_perceptual"] == pytest.approx(result.reports[0].after.mean_pairwise_perceptual)
    assert tune(generator, judge, [2], **FAST).reports[0].after.mean_pairwise_perceptual is None  # not asked for


def test_tuned_embeddings_stay_inside_the_table_box(generator, judge):
    table = generator.class_embeddings.detach()
    for bounds in ("per-dimension", "global"):
        result = tune(generator, judge, [0, 2], lr=5.0, weight_decay=0.0, bounds=bounds, **FAST)
        lo, hi = et.embedding_bounds(table, bounds)
        assert (result.embeddings >= lo).all() and (result.embeddings <= hi).all()
    assert torch.equal(et.embedding_bounds(table)[0], table.min(dim=0).values)
    assert torch.equal(et.embedding_bounds(table, "global")[1], table.max().expand(table.shape[1]))


def test_latents_are_fresh_each_round_and_fixed_within_one(generator, judge, monkeypatch):
    seen = []
    original = et.am_loss

    def spy(generator, judge, embeddings, z, *args):
        seen.append(z.clone())
        return original(generator, judge, embeddings, z, *args)

    monkeypatch.setattr(et, "am_loss", spy)
    tune(generator, judge, [1], starts=2, rounds=2, steps=3, batch_size=4, holdout=4)
    assert len(seen) == 6 and seen[0].shape == (2, 4, 16)
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[3], seen[5])
    assert not torch.equal(seen[0], seen[3])
    assert not torch.equal(seen[0][0], seen[0][1])  # each start has its own latents
    assert seen[0].abs().max() <= 2  # truncated normal


def test_generator_and_judge_are_left_frozen_and_unchanged(generator, judge):
    before = {name: tensor.clone() for name, tensor in generator.state_dict().items()}
    flags = [p.requires_grad for p in generator.parameters()]
    generator.zero_grad(set_to_none=True)
    result = tune(generator, judge, [1], **FAST)
    assert all(torch.equal(before[name], tensor) for name, tensor in generator.state_dict().items())
    assert [p.requires_grad for p in generator.parameters()] == flags
    assert not any(p.requires_grad for p in judge.parameters())
    assert all(p.grad is None for p in generator.parameters())
    assert result.generator is not generator


def test_a_short_run_raises_the_target_probability_on_held_out_latents(generator, judge):
    target = judge.labels.index("new0")  # a class the generator lacks: before = the best initial embedding
    result = tune(
        generator,
        judge,
        [target],
        class_names=CLASS_NAMES,
        starts=2,
        rounds=3,
        steps=5,
        batch_size=4,
        holdout=8,
        lr=0.05,
        weight_decay=0.0,
    )
    report = result.reports[0]
    assert report.new and report.column == NUM_CLASSES
    assert report.after.probability > report.before.probability + 0.05, report


def test_a_label_the_generator_lacks_becomes_an_appended_class(generator, judge):
    targets = [judge.labels.index("new1"), 2, judge.labels.index("new0")]
    result = tune(generator, judge, targets, class_names=CLASS_NAMES, **FAST)
    assert result.columns == [NUM_CLASSES, 2, NUM_CLASSES + 1]
    edited = result.generator
    assert edited.config.num_classes == NUM_CLASSES + 2
    assert result.class_names == CLASS_NAMES + ["new1", "new0"]
    table = edited.class_embeddings.detach()
    torch.testing.assert_close(table[[NUM_CLASSES, 2, NUM_CLASSES + 1]], result.embeddings)
    unchanged = [0, 1, 3, 4, 5]
    assert torch.equal(table[unchanged], generator.class_embeddings.detach()[unchanged])
    images = edited(torch.zeros(2, 16), torch.tensor([NUM_CLASSES + 1, 0]), 1.0)
    assert images.shape == (2, 3, 32, 32)


def test_class_correspondence():
    labels = ["Tiger shark", "daisy", "hotel_room"]
    assert et.generator_columns(labels, [0, 2], None, 3) == ([0, 2], [])  # same count, no names: identity
    assert et.generator_columns(labels, [2, 0], ["daisy", "tiger_shark"], 2) == ([2, 1], ["hotel_room"])
    assert et.generator_columns(labels, [1], None, 5) == ([5], ["daisy"])


def test_same_seed_same_result_other_seed_other_result(generator, judge):
    first = tune(generator, judge, [1, 3], diversity="features", **FAST)
    second = tune(generator, judge, [1, 3], diversity="features", **FAST)
    other = tune(generator, judge, [1, 3], diversity="features", seed=1, **FAST)
    assert torch.equal(first.embeddings, second.embeddings)
    assert first.summary() == second.summary()
    assert not torch.equal(first.embeddings, other.embeddings)


@pytest.mark.parametrize("init", ["top", "random", "target"])
def test_initialisations(generator, judge, init):
    init_embeddings = et.initial_embeddings(generator, judge, [1, 4], [1, 4], init, 2, 1.0, 0)
    assert init_embeddings.shape == (2, 2, 16)
    table = generator.class_embeddings.detach()
    if init in ("top", "random"):
        rows = [[int((table == e).all(dim=1).nonzero()) for e in starts] for starts in init_embeddings]
        assert all(len(set(r)) == 2 for r in rows)
    else:
        assert (init_embeddings[0] - table[1]).abs().max() < 0.6
    with pytest.raises(GaneditError, match="init target"):
        tune(generator, judge, [judge.labels.index("new0")], class_names=CLASS_NAMES, init="target", **FAST)


def test_full_model_and_patch_round_trip(generator, judge, tmp_path):
    base_path = tmp_path / "base.safetensors"
    ganedit.save_checkpoint(base_path, generator, class_names=CLASS_NAMES)
    base = ganedit.load_model(base_path)
    targets = [2, judge.labels.index("new0")]
    result = tune(base.generator, judge, targets, class_names=base.class_names, **FAST)
    parents = [{"source": str(base_path), "sha256": "0" * 64}]
    et.save_model(result, tmp_path / "full.safetensors", parents)
    et.save_patch(result, tmp_path / "patch.safetensors", parents)
    assert (tmp_path / "patch.safetensors").stat().st_size < (tmp_path / "full.safetensors").stat().st_size / 10

    full = ganedit.load_model(tmp_path / "full.safetensors")
    patched, names = et.apply_patch(base.generator, tmp_path / "patch.safetensors")
    assert names == full.class_names == CLASS_NAMES + ["new0"]
    assert patched.config == full.generator.config
    full_state = full.generator.state_dict()
    assert all(torch.equal(tensor, full_state[name]) for name, tensor in patched.state_dict().items())
    provenance = full.metadata["provenance"]
    assert provenance["procedure"] == "embed-tune" and provenance["seed"] == 0
    assert provenance["parameters"]["targets"] == ["c2", "new0"]

    with pytest.raises(GaneditError, match="another base model"):
        et.apply_patch(tiny_generator(seed=3), tmp_path / "patch.safetensors")


def test_before_after_grid(generator, judge, tmp_path):
    result = tune(generator, judge, [1, 2], class_names=CLASS_NAMES, **FAST)
    images = et.before_after_images(result, count=3)
    assert images.shape == (12, 3, 32, 32)
    z = result.holdout_z[:3]
    torch.testing.assert_close(
        images[:3], generator.from_embedding(z, generator.class_embeddings[1].expand(3, -1), 1.0)
    )
    et.save_before_after_grid(result, tmp_path / "grid.png", count=3)
    assert (tmp_path / "grid.png").stat().st_size > 0


# --- command line -----------------------------------------------------------------------------------------


@pytest.fixture
def cli_files(tmp_path, generator):
    """A model file, a small local classifier file (mobilenet_v3_small at 32 px) and its labels."""
    import torchvision

    ganedit.save_checkpoint(tmp_path / "model.safetensors", generator, class_names=CLASS_NAMES)
    torch.manual_seed(0)
    network = torchvision.models.mobilenet_v3_small(num_classes=NUM_CLASSES + 1)
    metadata = {"arch": "mobilenet_v3_small", "resize_size": "32", "crop_size": "32"}
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, tmp_path / "judge.safetensors", metadata)
    (tmp_path / "labels.txt").write_text("\n".join(CLASS_NAMES + ["hotel room"]) + "\n")
    return tmp_path


FAST_CLI = ["--starts", "2", "--rounds", "1", "--steps", "2", "--batch-size", "4", "--quiet", "--device", "cpu"]


def test_cli_tunes_and_writes_model_patch_and_grid(cli_files, capsys):
    folder = cli_files
    common = ["--classifier", str(folder / "judge.safetensors"), "--labels", str(folder / "labels.txt"), *FAST_CLI]
    args = ["embed-tune", str(folder / "model.safetensors"), "--class", "c1", "--class", "hotel_room", *common]
    args += ["--lpips", "toy"]
    assert main([*args, "-o", str(folder / "out.safetensors"), "--grid", str(folder / "grid.png"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in report["classes"]] == ["c1", "hotel room"]
    assert report["perceptual_distance"] == load_perceptual("toy").name and report["perceptual_note"] is None
    for scores in (report["classes"][1]["before"], report["classes"][1]["after"]):
        assert scores["mean_pairwise_perceptual"] > 0 and 0 <= scores["diversity"] <= 2
    assert report["classes"][1]["new"] and report["classes"][1]["column"] == NUM_CLASSES
    out = ganedit.load_model(folder / "out.safetensors")
    assert out.class_names[-1] == "hotel room" and (folder / "grid.png").is_file()

    assert main([*args, "-o", str(folder / "patch.safetensors"), "--patch"]) == 0
    table = capsys.readouterr().out
    assert "hotel room" in table and "mean pairwise toy perceptual distance" in table
    patched, _ = et.apply_patch(ganedit.load_generator(folder / "model.safetensors"), folder / "patch.safetensors")
    assert torch.equal(patched.embeddings.weight, out.generator.embeddings.weight)


def test_cli_errors_exit_2_and_write_nothing(cli_files, conformance_dir, capsys, monkeypatch, tmp_path):
    folder = cli_files
    model = str(folder / "model.safetensors")
    judge = ["--classifier", str(folder / "judge.safetensors"), "--labels", str(folder / "labels.txt")]
    out = folder / "out.safetensors"

    assert main(["embed-tune", model, "--class", "hotl room", *judge, "-o", str(out), *FAST_CLI]) == 2
    assert "close matches: 'hotel room'" in capsys.readouterr().err

    stylegan = str(conformance_dir / "rosinality-sg2-tiny.pt")
    assert main(["embed-tune", stylegan, "--class", "c1", *judge, "-o", str(out), *FAST_CLI]) == 2
    assert "needs a BigGAN-deep model" in capsys.readouterr().err

    (folder / "short.txt").write_text("a\nb\n")
    short = ["--classifier", str(folder / "judge.safetensors"), "--labels", str(folder / "short.txt")]
    assert main(["embed-tune", model, "--class", "a", *short, "-o", str(out), *FAST_CLI]) == 2
    assert "2 labels but classifier" in capsys.readouterr().err

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert (
        main(
            [
                "embed-tune",
                model,
                "--class",
                "daisy",
                "--classifier",
                "resnet18",
                "--offline",
                "-o",
                str(out),
                *FAST_CLI,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "resnet18-f37072fd.pth" in err and str(tmp_path / "empty-torch-home") in err

    assert (
        main(["embed-tune", model, "--class", "c1", *judge, "-o", str(folder / "missing" / "x.safetensors"), *FAST_CLI])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists() and sorted(p.name for p in folder.iterdir()) == [
        "judge.safetensors",
        "labels.txt",
        "model.safetensors",
        "short.txt",
    ]


def test_cli_without_lpips_weights_says_so_or_stops(cli_files, capsys, monkeypatch, tmp_path):
    """The default LPIPS missing offline: the run goes on without it and says why; asked for by name, it stops."""
    folder = cli_files
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("GANEDIT_OFFLINE", "1")
    judge = ["--classifier", str(folder / "judge.safetensors"), "--labels", str(folder / "labels.txt")]
    args = ["embed-tune", str(folder / "model.safetensors"), "--class", "c1", *judge, *FAST_CLI]
    assert main([*args, "-o", str(folder / "out.safetensors"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["perceptual_distance"] is None and "alexnet-owt-7be5be79.pth" in report["perceptual_note"]
    assert report["classes"][0]["after"]["mean_pairwise_perceptual"] is None
    assert main([*args, "-o", str(folder / "out.safetensors")]) == 0
    table = capsys.readouterr().out
    assert "no mean pairwise LPIPS in the report" in table and "alexnet-owt-7be5be79.pth" in table
    assert "mean pairwise" not in table.split("no mean pairwise")[0]  # no column of missing numbers
    saved = ganedit.load_model(folder / "out.safetensors").metadata["provenance"]["evaluation"]
    assert saved["perceptual_distance"] is None

    for extra in (["--lpips", "lpips-alex"], ["--lpips", "off", "--diversity", "alexnet-conv5"]):
        assert main([*args, *extra, "-o", str(folder / "stopped.safetensors")]) == 2
        err = capsys.readouterr().err
        assert "alexnet-owt-7be5be79.pth" in err and str(tmp_path / "empty-torch-home") in err
        assert len(err.strip().splitlines()) == 1
    assert not (folder / "stopped.safetensors").exists()


# --- speed options: precision, compile, starts_per_batch ----------------------------------------------


def one_step_inputs(generator, n=4):
    embeddings = generator.class_embeddings.detach()[:3].clone()
    z = et.round_latents(generator, 1, 3, n, 0, 1.0)[0]
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    labels = torch.tensor([0, 1, 2]).repeat_interleave(n)
    pairs = et.pair_indices(1, 1, n, 0)[0, 0]
    return embeddings, z, labels, lo, hi, pairs


@pytest.mark.parametrize("space", ["softmax", "features", "pixels"])
def test_bf16_loss_and_gradient_are_close_to_fp32(generator, judge, space):
    embeddings, z, labels, lo, hi, pairs = one_step_inputs(generator)
    losses, gradients = {}, {}
    for precision in et.PRECISIONS:
        e = embeddings.clone().requires_grad_(True)
        with et.frozen(generator):
            loss = et.am_loss(generator, judge, e, z, labels, lo, hi, 1.0, space, 0.3, pairs, precision)
            loss.sum().backward()
        assert loss.dtype == torch.float32 and e.grad.dtype == torch.float32  # the loss is reduced in fp32
        losses[precision], gradients[precision] = loss.detach(), e.grad
    torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=0.05, atol=0.05)
    cosine = F.cosine_similarity(gradients["bf16"], gradients["fp32"], dim=1)
    assert (cosine > 0.99).all(), cosine


def test_bf16_run_records_its_precision_and_evaluates_close_to_fp32(generator, judge):
    runs = {precision: tune(generator, judge, [1], precision=precision, **FAST) for precision in et.PRECISIONS}
    assert runs["bf16"].parameters["precision"] == "bf16" and runs["fp32"].parameters["compile"] is False
    assert runs["bf16"].embeddings.dtype == torch.float32
    before = {precision: run.reports[0].before.probability for precision, run in runs.items()}
    assert before["bf16"] == pytest.approx(before["fp32"], abs=0.05)  # same embedding, scored in bf16


def test_starts_per_batch_changes_nothing_but_the_batching(generator, judge):
    init = generator.class_embeddings.detach()[[0, 2, 3, 4]] * 1.2
    targets = torch.tensor([1, 1, 4, 4])
    lo, hi = et.embedding_bounds(generator.class_embeddings.detach())
    settings = dict(rounds=2, steps=2, batch_size=4, lr=0.05, weight_decay=0.9, diversity="softmax")
    settings.update(diversity_weight=0.3, truncation=1.0, seed=3)
    calls = []
    with et.frozen(generator):
        together = et.optimise(generator, judge, init, targets, lo, hi, **settings)
        apart = et.optimise(
            generator, judge, init, targets, lo, hi, starts_per_batch=2, progress=lambda *a: calls.append(a), **settings
        )
    torch.testing.assert_close(apart, together, atol=1e-5, rtol=1e-5)
    assert calls == [(2, 8), (4, 8), (6, 8), (8, 8)]


def test_speed_options_are_checked(generator, judge):
    with pytest.raises(GaneditError, match="--precision must be one of fp32, bf16; got 'fp16'"):
        tune(generator, judge, [1], precision="fp16", **FAST)
    with pytest.raises(GaneditError, match="--starts-per-batch must be at least 1"):
        tune(generator, judge, [1], starts_per_batch=0, **FAST)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile takes minutes on a CPU")
def test_compiled_loss_matches_eager_and_compiles_once():
    from torch._dynamo.utils import counters

    generator = tiny_generator().cuda()
    judge = colour_judge(CLASS_NAMES + ["new0", "new1"]).cuda()
    assert et.compiled_am_loss() is et.compiled_am_loss()  # one wrapper per process
    runs = [tune(generator, judge, [1, 4], compile=compile, **FAST) for compile in (False, True)]
    torch.testing.assert_close(runs[1].embeddings, runs[0].embeddings, atol=1e-4, rtol=1e-4)
    assert runs[1].parameters["compile"] is True
    graphs = counters["stats"]["unique_graphs"]
    tune(generator, judge, [2, 3], compile=True, **FAST)  # same models and shapes: no new compilation
    assert counters["stats"]["unique_graphs"] == graphs
