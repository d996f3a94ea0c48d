"""Resume files that cannot be corrupted or shared: the sealed state file, the checks of a loaded state,
--checkpoint-every 0, a resume file that cannot be written, and the lock one run per output holds.
The same, as a user meets it on the command line, is in hostile_resume.py."""

import copy
import errno
import hashlib
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import interrupt_step, same_parameters, tiny_stylegan2_pair

import ganedit
from ganedit.cli import main
from ganedit.engine.adversarial import Trainer, TrainingConfig
from ganedit.engine.loop import write_resume
from ganedit.engine.sources import GeneratedImages, ImageBatches
from ganedit.errors import GaneditError
from ganedit.procedures.merge import MergeSettings, Parent, merge
from ganedit.procedures.text_unlearn import TextUnlearnSettings, text_unlearn
from ganedit.procedures.unlearn import UnlearnSettings, unlearn
from ganedit.store import state_file
from ganedit.store.atomic import OutputError
from ganedit.store.lock import lock_path, output_lock

pytestmark = pytest.mark.usefixtures("one_thread")

FORMAT = "ganedit.test-state"


def a_state() -> dict:
    return {"weights": torch.arange(10, dtype=torch.float32), "step": 3, "names": ["a", "b"]}


def read(path, format_name: str = FORMAT, version: int = 2) -> dict:
    return state_file.read_state_file(path, format_name, version, "test state", "write it again")


# --- sealed state files --------------------------------------------------------------------------------


def test_a_state_file_round_trips_and_ends_with_the_sha256_of_the_rest(tmp_path):
    path = state_file.write_state_file(tmp_path / "run.resume", FORMAT, 2, a_state())
    data = path.read_bytes()
    assert data.startswith(state_file.MAGIC) and data[-32:] == hashlib.sha256(data[:-32]).digest()
    back = read(path)
    assert torch.equal(back["weights"], a_state()["weights"]) and back["step"] == 3 and back["names"] == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.resume"]  # no temporary left


def test_one_flipped_bit_in_any_byte_is_refused_as_damaged(tmp_path):
    sealed = state_file.write_state_file(tmp_path / "run.resume", FORMAT, 2, a_state()).read_bytes()
    damaged = tmp_path / "damaged.resume"
    for position in range(len(sealed)):
        data = bytearray(sealed)
        data[position] ^= 1 << (position % 8)
        damaged.write_bytes(bytes(data))
        with pytest.raises(GaneditError, match="damaged") as refused:
            read(damaged)
        assert str(damaged) in str(refused.value), position


