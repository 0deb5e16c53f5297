"""``python -m bench --only``: which steps a developer's partial run takes."""

from __future__ import annotations

import argparse

import pytest

from bench.__main__ import STEPS, _steps


def test_only_takes_known_steps_comma_separated():
    assert _steps("isolation, delivery") == {"isolation", "delivery"}
    assert _steps(",".join(STEPS)) == set(STEPS)
    assert _steps("latency-50,latency-200") == {"latency-50", "latency-200"}


@pytest.mark.parametrize("value", ["", "isolation,fanout", " , "])
def test_only_refuses_an_unknown_or_empty_step_list(value):
    with pytest.raises(argparse.ArgumentTypeError):
        _steps(value)
