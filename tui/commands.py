"""The command palette (ctrl+p): the app's actions, by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, help, action name, screen class name or None for any screen)
COMMANDS = [
    ("Run the next step", "Runs the next step after its confirmation", "run", "ChecklistScreen"),
    ("Roll back", "Shows the rollback plan; confirm to run it", "rollback", "ChecklistScreen"),
    ("Skip the next step", "Records it as skipped, with a reason (audited)", "skip", "ChecklistScreen"),
    ("Override", "Passes a closed gate or a block early, with a reason (audited)", "override", "ChecklistScreen"),
    ("Fast-forward", "Training: skips the running wait or the observation gate", "fast_forward", "ChecklistScreen"),
    ("Copy the command", "Copies the highlighted step's command to the clipboard", "copy", "ChecklistScreen"),
    ("Reveal the new secret", "Shows it for a few seconds, then hides it (audited)", "reveal", "ChecklistScreen"),
    ("New session", "Leaves this session (resumable) for the start screen", "new_session", "ChecklistScreen"),
    ("Start the session", "Opens the session picked on the start screen", "start", "StartScreen"),
    ("Resume the highlighted session", "Resumes an unfinished session from the journal", "resume", "StartScreen"),
    ("Help", "Lists every key", "app.help", None),
    ("Toggle dark / light", "Switches between the dark and the light theme", "app.toggle_theme", None),
    ("Quit", "Quits; an unfinished session can be resumed", "app.quit", None),
]


class HandrailCommands(Provider):
    def _commands(self):
        screen = self.screen
        for title, help_text, action, where in COMMANDS:
            if where is not None and type(screen).__name__ != where:
                continue
            yield title, help_text, partial(screen.run_action, action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
