"""How well the shipped toy StyleGAN2 discriminators know shapes: a linear probe on D's features.

    python scripts/probe_toy_discriminators.py            # one JSON, then a markdown table

Issue 19 asks for discriminators that separate the shape groups, so that merge can be shown on the two
shape domains (toy-stylegan2-a / -b). The measure: a linear probe (multinomial logistic regression,
full-batch L-BFGS) on D's penultimate features (the 4x4 epilogue b4.fc output, the C features its one logit
is read from) of clean toy renderings, trained on TRAIN images and scored on TEST others, for

- the shape (10 kinds) and the shape group (domain A's five shapes against domain B's five);
- each shipped D, and as controls the same architecture at its random initialisation (what the probe
  gets from the architecture alone) and the strict toy oracle, a plain CNN trained on clean renderings
  (what "knowing the shapes" reaches: its own shape head, read directly).

Images: every shape, colour and background (ganedit.toy.world.sample), seeded. About a minute on one
thread.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import ganedit
from ganedit.toy import world
from ganedit.toy.oracle import load_oracle, predict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_toy_stylegan2  # noqa: E402

MODELS = [*train_toy_stylegan2.DOMAINS, *train_toy_stylegan2.COLOUR_DOMAINS]
TRAIN, TEST, SEED = 3000, 1000, 0
GROUP_A = [world.SHAPES.index(name) for name in train_toy_stylegan2.DOMAINS["toy-stylegan2-a"]]


@torch.no_grad()
def features(D: torch.nn.Module, images: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
    """D's penultimate features (b4.fc output) of `images`, [N, C]."""
    captured = []
    hook = D.b4.fc.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        for chunk in images.split(batch_size):
            D(chunk)
    finally:
        hook.remove()
    return torch.cat(captured)


def probe_accuracy(train_x, train_y, test_x, test_y, classes: int, weight_decay: float = 1e-3) -> float:
    """Test accuracy of a multinomial logistic regression fitted on standardised features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(train_x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimiser = torch.optim.LBFGS([weight, bias], lr=1, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = F.cross_entropy(train_x @ weight + bias, train_y) + weight_decay * weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return round(((test_x @ weight + bias).argmax(1) == test_y).float().mean().item(), 4)


def probe(D, train, test) -> dict[str, float]:
    train_x, test_x = features(D, train.images), features(D, test.images)
    groups = [torch.isin(batch.shape, torch.tensor(GROUP_A)).long() for batch in (train, test)]
    return {
        "shape": probe_accuracy(train_x, train.shape, test_x, test.shape, len(world.SHAPES)),
        "shape_group": probe_accuracy(train_x, groups[0], test_x, groups[1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--train", type=int, default=TRAIN)
    parser.add_argument("--test", type=int, default=TEST)
    parser.add_argument("--seed", type=int, default=SEED)
    arguments = parser.parse_args()
    torch.manual_seed(arguments.seed)
    rng = torch.Generator().manual_seed(arguments.seed)
    train, test = world.sample(arguments.train, rng), world.sample(arguments.test, rng)

    results = {"train": arguments.train, "test": arguments.test, "seed": arguments.seed, "discriminators": {}}
    for name in arguments.models:
        D = ganedit.load_model(name).discriminator.eval()
        results["discriminators"][name] = probe(D, train, test)
    _, random_D = train_toy_stylegan2.build_pair()
    results["random_initialisation"] = probe(random_D.eval(), train, test)
    strict = load_oracle(strict=True)
    read = predict(strict, test.images)["shape"]
    in_group = torch.isin(read, torch.tensor(GROUP_A)) == torch.isin(test.shape, torch.tensor(GROUP_A))
    results["strict_oracle"] = {
        "shape": round((read == test.shape).float().mean().item(), 4),
        "shape_group": round(in_group.float().mean().item(), 4),
    }
    print(json.dumps(results, indent=2))
    print("\n| discriminator | linear probe: shape (10) | shape group (A / B) |\n|---|---|---|")
    rows = {**results["discriminators"], "random initialisation (control)": results["random_initialisation"],
            "strict oracle (a plain CNN, its own head)": results["strict_oracle"]}  # fmt: skip
    for name, figures in rows.items():
        print(f"| {name} | {figures['shape']:.1%} | {figures['shape_group']:.1%} |")


if __name__ == "__main__":
    main()
