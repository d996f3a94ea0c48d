"""`ganedit unlearn --negatives DIR` with nothing else, on the toy world: the detector learned from the
folder replaces the classifier (ganedit.judges.detector).

The paper's protocol: the negatives are 30 of the model's own samples that show the feature, picked for
the test by the toy oracle, which the procedure never sees. The same command's judged path (`--feature
star`, the oracle filtering and mining) runs at the same settings (the packaged toy recipe, seed 0), and
the oracle counts both results' PUL on the same 500 fixed latents. Measured, star: detector path PUL 95.1 %
(fd_oracle vs the original's positives 3.0 -> 36.4), judged path 63.4 % (3.0 -> 20.4); against 1,000 real
rendered positives (the quality budget's measure) the detector path's toy fd is 32-42 (it varies with the
thread count's float order) against the judged path's 27.8 (original 8.3): the detector's stricter
positives filter leaves out star-like samples too, so it unlearns more at a higher quality cost. With a
looser filter (recall 0.95): PUL 80.5 %, toy fd 31.5. The detector's precision /
recall against the oracle on 1,000 model samples: star 0.52 / 0.82, red 1.0 / 0.94 (toy-clip's space
tells colours apart far better than the toy generator's blob-like shapes).

Those star figures are one seed's, and one seed's star PUL moves by about +-20 points with the seed or with
the float order (seeds 0-2 at 250 steps, one thread: detector 48.8 / 90.2 / 87.8 %, judged 56.1 / 48.8 /
70.7 %; after the training step's switch to the unfused modulated convolution, seed 0: detector 51.2 %,
judged 90.2 %). So the star comparison is of the means over seeds 0-2, within MAX_PUL_SHORTFALL.
"""

import json

import pytest
import torch
from helpers import write_images
from test_toy_unlearn import real_fid

import ganedit
from ganedit.cli import main
from ganedit.generators.sampling import generate, sample_latents
from ganedit.judges import load_judge, resolve_label
from ganedit.judges.clip import load_clip
from ganedit.judges.detector import from_state
from ganedit.procedures.unlearn import evaluate_unlearning, mine_negatives
from ganedit.toy.oracle import load_oracle

EVAL = 500
MAX_PUL_SHORTFALL = 20.0  # the detector path's mean PUL may be at most this many points below the judged path's
# (one run's star PUL spreads over 12-93 % across seeds 0-2, so a 3-seed mean has a standard error of about
# 15 points: the test shows the detector path is not measurably worse, not that it is as good; measured in CI,
# 2 workers: detector 51.2 / 12.2 / 92.7, mean 52.0; judged 90.2 / 29.3 / 75.6, mean 65.0)
QUALITY_BUDGET = 1.6  # its toy fd_oracle vs real positives at most this times the judged path's
MIN_PRECISION = {"star": 0.4, "red": 0.9}
MIN_RECALL = {"star": 0.75, "red": 0.85}


@pytest.fixture(scope="module")
def toy():
    return ganedit.load_generator("toy-stylegan2")


def folder_of_model_samples(G, tmp_path, attribute: str, label: str, count: int = 30):
    judge = load_judge(f"toy:{attribute}")
    images = mine_negatives(G, judge, resolve_label(judge, label), count, seed=99)
    return write_images(tmp_path / f"{label}s", images)


