"""`ganedit eval`, the standard metrics through torch-fidelity, gates and --fid-against.

torch-fidelity runs for real on an InceptionV3 with random weights saved locally (no download): its
architecture, its loading path, its TF-style resize and its metric functions are the ones published
figures come from; only the weights differ. Agreement with torch-fidelity's own `calculate_metrics` on
the same images: relative error at most RELATIVE_TOLERANCE for FID, KID and IS (measured: equal to the
last printed digit, the same features in the same batches).
"""

import json
from unittest import mock

import pytest
import torch

from ganedit.cli import main
from ganedit.generators.sampling import to_uint8
from ganedit.judges import fidelity
from ganedit.toy import world

RELATIVE_TOLERANCE = 1e-4
FAST_UNLEARN = ["--feature", "star", "--method", "extrapolate", "--gamma", "2", "--adapt-steps", "2",
                "--adapted-models", "1", "--eval-samples", "60", "--device", "cpu", "-q"]  # fmt: skip


def draw(n: int, seed: int) -> world.ToyBatch:
    return world.sample(n, torch.Generator().manual_seed(seed))


def random_inception(path, seed):
    """torch-fidelity's InceptionV3 with random weights (He-initialised, so features neither vanish nor explode)."""
    import torch_fidelity.feature_extractor_inceptionv3 as module

    torch.manual_seed(seed)
    with (
        mock.patch.object(module, "load_state_dict_from_url", lambda *a, **k: None),
        mock.patch.object(module.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None),
    ):
        network = module.FeatureExtractorInceptionV3(fidelity.EXTRACTOR, ["2048"])
    for layer in network.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.5)
            torch.nn.init.zeros_(layer.bias)
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_inception(tmp_path_factory.mktemp("inception") / "random-inception.pth", 0)


