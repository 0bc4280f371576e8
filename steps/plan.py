"""`handrail plan`: a runbook as a readable checklist (text or Markdown)."""

from __future__ import annotations

from steps.actions import registry
from steps.clock import human_duration
from steps.model import Runbook, Step


def undo_text(step: Step) -> str:
    if step.undo is None:
        if step.point_of_no_return:
            return "none: this is the point of no return"
        if step.irreversible:
            return "none: irreversible"
        return "none needed (changes nothing)" if step.run and not registry()[step.run].mutates else "none"
    if step.undo.run:
        spec = registry()[step.undo.run]
        return f"{step.undo.summary or spec.title}: {step.undo.command or spec.command}"
    if step.undo.later:
        return f"none by handrail; a person, after a rollback: {step.undo.manual}"
    return f"manual: {step.undo.manual}"


def _shown(command: str) -> str:
    """A command as the operator reads it: placeholders stay, doubled braces are one."""
    return command.replace("{{", "{").replace("}}", "}")


def gate_text(book: Runbook, step: Step) -> str:
    gate = step.gate
    assert gate is not None
    if gate.at_least_input:
        default = book.inputs[gate.at_least_input].default or "?"
        return f"at least {default} (input {gate.at_least_input}) after {gate.after}"
    return f"at least {human_duration(gate.at_least)} after {gate.after}"


def step_kind(step: Step) -> str:
    if step.is_manual:
        return "manual"
    if step.shell is not None:
        return "shell command"
    spec = registry()[step.run or ""]
    return f"{step.run} ({'changes things' if spec.mutates else 'read-only'})"


def render_plan(book: Runbook, fmt: str = "text", last_validated: str | None = None) -> str:
    h = book.header
    out: list[str] = []
    if fmt == "markdown":
        out += [f"# {book.title}", ""]
        out.append(
            f"**Mode:** {h.mode} · **Last validated:** {h.last_validated or 'never'} · **Validation:** {h.validation_method} · "
            f"**Average duration:** {h.average_duration} · **Required role:** {h.required_role}"
            + (f" ({h.elevated_role})" if h.elevated_role else "")
        )
        if last_validated:
            out += ["", f"**Last validated:** {last_validated}"]
        out += ["", book.applies_to, "", "## When to run", ""]
        out += [f"- **{w.id}**: {w.text}" for w in book.when_to_run]
        out += ["", "## Prerequisites", ""]
        out += [f"- [ ] {p.text}" for p in book.prerequisites]
        out += ["", "## Steps", ""]
        for s in book.steps:
            out.append(f"### {s.number}. {s.title}")
            out += ["", s.why, "", "```sh", _shown(s.command), "```", ""]
            meta = [f"confirm: {s.confirm}", f"action: {step_kind(s)}"]
            if s.gate:
                meta.append(f"gate: {gate_text(book, s)}")
            if s.irreversible:
                meta.append("**irreversible**" + (" (point of no return)" if s.point_of_no_return else ""))
            out.append("- " + " · ".join(meta))
            if s.manual:
                out.append(f"- manual: {s.manual.instructions.strip()}")
            out += [f"- undo: {undo_text(s)}", ""]
        out += ["## Rollback", "", book.rollback.summary, "", f"After the point of no return: {book.rollback.after_point_of_no_return}", ""]
        out += ["## Known gotchas", ""] + [f"- {g.text}" for g in book.gotchas]
        out += ["", "## References", ""] + [f"- [{r.title}]({r.url})" for r in book.references]
        return "\n".join(out) + "\n"

    out.append(f"{book.title} ({book.id})")
    out.append(
        f"mode {h.mode} · last validated {h.last_validated or 'never'} ({h.validation_method}) · "
        f"average {h.average_duration} · role {h.required_role}" + (f", {h.elevated_role}" if h.elevated_role else "")
    )
    if last_validated:
        out.append(f"last validated: {last_validated}")
    out += ["", "When to run:"] + [f"  - {w.id}: {w.text}" for w in book.when_to_run]
    out += ["", "Prerequisites:"] + [f"  [ ] {p.text}" for p in book.prerequisites]
    out += ["", "Steps:"]
    for s in book.steps:
        confirm = f"type {{{s.typed}}}" if s.irreversible and s.typed else f"confirm {s.confirm}"
        flags = "; IRREVERSIBLE" + (", point of no return" if s.point_of_no_return else "") if s.irreversible else ""
        out.append(f"  {s.number:>3}. {s.title}   [{step_kind(s)}; {confirm}{flags}]")
        for line in _shown(s.command).splitlines():
            out.append(f"       $ {line}")
        if s.gate:
            out.append(f"       gate: {gate_text(book, s)}")
        out.append(f"       undo: {undo_text(s)}")
    out += ["", "Rollback:", f"  {book.rollback.summary}", f"  After the point of no return: {book.rollback.after_point_of_no_return}"]
    out += ["", "Gotchas:"] + [f"  - {g.text}" for g in book.gotchas]
    out += ["", "References:"] + [f"  - {r.title}: {r.url}" for r in book.references]
    return "\n".join(out) + "\n"
