"""Every row of the simulator's physics validation table, each as its own test."""

import pytest

from raylar.sim.validation import CHECKS, format_table


@pytest.mark.parametrize("key", list(CHECKS))
def test_validation_row_within_tolerance(key):
    row = CHECKS[key]()
    assert row.key == key
    assert row.passed, format_table([row])


def test_validation_row_fails_outside_tolerance():
    # A row must be able to fail: the same computation against a shifted reference does.
    row = CHECKS["conversion_length"]()
    row.reference *= 1.1
    assert not row.passed