def test_a_cut_off_file_is_refused_as_damaged(tmp_path):
    sealed = state_file.write_state_file(tmp_path / "run.resume", FORMAT, 2, a_state()).read_bytes()
    cut = tmp_path / "cut.resume"
    for keep in (0, 1, 10, len(state_file.MAGIC) + 2, len(sealed) // 2, len(sealed) - 32, len(sealed) - 1):
        cut.write_bytes(sealed[:keep])
        with pytest.raises(GaneditError, match=r"is damaged (\(checksum mismatch\))?; write it again"):
            read(cut)


def test_another_format_another_version_an_unsealed_file_and_a_stranger_are_refused(tmp_path):
    path = tmp_path / "run.resume"
    state_file.write_state_file(path, "ganedit.another-state", 2, a_state())
    with pytest.raises(GaneditError, match="is not a test state .*'ganedit.another-state'"):
        read(path)
    state_file.write_state_file(path, FORMAT, 3, a_state())
    with pytest.raises(GaneditError, match="version 3 of this test state is not supported .*reads version 2"):
        read(path)
    torch.save({"format": FORMAT, "version": 1, **a_state()}, path)  # what an older ganedit wrote
    with pytest.raises(GaneditError, match="an older ganedit's, written without a checksum"):
        read(path)
    path.write_text("hello")
    with pytest.raises(GaneditError, match="damaged or not a test state"):
        read(path)
    with pytest.raises(GaneditError, match="does not exist"):
        read(tmp_path / "missing.resume")


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_payload_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = state_file.write_state_file(tmp_path / "run.resume", FORMAT, 2, {"x": RunsCode(marker)})  # checksum valid
    with pytest.raises(GaneditError, match=r"refused to load, the file references '\w+\.system'"):
        read(path)
    assert not marker.exists()


# --- a loaded state is checked before it is used --------------------------------------------------------


def tiny_trainer() -> Trainer:
    G, D = tiny_stylegan2_pair()
    return Trainer(G, D, TrainingConfig(batch_size=2, pl_every=1, r1_every=1))


@pytest.fixture(scope="module")
def good_state() -> dict:
    """A tiny trainer's state after one step (its optimisers hold per-parameter state)."""
    trainer = tiny_trainer()
    trainer.train_step(torch.rand([2, 3, 16, 16], generator=torch.Generator().manual_seed(0)) * 2 - 1)
    return trainer.state_dict()


def first_matrix(weights: dict) -> str:
    return next(key for key, value in weights.items() if value.ndim >= 2)


def misshape(network):
    def change(state):
        key = first_matrix(state[network])
        state[network][key] = state[network][key][:1].clone()

    return change


def retype(state):
    key = first_matrix(state["G"])
    state["G"][key] = state["G"][key].double()


def set_value(*keys, value):
    def change(state):
        for key in keys[:-1]:
            state = state[key]
        state[keys[-1]] = value

    return change


def delete(key):
    return lambda state: state.pop(key)


BAD_TRAINER_STATES = {
    "G mis-shaped": (misshape("G"), "mis-shaped"),
    "G_ema mis-shaped": (misshape("G_ema"), "mis-shaped"),
    "G not tensors": (set_value("G", value={"a": [1, 2]}), "not a dict of tensors"),
    "G of another dtype": (retype, "another dtype"),
    "no D": (delete("D"), "not a dict of tensors"),
    "no opt_G": (delete("opt_G"), "not an optimiser state"),
    "Adam state mis-shaped": (set_value("opt_G", "state", 0, "exp_avg", value=torch.zeros(3)), "exp_avg of param"),
    "Adam step not a tensor": (set_value("opt_D", "state", 0, "step", value="1"), "step of parameter 0"),
    "Adam state of an unknown parameter": (set_value("opt_D", "state", 999, value={}), "unknown parameter 999"),
    "another lr": (lambda state: state["opt_G"]["param_groups"][0].update(lr=1.0), "its lr is 1.0"),
    "parameter groups": (set_value("opt_G", "param_groups", value=[]), "parameter groups"),
    "step as text": (set_value("step", value="3"), "step '3' is not a step count"),
    "negative step": (set_value("step", value=-1), "step -1"),
    "path length not a scalar": (set_value("pl_mean", value=torch.zeros(2)), "running path length"),
    "random-number state cut": (set_value("rng", value=torch.zeros(5, dtype=torch.uint8)), "random-number state"),
    "random-number state as a list": (set_value("rng", value=[1, 2]), "random-number state"),
}


@pytest.mark.parametrize("bad", BAD_TRAINER_STATES, ids=str)
def test_a_training_state_that_does_not_fit_is_a_one_line_error_naming_its_source(bad, good_state):
    change, expected = BAD_TRAINER_STATES[bad]
    state = copy.deepcopy(good_state)
    change(state)
    with pytest.raises(GaneditError, match=expected) as refused:
        tiny_trainer().load_state_dict(state, "the file X")
    assert str(refused.value).startswith("the file X") and "\n" not in str(refused.value)


def test_the_unchanged_state_still_loads(good_state):
    trainer = tiny_trainer()
    trainer.load_state_dict(copy.deepcopy(good_state), "the file X")
    assert trainer.step == 1


def test_data_source_states_that_do_not_fit_are_refused():
    images = torch.zeros([4, 3, 8, 8])
    batches = ImageBatches(images, 2, torch.Generator().manual_seed(0))
    good = batches.state_dict()
    for bad, expected in [
        (None, "not a dict"),
        ({**good, "seed": "zero"}, "data source seed 'zero'"),
        ({**good, "taken": -1}, "data source taken -1"),
        ({key: value for key, value in good.items() if key != "count"}, "data source count None"),
        ({**good, "seed": 2**70}, "data source seed"),
    ]:
        with pytest.raises(GaneditError, match=expected):
            batches.load_state_dict(bad, "the file X")
    G, _ = tiny_stylegan2_pair()
    generated = GeneratedImages([G], None, 2, torch.Generator().manual_seed(0))
    with pytest.raises(GaneditError, match="data source batches 1.5"):
        generated.load_state_dict({"seed": 1, "batches": 1.5}, "the file X")


# --- --checkpoint-every 0: a resume file only when interrupted ------------------------------------------


def toy_images(count: int, seed: int) -> torch.Tensor:
    return torch.rand([count, 3, 16, 16], generator=torch.Generator().manual_seed(seed)) * 2 - 1


UNLEARN = {"adapted_models": 2, "adapt_steps": 3, "steps": 4, "batch_size": 4, "fisher_samples": 3}
MERGE = {"rooting_steps": 3, "steps": 4, "batch_size": 4, "w_avg_samples": 64}


def run_unlearn(checkpoint=None, resume=False):
    G, D = tiny_stylegan2_pair()
    settings = UnlearnSettings(**UNLEARN)
    return unlearn(G, D, toy_images(8, 1), settings, positives=toy_images(8, 2), checkpoint=checkpoint,
                   checkpoint_every=0, resume=resume)  # fmt: skip


def run_merge(checkpoint=None, resume=False):
    parents = [Parent(*tiny_stylegan2_pair(seed=i), f"class{i}") for i in range(3)]
    return merge(parents, MergeSettings(**MERGE), checkpoint=checkpoint, checkpoint_every=0, resume=resume)


def sigint():
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize(
    "run, interrupt_at",
    [(run_unlearn, 4), (run_merge, 4)],  # the first step after a stage boundary (an adapted / a rooted model)
    ids=["unlearn", "merge"],
)
def test_checkpoint_every_0_writes_only_when_interrupted_and_resumes_exactly(tmp_path, monkeypatch, run, interrupt_at):
    checkpoint = tmp_path / "run.resume"
    reference = run(checkpoint)
    assert not checkpoint.exists()  # no resume file at the stage boundaries
    original_step = interrupt_step(monkeypatch, interrupt_at, sigint)
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint)
    assert checkpoint.is_file()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    resumed = run(checkpoint, resume=True)
    assert same_parameters(resumed.generator, reference.generator)
    assert same_parameters(resumed.discriminator, reference.discriminator)


