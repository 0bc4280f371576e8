"""YAML files into typed models; every mistake becomes one line naming file and field.

Shared by the runbook loader, the inventory and the training scenarios. A file that is
too big or nested too deep is bad input too, not a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from steps.text import shown as _shown

M = TypeVar("M", bound=BaseModel)
# Runbooks, inventories and scenarios are a few kB; a file past this is not one of them.
MAX_BYTES = 1024 * 1024


class RunbookError(Exception):
    """A bad runbook (or other input file): `str()` is the one line to print."""

    def __init__(self, source: str, where: str, message: str) -> None:
        self.source, self.where, self.message = source, where, message
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark)
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

# libyaml's parser, where PyYAML was built with it: about ten times faster on the runbooks
# and scenarios every session and the app's first screen read. Same resolver and
# constructor (Python), so the same values. A file it refuses is parsed again by the
# Python one, whose error (line, column, problem) is the one reported.
_FastLoader: type | None = None
if getattr(yaml, "__with_libyaml__", False):

    class _FastUniqueKeyLoader(yaml.CSafeLoader):
        pass

    _FastUniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _FastLoader = _FastUniqueKeyLoader

# Handrail files nest under ten levels. Deeper is refused from the parser's event stream
# (iterative, stopped at the limit) before anything composes it: libyaml composes by C
# recursion (~40,000 levels crash the process), Python's by Python recursion, and both
# scanners slow down quadratically with flow depth (5,000 brackets took a second).
MAX_DEPTH = 64
_OPEN = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_CLOSE = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark | Any) -> None:  # libyaml's marks are their own class
        self.problem, self.problem_mark = f"nested more than {MAX_DEPTH} levels deep", mark
        super().__init__(self.problem)


def _check_depth(text: str, loader: type) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep(event.start_mark)
        elif isinstance(event, _CLOSE):
            depth -= 1


def _load(text: str) -> Any:
    if _FastLoader is not None:
        try:
            _check_depth(text, _FastLoader)
            return yaml.load(text, Loader=_FastLoader)
        except _TooDeep:
            raise
        except yaml.YAMLError:
            pass  # the Python parser says what and where
    _check_depth(text, _UniqueKeyLoader)
    return yaml.load(text, Loader=_UniqueKeyLoader)


def read_yaml(path: Path | str, source: str | None = None) -> dict[str, Any]:
    """Parse a YAML mapping, or raise RunbookError with file, line and column."""
    source = source or str(path)
    try:
        if Path(path).stat().st_size > MAX_BYTES:
            raise RunbookError(source, "", f"the file is larger than {MAX_BYTES // 1024} KiB: not a handrail file")
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunbookError(source, "", "no such file") from None
    except IsADirectoryError:
        raise RunbookError(source, "", "is a directory, not a file") from None
    except UnicodeDecodeError:
        raise RunbookError(source, "", "not UTF-8 text") from None
    except OSError as exc:
        raise RunbookError(source, "", exc.strerror or str(exc)) from None
    try:
        data = _load(text)
    except yaml.reader.ReaderError as exc:
        # A character YAML refuses (NUL, other control characters): say where it is.
        before = text[: exc.position]
        where = f"line {before.count(chr(10)) + 1}, column {len(before) - (before.rfind(chr(10)) + 1) + 1}"
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise RunbookError(source, where, f"invalid YAML: character {code:#06x} is not allowed") from None
    except RecursionError:
        raise RunbookError(source, "", "invalid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RunbookError(source, where, f"invalid YAML: {problem}") from None
    if data is None:
        raise RunbookError(source, "", "the file is empty")
    if not isinstance(data, dict):
        raise RunbookError(source, "", f"expected a mapping at the top, got {type(data).__name__}")
    return data


def validate_model(data: dict[str, Any], model: type[M], source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise first_validation_error(source, exc) from None
    except RecursionError:
        raise RunbookError(source, "", "nested too deeply") from None


def parse_file(path: Path | str, model: type[M], source: str | None = None) -> M:
    """A YAML file validated into `model`, or RunbookError naming file and field."""
    source = source or str(path)
    return validate_model(read_yaml(path, source), model, source)


def loc_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def first_validation_error(source: str, exc: ValidationError) -> RunbookError:
    err = exc.errors(include_url=False)[0]
    # Drop pydantic's internal validator names ("function-after[...]") from the path.
    loc = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "required field is missing"
    elif kind not in ("value_error", "assertion_error") and "input" in err:
        message = f"{message} (got {_shown(err['input'], 60)})"
    return RunbookError(source, loc_path(loc), message)
