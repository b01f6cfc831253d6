"""Reading job specs: YAML (or canonical JSON) in, :class:`JobSpec` or ``SpecError`` out.

Every problem becomes a :class:`~protocol.errors.SpecError` naming the dotted field path
(``resources.gpus``, ``inputs.1.name``) and the reason. The YAML reader is hardened:
size-capped, no aliases (no "billion laughs"), no duplicate keys, bounded nesting, and
YAML 1.2 style floats such as ``1e-5`` read as numbers. :func:`canonical_spec` gives the
one byte string a spec is stored and content-addressed as.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from protocol.encoding import canonical_json, decode_json
from protocol.errors import MessageError, SpecError
from protocol.registry import MAX_SPEC_BYTES
from protocol.spec import JobSpec

MAX_YAML_DEPTH = 16

# Discriminated unions put the chosen tag into error locations; these are not field names.
_UNION_TAGS = {"runtime": {"torch", "container"}, "compare": {"exact", "tolerance"}}


class InvalidSpec(SpecError):
    """A spec with one or more problems; ``problems`` lists every ``(path, reason)``."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        path, reason = problems[0]
        more = len(problems) - 1
        if more:
            reason += f" (and {more} more problem{'s' if more > 1 else ''})"
        super().__init__(path, reason)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader without aliases or duplicate keys, with bounded depth."""

    _depth = 0

    def _line(self) -> int:
        """The 1-based line of the next event (PyYAML's stubs leave peek_event untyped)."""
        line: int = self.peek_event().start_mark.line  # type: ignore[no-untyped-call]
        return line + 1

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise SpecError("", f"YAML aliases are not allowed (line {self._line()})")
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise SpecError("", f"spec nests deeper than {MAX_YAML_DEPTH} (line {self._line()})")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                mark = key_node.start_mark
                raise SpecError(
                    "", f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1}"
                )
            seen.add(key) if isinstance(key, str | int | float | bool) else None
        return super().construct_mapping(node, deep=deep)


_SpecLoader.yaml_implicit_resolvers = {
    key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_SpecLoader)  # a hardened SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError("", f"malformed YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SpecError("", f"malformed YAML: {exc}") from None


def _path(err: ErrorDetails) -> str:
    parts: list[str] = []
    previous = ""
    for part in err["loc"]:
        text = str(part)
        if text not in _UNION_TAGS.get(previous, ()):
            parts.append(text)
        previous = "" if text in _UNION_TAGS.get(previous, ()) else text
    ctx = err.get("ctx") or {}
    if err["type"] == "spec_field":
        parts.append(str(ctx["field"]))
    return ".".join(parts)


def _reason(err: ErrorDetails, path: str) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid" and path.endswith("runtime"):
        return f"unknown runtime kind {err['ctx']['tag']!r}; use 'torch' or 'container'"
    if kind == "union_tag_not_found" and path.endswith("runtime"):
        return "needs kind: torch or kind: container"
    if kind == "literal_error" and path.endswith("compare"):
        return "must be 'exact' or {tolerance: {rtol: ..., atol: ...}}"
    return msg.removeprefix("Value error, ")


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        path = _path(err)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found") and path.endswith("runtime"):
            problems.append((f"{path}.kind", _reason(err, path)))
        else:
            problems.append((path, _reason(err, path)))
    return problems


def spec_from_obj(obj: Any) -> JobSpec:
    """Validate an already-parsed document as a job spec."""
    if not isinstance(obj, dict):
        raise SpecError("", "a spec must be a mapping of fields (name, runtime, price, ...)")
    try:
        return JobSpec.model_validate(obj)
    except ValidationError as exc:
        raise InvalidSpec(_problems(exc)) from None


def parse_spec(text: str | bytes) -> JobSpec:
    """Parse and validate a spec from YAML (or JSON) text."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError("", f"spec is {len(data)} bytes, limit is {MAX_SPEC_BYTES}")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("", "spec is not UTF-8 text") from None
    return spec_from_obj(_read_yaml(decoded))


def load_spec(path: str | os.PathLike[str]) -> JobSpec:
    """Read and validate a spec file."""
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError("", f"{file} is {size} bytes, limit is {MAX_SPEC_BYTES}")
        data = file.read_bytes()
    except OSError as exc:
        raise SpecError("", f"cannot read spec {file}: {exc.strerror}") from None
    return parse_spec(data)


def canonical_spec(spec: JobSpec) -> bytes:
    """The canonical JSON bytes of a spec: equal specs give equal bytes (and CIDs)."""
    return canonical_json(spec.model_dump(mode="json"))


def spec_from_canonical(data: bytes) -> JobSpec:
    """Parse spec bytes fetched by CID (canonical JSON)."""
    try:
        obj = decode_json(data, MAX_SPEC_BYTES)
    except MessageError as exc:
        raise SpecError("", str(exc)) from None
    return spec_from_obj(obj)


def check_local_inputs(spec: JobSpec, base_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Resolve path inputs against ``base_dir`` (the spec file's folder); all must exist."""
    found = {}
    for index, item in enumerate(spec.inputs):
        if item.path is None:
            continue
        resolved = (Path(base_dir) / item.path).resolve()
        if not resolved.exists():
            raise SpecError(f"inputs.{index}.path", f"no such file or directory: {resolved}")
        found[item.name] = resolved
    return found