@pytest.fixture(autouse=True)
def empty_torch_cache(tmp_path, monkeypatch):
    """No real cached Inception weights are found, and none is downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, expected_code=2):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code and len(lines) == 1 and lines[0].startswith("ganedit: error:"), (code, err)
    return lines[0]


def test_fid_kid_is_equal_torch_fidelitys_calculate_metrics(weights, tmp_path):
    import torch_fidelity

    generated, real = draw(40, 1).images, draw(40, 2).images
    inception = fidelity.load_inception(weights)
    pool, logits = inception(generated)
    stats = fidelity.load_stats(
        fidelity.save_stats(tmp_path / "real.stats", fidelity.reference_from_images(inception, real, "real")), inception
    )
    ours = fidelity.standard_metrics(["fid", "kid", "is"], pool, logits, stats)

    class Images(torch.utils.data.Dataset):
        def __init__(self, images):
            self.images = to_uint8(images)

        def __len__(self):
            return len(self.images)

        def __getitem__(self, index):
            return self.images[index]

    theirs = torch_fidelity.calculate_metrics(
        input1=Images(generated), input2=Images(real), fid=True, kid=True, isc=True, kid_subset_size=40,
        feature_extractor_weights_path=str(weights), cuda=False, cache=False, verbose=False,
    )  # fmt: skip
    assert ours["kid_subset_size"] == 40
    pairs = {"fid": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
             "is": "inception_score_mean"}  # fmt: skip
    for ours_key, their_key in pairs.items():
        assert ours[ours_key] == pytest.approx(theirs[their_key], rel=RELATIVE_TOLERANCE), (ours, theirs)
    assert ours["fid"] > 0 and ours["is"] > 1  # the random Inception still tells two image sets apart


def test_precision_recall_and_density_coverage_match_hand_computed_values():
    real = torch.tensor([[0.0, 0], [1, 0], [2, 0], [3, 0], [4, 0]])
    fake = torch.tensor([[0.5, 0], [1.5, 0], [10, 0], [11, 0], [12, 0]])
    scores = fidelity.standard_metrics(["prc"], fake, None, fidelity.ReferenceStats(real, "points", {}))
    # k = 3: real radii 3, 2, 2, 2, 3 -> fakes 0.5 and 1.5 inside (precision 2/5); fake radii 10.5, 9.5,
    # 8.5, 9.5, 10.5 -> every real inside one (recall 1).
    assert scores == {"precision": pytest.approx(0.4), "recall": pytest.approx(1.0)}
    # k = 2: real radii 2, 1, 1, 1, 2 (strict <): fake 0.5 lies in 2 balls, 1.5 in 3 -> density 5 / (2 x 5);
    # reals 0, 1, 2 have a fake inside -> coverage 3 / 5.
    assert fidelity.density_coverage(fake, real, k=2) == {"density": pytest.approx(0.5), "coverage": pytest.approx(0.6)}


def test_eval_reproduces_unlearns_figures_and_gates_exit_3_with_the_files_written(tmp_path, capsys):
    output = tmp_path / "no-star.safetensors"
    code, out, err = cli(capsys, "unlearn", *FAST_UNLEARN, "-o", output, "--json", "--fail-under", "pul=101")
    assert code == 3 and output.is_file(), err
    assert "gate missed: pul" in err and "--fail-under pul=101" in err
    reported = json.loads(out)
    code, out, err = cli(capsys, "eval", output, "--against", "toy-stylegan2", "--judge", "toy", "--feature",
                         "star", "--json", "-q", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["samples"] == reported["samples"] == 60  # the recipe's eval_samples, read from the model
    figures = evaluated["figures"]
    assert figures["pul"]["value"] == pytest.approx(reported["pul"], nan_ok=True)
    assert figures["negatives_before"]["value"] == reported["negatives_before"]
    assert figures["negatives_after"]["value"] == reported["negatives_after"]
    assert figures["fd_oracle"]["value"] == pytest.approx(reported["fd_oracle_after"], rel=1e-6)
    assert figures["fd_oracle_before"]["value"] == pytest.approx(reported["fd_oracle_before"], rel=1e-6)
    assert figures["kd_oracle"]["value"] == pytest.approx(reported["kd_oracle_after"], rel=1e-6, abs=1e-9)
    assert "fid_after" not in reported  # judge-space distances are never called FID
    code, _, err = cli(capsys, "eval", output, "--against", "toy-stylegan2", "--judge", "toy", "--feature", "star",
                       "-q", "--fail-over", f"fd_oracle={figures['fd_oracle']['value'] / 2}")  # fmt: skip
    assert "gate missed: fd_oracle" in one_line_error(code, err, 3)


def test_eval_with_standard_metrics_saves_stats_and_gates_after_writing(weights, tmp_path, capsys):
    from ganedit.generators.sampling import save_each

    folder = tmp_path / "real"
    folder.mkdir()
    save_each(draw(12, 3).images, folder, [str(i) for i in range(12)])
    stats = tmp_path / "real.stats.safetensors"
    code, out, err = cli(capsys, "eval", "toy-stylegan2", "--against", folder, "--samples", 12, "--inception-weights",
                         weights, "--save-stats", stats, "--json", "-q", "--fail-over", "fid=0")  # fmt: skip
    assert "gate missed: fid" in one_line_error(code, err, 3)
    assert stats.is_file()
    figures = json.loads(out)["figures"]
    assert set(figures) >= {"fid", "kid", "precision", "recall", "density", "coverage"}
    assert figures["fid"]["samples"] == 12 and figures["fid"]["reference"].startswith("12 images")
    assert "inception-v3-compat" in figures["fid"]["feature_space"]
    code, out, err = cli(capsys, "eval", "toy-stylegan2", "--against", stats, "--samples", 12, "--metrics", "fid",
                         "--inception-weights", weights, "--json", "-q")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["figures"]["fid"]["value"] == pytest.approx(figures["fid"]["value"], rel=1e-6)
    other = random_inception(tmp_path / "other.pth", 1)
    line = one_line_error(*cli(capsys, "eval", "toy-stylegan2", "--against", stats, "--metrics", "fid",
                               "--inception-weights", other, "-q")[::2])  # fmt: skip
    assert "another feature extractor" in line and "weights_sha256" in line


def test_bad_input_is_one_line_and_exit_2(weights, tmp_path, capsys):
    from ganedit.generators.sampling import save_each

    line = one_line_error(*cli(capsys, "eval", "toy-stylegan2", "--metrics", "fid,sharpness", "-q")[::2])
    assert "unknown metric 'sharpness'" in line
    folder = tmp_path / "three"
    folder.mkdir()
    save_each(draw(3, 4).images, folder, ["a", "b", "c"])
    line = one_line_error(*cli(capsys, "eval", "toy-stylegan2", "--against", folder, "--metrics", "prc",
                               "--inception-weights", weights, "-q")[::2])  # fmt: skip
    assert "has 3 images; prc needs at least 4" in line
    line = one_line_error(*cli(capsys, "eval", "toy-stylegan2", "--against", "toy-stylegan2", "--judge", "toy",
                               "--feature", "star", "--fail-over", "fid=10", "-q")[::2])  # fmt: skip
    assert "gate on fid: not computed" in line
    output = tmp_path / "never.safetensors"
    line = one_line_error(*cli(capsys, "unlearn", *FAST_UNLEARN, "-o", output, "--fail-over", "fid=10")[::2])
    assert "--fid-against" in line and not output.exists()  # refused before any work
    line = one_line_error(*cli(capsys, "eval", "toy-stylegan2", "--metrics", "is", "--offline", "-q")[::2])
    assert "weights-inception-2015-12-05-6726825d.pth" in line and "--inception-weights" in line


def test_fid_against_adds_inception_fid_before_and_after_to_unlearns_report(weights, tmp_path, capsys):
    from ganedit.generators.sampling import save_each

    folder = tmp_path / "real"
    folder.mkdir()
    save_each(draw(8, 5).images, folder, [str(i) for i in range(8)])
    output = tmp_path / "out.safetensors"
    code, out, err = cli(capsys, "unlearn", *FAST_UNLEARN, "-o", output, "--json", "--fid-against", folder,
                         "--inception-weights", weights)  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["fid_samples"] == 8 and report["fid_before"] > 0 and report["fid_after"] > 0
    assert report["fid_before"] != report["fid_after"]
