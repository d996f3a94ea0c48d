"""ganedit's own format: atomic safetensors with architecture, config, classes and provenance."""

import json

import pytest
import torch
from helpers import TINY_BIGGAN
from safetensors import safe_open

import ganedit
from ganedit.cli import main
from ganedit.errors import CheckpointFormatError, GaneditError
from ganedit.generators.biggan_deep import BigGANDeep
from ganedit.generators.formats.ganedit_file import read_ganedit_checkpoint, save_checkpoint
from ganedit.store.provenance import make_provenance, parent_record, sha256_of


@pytest.fixture
def biggan():
    torch.manual_seed(0)
    G = BigGANDeep(BigGANDeep.Config.from_json_dict(TINY_BIGGAN))
    with torch.no_grad():
        for name, buffer in G.named_buffers():
            if "running_vars" in name:
                buffer.uniform_(0.5, 2.0)
            elif "running_means" in name:
                buffer.normal_()
    return G.eval()


def same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_round_trip_is_identical(tmp_path, biggan):
    parent = tmp_path / "parent.bin"
    parent.write_bytes(b"weights")
    provenance = make_provenance("embed-tune", {"lr": 0.1, "classes": ["a"]}, [parent_record("parent", parent)], seed=3)
    path = save_checkpoint(tmp_path / "g.safetensors", biggan, class_names=["a", "b", "c"], provenance=provenance)

    bundle = read_ganedit_checkpoint(path)
    same_module(biggan, bundle.generator)
    assert bundle.discriminator is None
    assert bundle.class_names == ["a", "b", "c"]
    recorded = bundle.metadata["provenance"]
    assert recorded["procedure"] == "embed-tune" and recorded["parameters"]["lr"] == 0.1 and recorded["seed"] == 3
    assert recorded["parents"] == [{"source": "parent", "sha256": sha256_of(parent)}]
    assert recorded["versions"]["ganedit"] == ganedit.__version__ and recorded["versions"]["torch"] == torch.__version__

    z = torch.randn(2, 128)
    c = torch.tensor([0, 2])
    assert torch.equal(biggan(z, c, 1.0), bundle.generator(z, c, 1.0))
    assert not bundle.generator.training


def test_load_generator_reads_it_back(tmp_path, biggan):
    path = save_checkpoint(tmp_path / "g.safetensors", biggan)
    same_module(biggan, ganedit.load_generator(path))
    with pytest.raises(GaneditError, match="no discriminator"):
        ganedit.load_discriminator(path)


def test_tensors_are_float32_and_metadata_is_json(tmp_path, biggan):
    path = save_checkpoint(tmp_path / "g.safetensors", biggan.to(torch.float64))
    with safe_open(str(path), "pt") as stream:
        assert {stream.get_tensor(name).dtype for name in stream.keys()} == {torch.float32}
        metadata = stream.metadata()
    assert json.loads(metadata["ganedit.generator"])["arch"] == "biggan-deep"
    assert json.loads(metadata["ganedit.generator"])["config"]["num_classes"] == 3


def test_write_is_atomic(tmp_path, biggan, monkeypatch):
    """An interrupted write leaves neither a partial file under the final name nor a temporary file."""
    import ganedit.store.checkpoint as checkpoint

    target = tmp_path / "g.safetensors"
    target.write_bytes(b"previous version")

    def interrupted(tensors, filename, metadata):
        with open(filename, "wb") as stream:
            stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, biggan)
    assert target.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_plain_safetensors_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointFormatError, match="ganedit convert"):
        ganedit.load_generator(path)


def test_mismatched_tensors_are_refused(tmp_path, biggan):
    path = save_checkpoint(tmp_path / "g.safetensors", biggan)
    with safe_open(str(path), "pt") as stream:
        metadata = stream.metadata()
        tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    del tensors["G.embeddings.weight"]
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(GaneditError, match="missing: embeddings.weight"):
        ganedit.load_generator(path)


