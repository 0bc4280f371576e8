"""The registry of actions a runbook may name in `run:` and `undo:`.

Action modules register themselves with `@action(...)`; `registry()` imports them on
first use. They import their SDKs inside the functions, so loading the registry (as
`handrail check` does) stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from steps.actions.base import ActionSpec, Outcome, Params, Preflight, Preview, StepContext

_ACTIONS: dict[str, ActionSpec] = {}
_MODULES = (
    "steps.actions.iam",
    "steps.actions.claim",
    "steps.actions.consumers",
    "steps.actions.audit",
    "steps.actions.offboard",
    "steps.actions.shell",
)
_loaded = False


def action(
    name: str,
    *,
    title: str,
    command: str | None = None,
    needs: Iterable[str] = (),
    produces: Iterable[str] = (),
    needs_secrets: Iterable[str] = (),
    produces_secrets: Iterable[str] = (),
    mutates: bool,
    params: type[Params] | None = None,
    preview: Callable[[StepContext], Preview] | None = None,
    preflight: Callable[[StepContext], Preflight] | None = None,
    available: Callable[[Any, Mapping[str, str]], str | None] | None = None,
) -> Callable[[Callable[[StepContext], Outcome]], Callable[[StepContext], Outcome]]:
    def register(fn: Callable[[StepContext], Outcome]) -> Callable[[StepContext], Outcome]:
        if name in _ACTIONS:
            raise RuntimeError(f"action {name!r} registered twice")
        _ACTIONS[name] = ActionSpec(
            name=name,
            fn=fn,
            title=title,
            command=command,
            needs=frozenset(needs),
            produces=frozenset(produces),
            needs_secrets=frozenset(needs_secrets),
            produces_secrets=frozenset(produces_secrets),
            mutates=mutates,
            params=params,
            preview=preview,
            preflight=preflight,
            available=available,
        )
        return fn

    return register


def registry() -> dict[str, ActionSpec]:
    global _loaded
    if not _loaded:
        for module in _MODULES:
            importlib.import_module(module)
        _loaded = True
    return _ACTIONS


def get(name: str) -> ActionSpec:
    return registry()[name]