def run(args: list[str], capsys) -> dict:
    code = main([*args, "--json", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(("attribute", "label", "seeds"), [("shape", "star", (0, 1, 2)), ("colour", "red", (0,))])
def test_a_folder_of_negatives_alone_unlearns_as_well_as_the_judged_path(toy, tmp_path, capsys, attribute, label,
                                                                          seeds):  # fmt: skip
    """Means over `seeds` of both paths: one run's star PUL moves by +-20 points with the seed (or the float
    order of another thread count), more than the margin, while red's is stable."""
    folder = folder_of_model_samples(toy, tmp_path, attribute, label)
    oracle_judge = load_judge(f"toy:{attribute}")
    feature = resolve_label(oracle_judge, label)
    oracle = load_oracle()
    pul, fd = {"detected": [], "judged": []}, {"detected": [], "judged": []}
    for seed in seeds:
        for name, what in (("detected", ["--negatives", str(folder)]), ("judged", ["--feature", label])):
            output = tmp_path / f"{name}-{seed}.safetensors"
            report = run(["unlearn", *what, "--seed", str(seed), "-o", str(output)], capsys)
            if name == "detected":
                assert report["judge"].startswith("detector(") and "detector" in report["pul_counted_by"]
            else:
                assert report["judge"].startswith("toy-oracle") and "pul_counted_by" not in report
            after = ganedit.load_generator(output)
            pul[name].append(evaluate_unlearning(toy, after, oracle_judge, feature, EVAL, seed=0)["pul"])
            fd[name].append(real_fid(after, oracle, attribute, label))
    mean = {name: sum(values) / len(values) for name, values in pul.items()}
    assert mean["detected"] >= mean["judged"] - MAX_PUL_SHORTFALL, pul
    assert sum(fd["detected"]) <= QUALITY_BUDGET * sum(fd["judged"]), fd

    # the detector as saved in the model's provenance, against the oracle on 1,000 of the model's samples
    provenance = ganedit.load_model(tmp_path / "detected-0.safetensors").metadata["provenance"]
    state = provenance["parameters"]["detector"]
    assert len(state["negative_scores"]) == 30 and state["topped_up"] > 0
    detector = from_state(state, load_clip("toy-clip"))
    images = generate(toy, sample_latents(toy, 1000, seed=7))
    truth = oracle_judge(images).argmax(dim=1) == feature
    flagged = detector(images).argmax(dim=1) == 1
    precision = float((truth & flagged).sum() / flagged.sum())
    recall = float((truth & flagged).sum() / truth.sum())
    assert precision >= MIN_PRECISION[label] and recall >= MIN_RECALL[label], (precision, recall)


def test_bad_folders_are_one_line_errors_with_no_output(toy, tmp_path, capsys):
    few = write_images(tmp_path / "few", generate(toy, sample_latents(toy, 5, seed=3)))
    code = main(["unlearn", "--negatives", str(few), "-o", str(tmp_path / "a.safetensors"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "at least 8" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.safetensors").exists()

    # the model's own random samples: nothing a detector could learn
    random = write_images(tmp_path / "random", generate(toy, sample_latents(toy, 30, seed=4)))
    code = main(["unlearn", "--negatives", str(random), "--detector-pool", "300", "-o", str(tmp_path / "b.safetensors"),
                 "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "cannot tell" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b.safetensors").exists()


def test_rendered_images_across_the_domain_gap_are_warned_about(toy, tmp_path, capsys):
    """Crisp rendered stars lie far from the toy generator's blob-like stars in toy-clip's space; the
    command says so (measured gap 2.3x, against 0.7x for the model's own samples)."""
    from ganedit.toy import world

    rendered = world.sample(30, torch.Generator().manual_seed(3), shapes=["star"]).images
    folder = write_images(tmp_path / "rendered", rendered)
    code = main(["unlearn", "--negatives", str(folder), "--adapt-steps", "1", "--steps", "1", "--eval-samples", "16",
                 "--detector-pool", "300", "-o", str(tmp_path / "r.safetensors")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "lie far from the model's own samples" in " ".join(err.split())


def test_sample_showing_writes_the_models_own_examples_of_a_feature(tmp_path, capsys):
    """README's `ganedit sample toy-stylegan2 -n 30 --showing star --judge toy --out-dir stars/`."""
    from ganedit.engine.sources import load_image_folder

    report = run(["sample", "toy-stylegan2", "-n", "12", "--showing", "star", "--judge", "toy",
                  "--out-dir", str(tmp_path / "stars")], capsys)  # fmt: skip
    assert report["images"] == 12 and len(report["written"]) == 12
    images = load_image_folder(tmp_path / "stars", 32, dtype=torch.float32)
    oracle_judge = load_judge("toy:shape")
    assert bool((oracle_judge(images).argmax(dim=1) == resolve_label(oracle_judge, "star")).all())
    code = main(["sample", "toy-stylegan2", "-n", "4", "--showing", "star", "--out-dir", str(tmp_path / "x")])
    assert code == 2 and "go together" in capsys.readouterr().err
