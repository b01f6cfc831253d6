"""Package requirements against what a provider's Python offers: PEP 503 names, PEP 440
specifiers, local version labels, installed pre-releases."""

from __future__ import annotations

import pytest

from protocol.packages import check_name, check_specifier, check_unique, unmet

OFFERED = {"torch": "2.13.0+cpu", "numpy": "2.1.0", "Foo.Bar": "1.0", "beta": "3.0.0rc1"}


@pytest.mark.parametrize(
    ("required", "missing"),
    [
        ({}, []),
        ({"torch": ">=2.3"}, []),  # the local label (+cpu) does not hide the version
        ({"torch": "==2.13.0"}, []),
        ({"torch": ">=2.14"}, ["torch>=2.14 (has 2.13.0+cpu)"]),
        ({"NumPy": "<3", "foo_bar": ""}, []),  # names compare in PEP 503 form
        ({"numpy": "<2"}, ["numpy<2 (has 2.1.0)"]),
        ({"scipy": ""}, ["scipy (absent)"]),
        ({"beta": ">=2"}, []),  # an installed pre-release counts as it is
        ({"beta": ">=3.0.0"}, ["beta>=3.0.0 (has 3.0.0rc1)"]),
    ],
)
def test_unmet_lists_each_requirement_not_satisfied(
    required: dict[str, str], missing: list[str]
) -> None:
    assert unmet(required, OFFERED) == missing


def test_an_unparseable_offered_version_satisfies_nothing() -> None:
    assert unmet({"odd": ""}, {"odd": "not a version"}) == ["odd (has not a version)"]


def test_names_and_specifiers_are_checked() -> None:
    assert check_name("scikit-learn") == "scikit-learn"
    for bad in ("", "a b", "-x", "x" * 65, "x/y"):
        with pytest.raises(ValueError, match="not a package name"):
            check_name(bad)
    assert check_specifier("") == ""
    assert check_specifier("~=4.40, !=4.41.1") == "~=4.40, !=4.41.1"
    with pytest.raises(ValueError, match="not a version specifier"):
        check_specifier("4.40")
    with pytest.raises(ValueError, match="at most 128"):
        check_specifier(">=1," * 40)
    check_unique({"a": "", "b": ""})
    with pytest.raises(ValueError, match="name the same package"):
        check_unique({"Foo.Bar": "", "foo-bar": ""})
