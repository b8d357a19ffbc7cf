"""Message attributes subscribers filter on: strings stay strings, counts are numbers."""

import pytest

from pipeline import notify


def test_counts_are_numbers_and_names_are_strings():
    # GIVEN a wave name and a count / WHEN turned into SNS attributes / THEN a filter policy can compare the count
    assert notify._attribute("wave-1") == {"DataType": "String", "StringValue": "wave-1"}
    assert notify._attribute(3) == {"DataType": "Number", "StringValue": "3"}


@pytest.mark.parametrize("value", [True, None, 1.5, ["a"]])
def test_anything_else_is_refused_before_publishing(value):
    # A boolean would read as a number and a float or list as nothing SNS filters on; the caller is wrong.
    with pytest.raises(TypeError, match="string or a number"):
        notify._attribute(value)
