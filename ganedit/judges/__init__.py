"""Judges: frozen image classifiers that score generated images.

A judge takes generator images in [-1, 1] (NCHW, any size), does its own differentiable preprocessing
and returns logits [N, len(judge.labels)]. See `classifiers.py` for the specs `load_judge` accepts.
"""

from ganedit.judges.classifiers import Ensemble, Judge, Preprocess, load_judge, load_judges, resolve_label

__all__ = ["Judge", "Ensemble", "Preprocess", "load_judge", "load_judges", "resolve_label"]