def test_convert_then_info_shows_provenance(tmp_path, biggan, capsys):
    folder = tmp_path / "biggan"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_BIGGAN))
    torch.save(biggan.state_dict(), folder / "pytorch_model.bin")

    assert main(["convert", str(folder), "-o", str(tmp_path / "out.safetensors"), "--json"]) == 0
    converted = json.loads(capsys.readouterr().out)
    assert converted["format"] == "biggan-deep (pytorch-pretrained-biggan)"

    assert main(["info", str(tmp_path / "out.safetensors"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "ganedit (safetensors)"
    assert info["architecture"] == "biggan-deep" and info["resolution"] == 16 and info["classes"] == 3
    assert info["generator"]["config"]["channel_width"] == 4
    provenance = info["metadata"]["provenance"]
    assert provenance["procedure"] == "convert"
    assert provenance["parents"][0]["sha256"] == sha256_of(folder)

    assert main(["info", str(tmp_path / "out.safetensors")]) == 0
    assert "convert" in capsys.readouterr().out
    same_module(biggan, ganedit.load_generator(tmp_path / "out.safetensors"))


def test_sample_same_seed_same_images(tmp_path, biggan, capsys):
    path = save_checkpoint(tmp_path / "g.safetensors", biggan, class_names=["Red Circle", "b", "c"])
    args = ["sample", str(path), "--class", "red circle", "--class", "2", "-n", "3", "--seed", "7", "--json"]
    assert main(args + ["-o", str(tmp_path / "a.png"), "--out-dir", str(tmp_path / "each")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == [{"index": 0, "name": "Red Circle"}, {"index": 2, "name": "c"}]
    assert len(report["written"]) == 1 + 6
    assert main(args + ["-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert main(["sample", str(path), "--class", "0", "-n", "3", "--seed", "8", "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()


def test_sample_unknown_class_suggests(tmp_path, biggan, capsys):
    path = save_checkpoint(tmp_path / "g.safetensors", biggan, class_names=["red circle", "blue square", "green star"])
    assert main(["sample", str(path), "--class", "red circel", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'red circel'" in err and "red circle" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("name", ["nvidia-sg2-tiny.pkl", "nvidia-sg2-tiny-c2.pkl", "rosinality-sg2-tiny.pt"])
def test_converted_stylegan2_reproduces_the_reference(tmp_path, conformance_dir, name, capsys):
    """convert -> ganedit file -> load gives the reference implementation's outputs, G and D."""
    from safetensors.torch import load_file

    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(conformance_dir / name), "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    bundle = ganedit.load_model(out)
    original = ganedit.load_model(conformance_dir / name)
    same_module(original.generator, bundle.generator)
    same_module(original.discriminator, bundle.discriminator)
    assert bundle.metadata["provenance"]["parameters"]["source_format"] == original.format

    expected = load_file(
        conformance_dir / name.replace(".pkl", ".expected.safetensors").replace(".pt", ".expected.safetensors")
    )
    c = expected["c"] if "c" in expected and expected["c"].shape[1] else None
    with torch.no_grad():
        image = bundle.generator(expected["z"], c, truncation_psi=0.7, noise_mode="const")
        logits = bundle.discriminator(expected["d_input"], c)
    assert (image - expected["img_psi0.7"]).abs().max() < 1e-4
    assert (logits - expected["d_logits"]).abs().max() < 1e-4


def test_sample_stylegan2_pickle(tmp_path, conformance_dir, capsys):
    model = str(conformance_dir / "nvidia-sg2-tiny-c2.pkl")
    assert (
        main(
            [
                "sample",
                model,
                "--class",
                "1",
                "-n",
                "4",
                "--seed",
                "3",
                "--truncation",
                "0.7",
                "-o",
                str(tmp_path / "grid.png"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["images"] == 4
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size == (2 + 4 * 34, 2 + 34)
    assert main(["sample", model, "--class", "2", "-o", str(tmp_path / "x.png")]) == 2
    assert "out of range" in capsys.readouterr().err
    unconditional = str(conformance_dir / "nvidia-sg2-tiny.pkl")
    assert main(["sample", unconditional, "--class", "1", "-o", str(tmp_path / "x.png")]) == 2
    assert "unconditional" in capsys.readouterr().err
