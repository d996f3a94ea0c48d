"""The toy world: an offline testbed with exact ground truth (see design/evaluation.md).

- `world`: procedural 32x32 images of one shape each, with known shape, colour, background, size,
  position and rotation; any seed gives fresh "real data".
- `oracle`: a small classifier trained on that data, which names every attribute near-perfectly, and
  the toy FID (a Frechet distance in its feature space).
"""

from ganedit.toy.oracle import ToyOracle, accuracy, frechet_distance, load_oracle, predict, toy_fid
from ganedit.toy.world import BACKGROUNDS, COLOURS, SHAPES, ToyBatch, attribute_index, render, sample

__all__ = [
    "SHAPES",
    "COLOURS",
    "BACKGROUNDS",
    "ToyBatch",
    "sample",
    "render",
    "attribute_index",
    "ToyOracle",
    "load_oracle",
    "predict",
    "accuracy",
    "frechet_distance",
    "toy_fid",
]
