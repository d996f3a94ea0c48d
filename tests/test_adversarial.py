"""The shared adversarial fine-tuning step on a tiny 16 px StyleGAN2 pair and toy-world images."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_stylegan2_pair as tiny_pair

from ganedit.engine.adversarial import (
    Trainer,
    TrainingConfig,
    discriminator_loss,
    ema_beta,
    mixed_latents,
    r1_penalty,
)
from ganedit.errors import GaneditError
from ganedit.toy import world

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 4


def real_batches(count: int, seed: int = 1) -> list[torch.Tensor]:
    rng = torch.Generator().manual_seed(seed)
    return [F.avg_pool2d(world.sample(BATCH, rng).images, 2) for _ in range(count)]


def trainer(seed: int = 0, **settings) -> Trainer:
    G, D = tiny_pair()
    return Trainer(G, D, TrainingConfig(batch_size=BATCH, seed=seed, **settings))


def state_tensors(t: Trainer) -> dict[str, torch.Tensor]:
    tensors = {
        f"{name}.{key}": value for name in ("G", "D", "G_ema") for key, value in getattr(t, name).state_dict().items()
    }
    tensors["pl_mean"] = t.pl_mean
    return tensors


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"tensors differ: {different[:5]}"


def test_losses_are_finite_and_lazy_terms_run_on_their_steps():
    t = trainer(r1_every=4, pl_every=2)
    for step, real in enumerate(real_batches(5)):
        losses = t.train_step(real)
        assert all(math.isfinite(value) for value in losses.values()), losses
        assert ("r1" in losses) == (step % 4 == 0), (step, losses)
        assert ("pl" in losses) == (step % 2 == 0), (step, losses)
        assert {"loss_D", "loss_G"} <= losses.keys() and "extra" not in losses
    assert t.step == 5


def test_disabled_regularisers_never_run_and_skip_the_lr_rescaling():
    t = trainer(r1_gamma=0, pl_weight=0, r1_every=1, pl_every=1)
    losses = t.train_step(real_batches(1)[0])
    assert losses.keys() == {"loss_D", "loss_G"}
    assert t.opt_G.param_groups[0]["lr"] == t.opt_D.param_groups[0]["lr"] == 0.002
    lazy = trainer()  # r1 every 16, path length every 4: c = 16/17 and 4/5
    assert lazy.opt_D.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert lazy.opt_G.param_groups[0]["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))


def test_discriminator_loss_falls_on_fixed_real_and_fake_images():
    G, D = tiny_pair()
    real = real_batches(1)[0]
    with torch.no_grad():
        fake = G(torch.randn([BATCH, G.z_dim], generator=torch.Generator().manual_seed(2)))
    optimiser = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    start = discriminator_loss(D, real, fake).item()
    for _ in range(5):
        loss = discriminator_loss(D, real, fake)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    end = discriminator_loss(D, real, fake).item()
    assert end < start - 0.1, (start, end)
    with torch.no_grad():
        assert (D(real).mean() - D(fake).mean()).item() > 0  # D now scores real above fake
    assert r1_penalty(D, real).item() >= 0


def test_extra_generator_loss_is_called_and_its_gradient_reaches_G():
    calls = []

    def pull_bias_to_five(G):
        calls.append(G)
        return 1e4 * (G.synthesis.b4.torgb.bias[0] - 5).square()

    with_pull, without = trainer(), trainer()
    start = with_pull.G.synthesis.b4.torgb.bias[0].item()
    for real in real_batches(3):
        assert "extra" in with_pull.train_step(real, extra_generator_loss=pull_bias_to_five)
        without.train_step(real)
    assert len(calls) == 3 and calls[0] is with_pull.G
    moved = with_pull.G.synthesis.b4.torgb.bias[0].item() - start
    moved_without = without.G.synthesis.b4.torgb.bias[0].item() - start
    assert moved > 0.004 and moved > moved_without + 0.002, (moved, moved_without)


def test_G_ema_follows_G_by_the_half_life_formula():
    t = trainer(ema_kimg=0.01)  # beta = 0.5 ** (4 / 10), so one step moves G_ema visibly
    before = {name: p.detach().clone() for name, p in t.G.named_parameters()}
    t.train_step(real_batches(1)[0])
    beta = ema_beta(t.config)
    assert beta == pytest.approx(0.5**0.4)
    ema = dict(t.G_ema.named_parameters())
    moved = 0
    for name, p in t.G.named_parameters():
        torch.testing.assert_close(ema[name], before[name].lerp(p.detach(), 1 - beta), rtol=1e-6, atol=1e-7)
        moved += not torch.equal(ema[name], p)
    assert moved > 0  # G_ema trails G
    assert torch.equal(t.G_ema.mapping.w_avg, t.G.mapping.w_avg)  # buffers are copied
    assert t.G.mapping.w_avg.abs().sum() > 0  # and G tracks w_avg while training


def test_discriminator_warmup_trains_D_alone_then_both():
    t = trainer(discriminator_warmup=2, r1_every=1)
    G_start = {k: v.clone() for k, v in state_tensors(t).items()}
    D_start = {k: v.clone() for k, v in t.D.state_dict().items()}
    batches = real_batches(3)
    for real in batches[:2]:
        losses = t.train_step(real)
        assert losses.keys() == {"loss_D", "r1"}  # no G loss, no path length
    assert t.step == 2
    after_warmup = state_tensors(t)
    for name in ("G.", "G_ema."):  # G, its tracked w_avg and G_ema are as they were
        assert_bit_equal(
            {k: v for k, v in after_warmup.items() if k.startswith(name)},
            {k: v for k, v in G_start.items() if k.startswith(name)},
        )
    assert any(not torch.equal(v, D_start[k]) for k, v in t.D.state_dict().items())
    assert "loss_G" in t.train_step(batches[2])
    assert not torch.equal(t.G.synthesis.b4.torgb.bias, G_start["G.synthesis.b4.torgb.bias"])


def test_style_mixing_takes_rows_from_two_latents():
    G, _ = tiny_pair()
    z1, z2 = torch.randn([2, BATCH, G.z_dim], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ws1, ws2 = G.mapping(z1, None), G.mapping(z2, None)
        rng = torch.Generator().manual_seed(4)
        crossovers = set()
        for _ in range(8):
            ws = mixed_latents(G, z1, z2, None, 1.0, rng)
            from_first = [torch.equal(ws[:, i], ws1[:, i]) for i in range(G.num_ws)]
            crossover = from_first.index(False)
            assert 1 <= crossover < G.num_ws and all(from_first[:crossover])
            assert torch.equal(ws[:, crossover:], ws2[:, crossover:])
            crossovers.add(crossover)
        assert len(crossovers) > 1
        assert torch.equal(mixed_latents(G, z1, z2, None, 0.0, rng), ws1)


def test_same_seed_same_result_and_the_global_rng_is_left_alone():
    reals = real_batches(3)
    runs = []
    for seed in (0, 0, 1):
        t = trainer(seed=seed, r1_every=2, pl_every=2)
        global_rng = torch.get_rng_state()
        losses = [t.train_step(real) for real in reals]
        assert torch.equal(torch.get_rng_state(), global_rng)
        runs.append((losses, state_tensors(t)))
    assert runs[0][0] == runs[1][0]
    assert_bit_equal(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]


def test_resumed_run_equals_uninterrupted_run_bit_exactly(tmp_path):
    reals = real_batches(6)
    settings = dict(r1_every=2, pl_every=3, ema_kimg=0.1)

    uninterrupted = trainer(**settings)
    expected = [uninterrupted.train_step(real) for real in reals]

    first = trainer(**settings)
    for real in reals[:3]:
        first.train_step(real)
    path = first.save_state(tmp_path / "state.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary left behind

    resumed = trainer(seed=0, **settings)  # freshly initialised: everything must come from the file
    resumed.load_state(path)
    assert resumed.step == 3
    assert [resumed.train_step(real) for real in reals[3:]] == expected[3:]
    assert_bit_equal(state_tensors(resumed), state_tensors(uninterrupted))


def test_resume_file_from_a_different_run_is_refused(tmp_path):
    path = trainer().save_state(tmp_path / "state.pt")
    with pytest.raises(GaneditError, match=r"resume file from a different run: .*lr = 0\.002 \(this run: 0\.001\)"):
        trainer(lr=0.001).load_state(path)
    G, D = tiny_pair(channels=(32, 32, 16))
    with pytest.raises(GaneditError, match="resume file from a different run: .*channels"):
        Trainer(G, D, TrainingConfig(batch_size=BATCH)).load_state(path)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(GaneditError, match=r"damaged \(checksum mismatch\)"):
        trainer().load_state(damaged)


def test_bad_settings_are_refused():
    with pytest.raises(GaneditError, match="style_mixing"):
        TrainingConfig(style_mixing=1.5)
    with pytest.raises(GaneditError, match="autocast"):
        TrainingConfig(autocast="float16")
    with pytest.raises(GaneditError, match="discriminator_warmup"):
        TrainingConfig(discriminator_warmup=-1)


def test_conditional_pair_and_bf16_autocast_run():
    G, D = tiny_pair(c_dim=2)
    t = Trainer(G, D, TrainingConfig(batch_size=BATCH, autocast="bfloat16"))
    c = F.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    losses = t.train_step(real_batches(1)[0], c)
    assert {"loss_D", "r1", "loss_G", "pl"} <= losses.keys()
    assert all(math.isfinite(value) for value in losses.values())
    assert t.G_ema(torch.zeros([2, G.z_dim]), c[:2]).shape == (2, 3, 16, 16)
    assert dataclasses.asdict(t.config)["autocast"] == "bfloat16"
