"""Python packages a job needs and a provider's torch runtime offers.

A spec names packages with PEP 440 specifiers (``runtime.packages: {transformers:
">=4.40,<5", torch: ">=2.3"}``); an advert lists the distributions its torch runtime can
import, name to version. Names compare in their PEP 503 normal form (``Foo_Bar`` ==
``foo-bar``); an installed version counts as it is, pre-release or not (``3.0.0rc1``
satisfies ``>=2``), and a local version label (``2.13.0+cpu``) satisfies the public
version's specifiers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

MAX_REQUIRED = 32
"""Packages one spec may require."""
MAX_OFFERED = 256
"""Distributions one advert may list."""
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$"
"""A distribution name (PEP 508), at most 64 characters."""
MAX_SPECIFIER_CHARS = 128

_NAME = re.compile(NAME_PATTERN)


def normal_name(name: str) -> str:
    """The PEP 503 form of a distribution name."""
    return canonicalize_name(name)


def check_name(name: str) -> str:
    """``name`` if it is a valid distribution name, else ValueError saying why."""
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a package name (letters, digits, '.', '_', '-')")
    return name


def check_specifier(text: str) -> str:
    """``text`` if it is a PEP 440 specifier set (empty: any version), else ValueError."""
    if len(text) > MAX_SPECIFIER_CHARS:
        raise ValueError(f"a version specifier is at most {MAX_SPECIFIER_CHARS} characters")
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise ValueError(
            f"{text!r} is not a version specifier; write e.g. '>=2.3', '==4.40.*' or '' (any)"
        ) from None
    return text


def check_unique(names: Mapping[str, object]) -> None:
    """ValueError when two names are the same package (``Foo_Bar`` and ``foo-bar``)."""
    seen: dict[str, str] = {}
    for name in names:
        other = seen.setdefault(normal_name(name), name)
        if other != name:
            raise ValueError(f"{other!r} and {name!r} name the same package")


def unmet(required: Mapping[str, str], offered: Mapping[str, str]) -> list[str]:
    """The requirements ``offered`` (name to version) does not satisfy, as ``name spec``
    (``name (absent)`` when it is missing); empty when every one is met."""
    have = {normal_name(n): v for n, v in offered.items()}
    missing: list[str] = []
    for name, spec in required.items():
        version = have.get(normal_name(name))
        if version is None:
            missing.append(f"{name} (absent)")
        elif not _satisfies(version, spec):
            missing.append(f"{name}{spec} (has {version})")
    return missing


def _satisfies(version: str, spec: str) -> bool:
    try:
        public = Version(version).public
    except InvalidVersion:
        return False
    return SpecifierSet(spec).contains(public, prereleases=True)
