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
    ("Debrief", "Training: each gotcha and its verdict, the end state, the timeline", "debrief", "ChecklistScreen"),
    ("Briefing", "Training: the scenario's briefing and goal, again", "briefing", "ChecklistScreen"),
    ("New session", "Leaves this session (resumable) for the screen it was started from", "new_session", "ChecklistScreen"),
    ("Start the session", "Opens the session picked on the start screen", "start", "StartScreen"),
    ("Resume the highlighted session", "Resumes an unfinished session from the journal", "resume", "StartScreen"),
    ("Training scenarios", "Lists the training scenarios, each with its briefing", "scenarios", "StartScreen"),
    ("Open the briefing", "The highlighted scenario's briefing", "open", "TrainingScreen"),
    ("Resume the highlighted session", "Resumes an unfinished training session", "resume", "TrainingScreen"),
    ("All options", "The start screen: every mode and option", "all_options", "TrainingScreen"),
    ("Start the scenario", "Starts this scenario's training session", "start", "BriefingScreen"),
    ("Export the debrief as Markdown", "Writes it to a file (default debrief-<session>.md here)", "export", "DebriefScreen"),
    ("Copy the debrief", "Copies it, as Markdown, to the clipboard", "copy", "DebriefScreen"),
    ("Back to the checklist", "Leaves the debrief for the checklist", "back", "DebriefScreen"),
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
            if where is not None and screen.check_action(action, ()) is False:
                continue  # e.g. the debrief outside training
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
