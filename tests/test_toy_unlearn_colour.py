"""unlearn's feature-level effect on the toy world: a colour ('red'); the settings, thresholds and
measurements are test_toy_unlearn.py's (a file of its own so that the suite's workers share the long runs)."""

from test_toy_unlearn import check_effect, oracle, toy  # noqa: F401  (fixtures)


def test_unlearning_a_colour_reaches_a_high_pul_within_the_quality_budget(toy, oracle):  # noqa: F811
    check_effect(toy, oracle, "colour", "red")
