"""Load and check runbook files; every mistake becomes one line naming file and field.

    runbooks/x.yaml: steps[3].undo: unknown action 'iam.delte_key'

Types are pydantic's job; this module adds what only the whole file can tell: actions
that exist, step ids that are unique, gates that point at earlier steps, placeholders
that some input or earlier step defines, and action parameters that fit the action.
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from steps.actions import registry
from steps.actions.base import ActionSpec
from steps.consumers.display import PLACEHOLDERS as INVENTORY
from steps.model import Runbook, placeholders
from steps.yamlfile import (  # re-exported: the one-line error of every input file
    RunbookError,
    first_validation_error,
    read_yaml,
    validate_model,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Placeholders every runbook may use: the engine fills them in (the inventory's names
# through the wiring, see steps/consumers/display.py).
BUILTIN = frozenset({"session"}) | frozenset(INVENTORY)


# -- runbooks ------------------------------------------------------------------------------


def runbooks_dir() -> Path:
    return Path(str(resources.files("runbooks")))


def resolve(ref: str) -> Path:
    """A runbook id (looked up in the shipped runbooks) or a path."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists() or "/" in ref:
        return path
    candidate = runbooks_dir() / f"{ref}.yaml"
    if candidate.exists():
        return candidate
    known = ", ".join(sorted(p.stem for p in runbooks_dir().glob("*.yaml"))) or "none"
    raise RunbookError(ref, "", f"no such runbook (known: {known})")


def shipped() -> list[Path]:
    return sorted(runbooks_dir().glob("*.yaml"))


_cache: dict[tuple[str, int, int], Runbook] = {}
_cache_lock = threading.Lock()


def load(ref: str | Path) -> Runbook:
    """The checked runbook. A file already loaded and unchanged (same size and mtime) is
    not parsed again: a campaign opens hundreds of sessions on one runbook, and the models
    are frozen, so sharing one is safe."""
    path = resolve(str(ref))
    source = str(ref)
    try:
        stat = path.stat()
        key: tuple[str, int, int] | None = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = None  # read_yaml says what is wrong with it
    if key is not None:
        with _cache_lock:
            cached = _cache.get(key)
        if cached is not None:
            return cached
    data = read_yaml(path, source)
    runbook = validate_model(data, Runbook, source)
    check(runbook, data, source)
    if key is not None:
        with _cache_lock:
            _cache[key] = runbook
    return runbook


def check(runbook: Runbook, raw: dict[str, Any], source: str) -> None:
    """The checks that need the whole file and the action registry."""
    actions = registry()
    known: set[str] = set(runbook.inputs) | BUILTIN
    secrets: set[str] = set()  # secrets earlier steps hold in memory (for a shell step's env only)
    seen_ids: dict[str, int] = {}
    seen_numbers: dict[str, int] = {}
    raw_steps = raw.get("steps", [])
    ponr = [s.id for s in runbook.steps if s.point_of_no_return]
    if len(ponr) > 1:
        raise RunbookError(source, "steps", f"more than one point_of_no_return: {', '.join(ponr)}")

    for i, step in enumerate(runbook.steps):
        at = f"steps[{i}]"
        if step.id in seen_ids:
            raise RunbookError(source, f"{at}.id", f"duplicate step id {step.id!r} (also steps[{seen_ids[step.id]}])")
        seen_ids[step.id] = i
        if step.number in seen_numbers:
            raise RunbookError(source, f"{at}.number", f"duplicate step number {step.number!r} (also steps[{seen_numbers[step.number]}])")
        seen_numbers[step.number] = i

        spec = None
        if step.run:
            spec = actions.get(step.run)
            if spec is None:
                raise RunbookError(source, f"{at}.run", f"unknown action {step.run!r}")
            missing = sorted(spec.needs - known)
            if missing:
                raise RunbookError(
                    source,
                    f"{at}.run",
                    f"action {step.run!r} needs {missing[0]!r}, which no input or earlier step provides",
                )
            _check_params(source, f"{at}.shell" if step.shell is not None else f"{at}.with", spec, step.with_, known, secrets)
        if step.gate and (step.gate.after not in seen_ids or step.gate.after == step.id):
            where = "is not an earlier step" if step.gate.after in (s.id for s in runbook.steps) else "is not a step"
            raise RunbookError(source, f"{at}.gate.after", f"{step.gate.after!r} {where}")
        if step.gate and step.gate.at_least_input:
            _check_gate_input(source, f"{at}.gate.at_least", runbook, step.gate.at_least_input)

        _check_placeholders(source, f"{at}.command", step.command, known)
        if step.manual:
            _check_placeholders(source, f"{at}.manual.instructions", step.manual.instructions, known)
        if step.typed and step.typed not in known:
            raise RunbookError(source, f"{at}.typed", f"{step.typed!r} is not an input or a fact of an earlier step")

        produced = set(spec.produces) if spec else set()
        if step.undo:
            raw_undo = raw_steps[i].get("undo") if i < len(raw_steps) and isinstance(raw_steps[i], dict) else None
            where = f"{at}.undo" if isinstance(raw_undo, str) else f"{at}.undo.run"
            if step.undo.run:
                undo_spec = actions.get(step.undo.run)
                if undo_spec is None:
                    raise RunbookError(source, where, f"unknown action {step.undo.run!r}")
                missing = sorted(undo_spec.needs - known - produced)
                if missing:
                    raise RunbookError(
                        source, where, f"undo action {step.undo.run!r} needs {missing[0]!r}, which nothing before it provides"
                    )
                undo_where = f"{at}.shell.undo_argv" if step.shell is not None else f"{at}.undo.with"
                _check_params(source, undo_where, undo_spec, step.undo.with_, known | produced, secrets)
            undo_known = known | produced
            _check_placeholders(source, f"{at}.undo.command", step.undo.command, undo_known)
            _check_placeholders(source, f"{at}.undo.manual", step.undo.manual, undo_known)
        known |= produced
        secrets |= set(spec.produces_secrets) if spec else set()

    for i, name in enumerate(runbook.on_end):
        end_spec = actions.get(name)
        if end_spec is None:
            raise RunbookError(source, f"on_end[{i}]", f"unknown action {name!r}")
        if end_spec.params is not None and any(f.is_required() for f in end_spec.params.model_fields.values()):
            raise RunbookError(source, f"on_end[{i}]", f"action {name!r} needs parameters, which on_end cannot give")

    for i, item in enumerate(runbook.prerequisites):
        if item.checked_by and item.checked_by not in seen_ids:
            raise RunbookError(source, f"prerequisites[{i}].checked_by", f"{item.checked_by!r} is not a step")
    for name, spec_input in runbook.inputs.items():
        if spec_input.default is not None and spec_input.choices and spec_input.default not in spec_input.choices:
            raise RunbookError(source, f"inputs.{name}.default", f"{spec_input.default!r} is not one of the choices")


