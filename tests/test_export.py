"""`ganedit export`: every format reads back into ganedit with the model's outputs, holds exactly what the reference
code's own checkpoints hold, loads in pytorch-pretrained-biggan itself; bad input is one line and leaves nothing."""

import argparse
import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import ganedit
from ganedit.cli import main
from ganedit.store.atomic import OutputError

pytestmark = pytest.mark.usefixtures("one_thread")

TOLERANCE = 1e-4  # float32 on the CPU, the conformance data's bound
TINY_EMBED_TUNE = ["--class", "heart", "--judge", "toy", "--starts", 1, "--rounds", 1, "--steps", 1, "--batch-size", 2,
                   "--holdout", 4, "--device", "cpu", "-q"]  # fmt: skip


def cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganedit: error: "), err
    return lines[0]


def stylegan2_outputs(bundle) -> dict[str, torch.Tensor]:
    """Images at psi 1 and 0.7 (the truncation centre), constant noise, and the discriminator's logits."""
    generator, discriminator = bundle.generator, bundle.discriminator
    z = torch.randn(4, generator.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.eye(generator.c_dim)[torch.arange(4) % generator.c_dim] if generator.c_dim else None
    with torch.no_grad():
        outputs = {"img_psi1": generator(z, c), "img_psi0.7": generator(z, c, truncation_psi=0.7)}
        if discriminator is not None:
            outputs["d_logits"] = discriminator(outputs["img_psi1"], c)
    return outputs


def assert_same_outputs(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
    assert found.keys() == expected.keys()
    for key, tensor in expected.items():
        error = (found[key] - tensor).abs().max().item()
        assert found[key].dtype == torch.float32 and error < TOLERANCE, f"{key}: max abs error {error:.2e}"


def assert_subset(recorded: dict, written: dict) -> None:
    """Every constructor argument NVIDIA's code recorded is in the written ones, with its value."""
    for key, value in recorded.items():
        if isinstance(value, dict):
            assert_subset(value, written[key])
        else:
            assert written[key] == value, key


def rosinality_file(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):  # the reference's training checkpoints hold args
        return torch.load(path, weights_only=True)


def folder_listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------------
# rosinality


def test_toy_stylegan2_to_rosinality_reads_back_with_its_outputs(tmp_path):
    output = tmp_path / "toy.pt"
    exported = ganedit.export_model("toy-stylegan2", "rosinality", output)
    assert exported.written == [output] and exported.discriminator
    checkpoint = torch.load(output, weights_only=True)  # plain tensors, no Namespace
    assert set(checkpoint) == {"g_ema", "latent_avg", "g", "d"}
    assert all(isinstance(tensor, torch.Tensor) for part in ("g_ema", "g", "d") for tensor in checkpoint[part].values())
    original, read_back = ganedit.load_model("toy-stylegan2"), ganedit.load_model(output)
    assert read_back.format == "stylegan2 (rosinality .pt)" and read_back.discriminator is not None
    assert_same_outputs(stylegan2_outputs(original), stylegan2_outputs(read_back))
    assert any("channel table" in note for note in exported.notes)  # its widths are not rosinality's table
    again = ganedit.export_model(original, "rosinality", tmp_path / "from-bundle.pt")  # a loaded model, too
    assert_same_outputs(stylegan2_outputs(original), stylegan2_outputs(ganedit.load_model(again.output)))


def test_the_reference_checkpoint_exports_to_its_own_keys_shapes_and_tensors(conformance_dir, tmp_path, capsys):
    source, output = conformance_dir / "rosinality-sg2-tiny.pt", tmp_path / "again.pt"
    code, out, err = cli(capsys, "export", source, "--to", "rosinality", "-o", output, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["written"] == [str(output)] and report["discriminator"] and "Generator(32, 64, 2" in report["load"]
    original, exported = rosinality_file(source), torch.load(output, weights_only=True)
    assert set(exported) == {"g_ema", "latent_avg", "g", "d"} <= set(original)
    for part in ("g_ema", "d", "g"):
        assert {key: list(t.shape) for key, t in exported[part].items()} == {
            key: list(t.shape) for key, t in original[part].items()
        }, part
    for part in ("g_ema", "d"):  # ganedit keeps g_ema (its generator) and d; g is written as g_ema's tensors
        assert all(torch.equal(exported[part][key], original[part][key]) for key in original[part]), part
    assert all(torch.equal(exported["g"][key], original["g_ema"][key]) for key in original["g_ema"])
    assert torch.equal(exported["latent_avg"], original["latent_avg"])
    expected = load_file(conformance_dir / "rosinality-sg2-tiny.expected.safetensors")
    read_back = ganedit.load_model(output)
    with torch.no_grad():
        images = {psi: read_back.generator(expected["z"], truncation_psi=float(psi)) for psi in ("1", "0.7")}
        logits = read_back.discriminator(expected["d_input"])
    for psi, image in images.items():  # what rosinality's own code computed
        assert (image - expected[f"img_psi{psi}"]).abs().max() < TOLERANCE
    assert (logits - expected["d_logits"]).abs().max() < TOLERANCE


def test_an_nvidia_model_to_rosinality_reads_back_with_its_outputs(conformance_dir, tmp_path):
    source, output = conformance_dir / "nvidia-sg2-tiny.pkl", tmp_path / "from-nvidia.pt"
    exported = ganedit.export_model(source, "rosinality", output)
    assert any("conv_clamp 256" in note for note in exported.notes)
    assert set(torch.load(output, weights_only=True)) == {"g_ema", "latent_avg", "g", "d"}
    assert_same_outputs(stylegan2_outputs(ganedit.load_model(source)), stylegan2_outputs(ganedit.load_model(output)))
    expected = load_file(conformance_dir / "nvidia-sg2-tiny.expected.safetensors")
    with torch.no_grad():
        image = ganedit.load_generator(output)(expected["z"], None, truncation_psi=0.7)
    assert (image - expected["img_psi0.7"]).abs().max() < TOLERANCE  # what NVIDIA's own code computed


# ---------------------------------------------------------------------------------------------------
# nvidia-state


@pytest.mark.parametrize("name", ["nvidia-sg2-tiny", "nvidia-sg2-tiny-c2"])
def test_nvidia_models_to_nvidia_state_hold_nvidias_own_state_and_read_back(conformance_dir, tmp_path, name):
    source, output = conformance_dir / f"{name}.pkl", tmp_path / f"{name}.safetensors"
    exported = ganedit.export_model(source, "nvidia-state", output)
    side = output.with_suffix(".json")
    assert exported.written == [output, side]
    # The tensors of NVIDIA's G_ema.state_dict() and D.state_dict() as NVIDIA's code wrote them, exactly.
    reference = load_file(conformance_dir / f"{name}.state.safetensors")
    tensors = load_file(output)
    assert tensors.keys() == reference.keys()
    assert all(torch.equal(tensors[key], reference[key]) for key in reference)
    with safe_open(str(output), "pt") as stream:
        metadata = {key: json.loads(value) for key, value in stream.metadata().items()}
    with safe_open(str(conformance_dir / f"{name}.state.safetensors"), "pt") as stream:
        recorded = {key: json.loads(value) for key, value in stream.metadata().items()}
    assert metadata.keys() == recorded.keys() == {"G_ema_init_kwargs", "D_init_kwargs"}
    for key in recorded:  # what NVIDIA's training script passed, plus what it left to the defaults
        assert_subset(recorded[key], metadata[key])
    document = json.loads(side.read_text())
    assert {key: document[key] for key in metadata} == metadata and document["tensors"] == output.name
    assert 'Generator(**kwargs["G_ema_init_kwargs"])' in exported.load
    original, read_back = ganedit.load_model(source), ganedit.load_model(output)
    assert read_back.format == "stylegan2 (nvidia state .safetensors)"
    assert read_back.generator.config == original.generator.config
    assert read_back.discriminator.config == original.discriminator.config
    assert_same_outputs(stylegan2_outputs(original), stylegan2_outputs(read_back))


@pytest.mark.parametrize("name", ["nvidia-sg2-tiny", "nvidia-sg2-tiny-c2"])
def test_ganedit_reads_nvidias_own_state_files(conformance_dir, name):
    """The reader builds the networks from the init kwargs NVIDIA's code recorded (its defaults for the rest)."""
    bundle = ganedit.load_model(conformance_dir / f"{name}.state.safetensors")
    expected = load_file(conformance_dir / f"{name}.expected.safetensors")
    c = expected["c"] if expected["c"].numel() else None
    with torch.no_grad():
        assert (bundle.generator(expected["z"], c) - expected["img_psi1"]).abs().max() < TOLERANCE
        assert (bundle.generator(expected["z"], c, 0.7) - expected["img_psi0.7"]).abs().max() < TOLERANCE
        assert (bundle.discriminator(expected["d_input"], c) - expected["d_logits"]).abs().max() < TOLERANCE


# ---------------------------------------------------------------------------------------------------
# biggan-folder


@pytest.fixture(scope="module")
def heart_models(conformance_dir, tmp_path_factory) -> dict[str, Path]:
    """The reference BigGAN-deep (20 classes) and the toy BigGAN (9), each after a tiny embed-tune appended the
    toy judge's `heart`. The toy BigGAN's first block is narrower than the package builds: it is exported
    widened with zero channels (ganedit.generators.formats.biggan.package_layout)."""
    folder = tmp_path_factory.mktemp("heart")
    models = {}
    for name, model in (("reference", str(conformance_dir / "biggan-deep-tiny")), ("toy", "toy-biggan")):
        models[name] = folder / f"{name}-heart.safetensors"
        assert main(["embed-tune", model, *map(str, TINY_EMBED_TUNE), "-o", str(models[name])]) == 0
    return models


def biggan_package_model(folder: Path):
    """The folder as pytorch-pretrained-biggan loads it, after checking that its weights are exactly the keys
    and shapes of the package's model (from_pretrained loads non-strictly and would hide a mismatch)."""
    package = pytest.importorskip("pytorch_pretrained_biggan")
    model = package.BigGAN.from_pretrained(str(folder)).eval()
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert {key: list(t.shape) for key, t in weights.items()} == {
        key: list(t.shape) for key, t in model.state_dict().items()
    }
    return model


def biggan_images(model, classes: list[int], num_classes: int, truncation: float) -> torch.Tensor:
    z = torch.randn(len(classes), 128, generator=torch.Generator().manual_seed(1)).clamp(-2, 2) * truncation
    with torch.no_grad():
        return model(z, torch.eye(num_classes)[classes], truncation)


@pytest.mark.parametrize("which, classes", [("reference", 21), ("toy", 10)])
def test_an_embed_tuned_biggan_loads_in_pytorch_pretrained_biggan_with_its_images(heart_models, tmp_path, capsys,
                                                                                  which, classes):  # fmt: skip
    heart_model, folder = heart_models[which], tmp_path / "heart-biggan"
    code, out, err = cli(capsys, "export", heart_model, "--to", "biggan-folder", "-o", folder, "--json")
    assert code == 0, err
    names = ["config.json", "pytorch_model.bin", "class_names.json"]
    assert json.loads(out)["written"] == [str(folder / name) for name in names]
    assert folder_listing(folder) == sorted(names)
    config = json.loads((folder / "config.json").read_text())
    assert config["num_classes"] == classes and config["layers"][0][1] == 16
    assert json.loads((folder / "class_names.json").read_text())[-1] == "heart"
    ours, package = ganedit.load_model(heart_model), biggan_package_model(folder)
    drawn = [0, 7, classes - 1, classes - 1]  # the last: the appended heart
    for truncation in (1.0, 0.5):
        expected = biggan_images(ours.generator, drawn, classes, truncation)
        error = (biggan_images(package, drawn, classes, truncation) - expected).abs().max().item()
        assert error < TOLERANCE, f"t={truncation}: max abs error {error:.2e}"
        assert expected.std() > 0.1  # real images, not a blank the zero channels could also agree on
    read_back = ganedit.load_model(folder)
    assert read_back.class_names == ours.class_names
    images = [biggan_images(bundle.generator, drawn, classes, 1.0) for bundle in (ours, read_back)]
    assert (images[0] - images[1]).abs().max() < TOLERANCE


def test_a_narrow_first_block_is_widened_with_zeros_only():
    """The toy BigGAN widened for the package holds its own tensors in the leading corner, and zeros around."""
    from ganedit.generators.formats.biggan import package_layout
    from ganedit.generators.formats.bundle import plain_state

    generator = ganedit.load_generator("toy-biggan")
    config, state = package_layout(generator)
    own = plain_state(generator)
    assert [layer[1:] for layer in config["layers"][:3]] == [[16, 8], [8, 4], [4, 4]]
    assert state.keys() == own.keys()
    widened = [key for key in own if state[key].shape != own[key].shape]
    assert widened and all(key.startswith(("generator.gen_z.", "generator.layers.0.", "generator.layers.1."))
                           for key in widened)  # fmt: skip
    for key in widened:
        wide, small = state[key], own[key]
        if key.startswith("generator.gen_z."):  # its outputs are position-major: 16 positions x channels
            wide, small = wide.view(16, -1, *wide.shape[1:]), small.view(16, -1, *small.shape[1:])
        corner = tuple(slice(0, size) for size in small.shape)
        assert torch.equal(wide[corner], small), key
        rest = wide.clone()
        rest[corner] = 1.0 if key.endswith("running_vars") else 0.0
        assert torch.all(rest == (1.0 if key.endswith("running_vars") else 0.0)), key


def test_the_reference_biggan_folder_exports_to_itself(conformance_dir, tmp_path):
    source, folder = conformance_dir / "biggan-deep-tiny", tmp_path / "again"
    exported = ganedit.export_model(source, "biggan-folder", folder)
    assert exported.written == [folder / "config.json", folder / "pytorch_model.bin"]  # 20 unnamed classes
    assert json.loads((folder / "config.json").read_text()) == json.loads((source / "config.json").read_text())
    original, weights = (torch.load(path / "pytorch_model.bin", weights_only=True) for path in (source, folder))
    assert weights.keys() == original.keys() and all(torch.equal(weights[key], original[key]) for key in original)
    package = biggan_package_model(folder)
    expected = load_file(source / "expected.safetensors")
    onehot = expected["onehot"]
    for truncation in ("1.0", "0.4", "0.5"):
        t = float(truncation)
        with torch.no_grad():
            ours = ganedit.load_generator(folder)(expected["z"] * t, onehot, t)
            theirs = package(expected["z"] * t, onehot, t)
        assert (theirs - ours).abs().max() < TOLERANCE
        assert (theirs - expected[f"img_onehot_t{truncation}"]).abs().max() < TOLERANCE


# ---------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, nothing written


@pytest.mark.parametrize(
    "model, to, output, message",
    [
        ("toy-biggan", "rosinality", "out.pt", "rosinality holds a StyleGAN2 and this is a BigGAN-deep"),
        ("toy-stylegan2", "biggan-folder", "out", "biggan-folder holds a BigGAN-deep and this is a StyleGAN2"),
        ("nvidia-sg2-tiny-c2.pkl", "rosinality", "c2.pt", "conditional (2 classes); export it with --to nvidia-state"),
        ("toy-stylegan2", "nvidia-state", "out.safetensors", "widths [64, 64, 48, 32]"),
        ("toy-stylegan2", "nvidia-state", "out.pt", "give a file name ending in .safetensors"),
        ("toy-stylegan2", "rosinality", "a-folder", "it is a folder"),
        ("toy-biggan", "biggan-folder", "a-file", "it is a file"),
        ("toy-stylegan2", "pickle", "out.pkl", "'pickle' is not one of"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_leaves_nothing(request, tmp_path, capsys, model, to, output, message):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("not a model")
    before = folder_listing(tmp_path)
    model = request.getfixturevalue("conformance_dir") / model if model.endswith(".pkl") else model
    code, out, err = cli(capsys, "export", model, "--to", to, "-o", tmp_path / output)
    assert code == 2 and out == ""
    assert message in one_line_error(err)
    assert folder_listing(tmp_path) == before and (tmp_path / "a-file").read_text() == "not a model"


@pytest.mark.parametrize("to, name", [("rosinality", "toy.pt"), ("biggan-folder", "tiny-biggan")])
def test_the_input_is_never_the_output(request, tmp_path, capsys, to, name):
    model = tmp_path / name
    source = "toy-stylegan2" if to == "rosinality" else request.getfixturevalue("conformance_dir") / "biggan-deep-tiny"
    ganedit.export_model(source, to, model)
    files = sorted(model.rglob("*")) if model.is_dir() else [model]
    contents = [path.read_bytes() for path in files]
    inside = model / "pytorch_model.bin" if model.is_dir() else model
    for given, output in ((model, model), (inside, model)):
        code, _, err = cli(capsys, "export", given, "--to", to, "-o", output)
        assert code == 2 and "it is the model being exported" in one_line_error(err)
    assert [path.read_bytes() for path in files] == contents


def test_a_failed_write_removes_what_the_export_wrote(conformance_dir, tmp_path, capsys, monkeypatch):
    """A full disk: the files written before the failing one, and the folders the export made, are removed."""

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)  # config.json (biggan-folder), NAME.json (nvidia-state)
    source = conformance_dir / "biggan-deep-tiny"
    code, _, err = cli(capsys, "export", source, "--to", "biggan-folder", "-o", tmp_path / "new" / "tiny")
    assert code == 2 and "No space left" in one_line_error(err)
    assert folder_listing(tmp_path) == []
    with pytest.raises(OutputError, match="No space left"):  # the Python API too: the tensors, written first, go
        ganedit.export_model(conformance_dir / "nvidia-sg2-tiny.pkl", "nvidia-state", tmp_path / "tiny.safetensors")
    assert folder_listing(tmp_path) == []


def test_help_has_examples_and_says_why_no_pickle(capsys):
    code, out, _ = cli(capsys, "export", "--help")
    assert code == 0 and "Examples:" in out and "ganedit export" in out
    assert "NVIDIA's Python source" in out and "from_pretrained" in out and "init kwargs" in out
    assert "export_model" in ganedit.__all__