def test_text_unlearn_with_checkpoint_every_0_writes_no_resume_file(tmp_path):
    from ganedit.judges.clip import load_clip

    G, _ = tiny_stylegan2_pair()
    settings = TextUnlearnSettings(concept="a red shape", neutral="a shape", steps=3, batch_size=2)
    text_unlearn(G, [load_clip("toy-clip")], settings, checkpoint=tmp_path / "run.resume", checkpoint_every=0)
    assert list(tmp_path.iterdir()) == []


# --- a resume file that cannot be written ---------------------------------------------------------------


@pytest.fixture
def disk_full(monkeypatch):
    def write(self, data):
        self.failure = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise self.failure

    monkeypatch.setattr(state_file._Sealing, "write", write)


def test_a_resume_file_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, disk_full):
    with pytest.raises(OutputError, match="could not save the run to resume it later.*No space left on device"):
        write_resume(tmp_path / "run.resume", "ganedit.test-resume", "identity", ("stage", 0), None, None)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_the_disk_is_full_stops_the_run_with_that_error(tmp_path, monkeypatch, disk_full):
    interrupt_step(monkeypatch, 2, sigint)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(OutputError, match="could not save the run.*No space left on device; free space"):
        run_merge(tmp_path / "run.resume")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is handler  # the deferral is undone


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_one_line(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="could not save the run.*Permission denied"):
            write_resume(tmp_path / "run.resume", "ganedit.test-resume", "identity", ("stage", 0), None, None)
    finally:
        tmp_path.chmod(0o700)


# --- one run per output ---------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_holder_at_once_and_goes_with_its_run(tmp_path):
    output = tmp_path / "o.safetensors"
    with output_lock(output) as held:
        assert held == lock_path(output) == tmp_path / ".o.safetensors.lock"
        assert held.read_text() == f"{os.getpid()}\n"
        with pytest.raises(GaneditError, match=f"another ganedit run is writing {output} \\(lock {held} held by "
                                               f"pid {os.getpid()}\\); wait for it or choose another -o"):  # fmt: skip
            with output_lock(output):
                pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), output_lock(output):
        raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []


HOLDER = "import sys, time; from ganedit.store.lock import output_lock; lock = output_lock(sys.argv[1]); "
HOLDER += "lock.__enter__(); print('held', flush=True); time.sleep(300)"  # held until killed


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path):
    output = tmp_path / "o.safetensors"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(GaneditError, match=f"held by pid {holder.pid}"):
            with output_lock(output):
                pass
    finally:
        holder.kill()  # SIGKILL: the lock file stays, its lock goes with the process
        holder.wait()
    assert lock_path(output).exists()
    with output_lock(output):
        assert lock_path(output).read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []


TEXT_FLAGS = ["--concept", "a red shape", "--neutral", "a shape", "--iterations", 2, "--batch-size", 2,
              "--eval-samples", 8, "--clip", "toy-clip", "--lpips", "toy", "--device", "cpu", "-q"]  # fmt: skip


def test_the_commands_take_the_lock_before_any_work_and_leave_no_lock_file(tmp_path, capsys, monkeypatch):
    model = ganedit.save_checkpoint(tmp_path / "model.safetensors", *tiny_stylegan2_pair())
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(a) for a in ["text-unlearn", model, "-o", out / "o.safetensors", *TEXT_FLAGS]])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["o.safetensors"]

    def no_work(*args, **kwargs):
        raise AssertionError("a model was loaded while another run holds the output")

    monkeypatch.setattr(ganedit, "load_model", no_work)
    with output_lock(out / "o.safetensors"):
        for command in (["text-unlearn", model, *TEXT_FLAGS], ["unlearn", model, "--negatives", tmp_path],
                        ["merge", model, model]):  # fmt: skip
            code = main([str(a) for a in [*command, "-o", out / "o.safetensors"]])
            err = capsys.readouterr().err
            assert code == 2 and err.count("\n") == 1 and "another ganedit run is writing" in err, err