def _check_gate_input(source: str, where: str, runbook: Runbook, name: str) -> None:
    from steps.model import parse_duration

    spec = runbook.inputs.get(name)
    if spec is None:
        raise RunbookError(source, where, f"{{{name}}} is not an input of this runbook")
    if spec.default is None:
        raise RunbookError(source, where, f"input {name!r} sets a gate: give it a default duration (e.g. 24h)")
    try:
        parse_duration(spec.default)
    except ValueError as exc:
        raise RunbookError(source, f"inputs.{name}.default", str(exc)) from None


def _check_params(
    source: str, where: str, spec: ActionSpec, given: dict[str, Any], known: set[str], secrets: frozenset[str] | set[str] = frozenset()
) -> None:
    if spec.params is None:
        if given:
            raise RunbookError(source, where, f"action {spec.name!r} takes no parameters")
        return
    try:
        params = spec.params.model_validate(given)
    except ValidationError as exc:
        err = first_validation_error(source, exc)
        raise RunbookError(source, f"{where}.{err.where}" if err.where else where, err.message) from None
    # A safety rule that waits for a fact (e.g. step 7 for step 6's verification) must
    # have a step before it that can produce that fact, or it could never be met.
    for name, fact in params.needs().items():
        if fact not in known:
            raise RunbookError(
                source,
                f"{where}.{name}",
                f"needs {fact!r}, which no earlier step provides (add the step that produces it, or turn this rule off)",
            )
    # Parameters that are templates (a shell step's argv and env): every placeholder is
    # known, and a secret may fill only what the action keeps off the command line.
    for name, (text, secret_ok) in params.templates().items():
        for placeholder in _placeholder_names(source, f"{where}.{name}", text):
            if placeholder in secrets and not secret_ok:
                raise RunbookError(
                    source,
                    f"{where}.{name}",
                    f"{{{placeholder}}} is a secret: it never goes on a command line; pass it through env (e.g. env: {{TOKEN: '{{{placeholder}}}'}})",
                )
            if placeholder not in known and not (secret_ok and placeholder in secrets):
                raise RunbookError(source, f"{where}.{name}", f"undefined placeholder {{{placeholder}}}")


def _placeholder_names(source: str, where: str, text: str | None) -> list[str]:
    try:
        names = placeholders(text)
    except ValueError as exc:
        raise RunbookError(source, where, f"bad placeholder syntax: {exc} (write a literal brace as {{{{ or }}}})") from None
    for name in names:
        if not _NAME.match(name):
            raise RunbookError(source, where, f"placeholder {{{name}}} is not a plain name")
    return names


def _check_placeholders(source: str, where: str, text: str | None, known: set[str]) -> None:
    for name in _placeholder_names(source, where, text):
        if name not in known:
            raise RunbookError(source, where, f"undefined placeholder {{{name}}}")


def render(text: str | None, values: dict[str, Any]) -> str:
    """Fill placeholders; unknown ones show as <name> (a plan made before the facts exist)."""
    if not text:
        return ""

    class _Missing(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return f"<{key}>"

    return text.format_map(_Missing({k: v for k, v in values.items() if v not in (None, "")}))
