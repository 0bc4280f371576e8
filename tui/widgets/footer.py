"""The footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class SteadyFooter(Footer):
    """Textual's footer rebuilds all its keys (unmount, mount, restyle, two layouts) each
    time the screen's bindings are refreshed, which includes every return from a dialog
    or the help: escape cost three frames. This one rebuilds only when a key, its
    description or whether it is enabled has changed."""

    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        shown = self._keys(screen)
        if shown == self._shown:
            return
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._shown = shown  # Footer rebuilds now (else later: the next change rebuilds)
        super().bindings_changed(screen)

    def _keys(self, screen: Screen) -> tuple:
        return (
            self.show_command_palette,
            self.compact,
            tuple(
                (binding.key, binding.action, binding.description, binding.group, enabled, tooltip)
                for _node, binding, enabled, tooltip in screen.active_bindings.values()
                if binding.show or binding.action == "command_palette"
            ),
        )


PALETTE_KEY_WIDTH = 100  # columns: narrower, the ctrl+p key gives its room to the screen's keys


def fit_palette_key(footer: Footer, width: int) -> None:
    """Show the footer's ctrl+p key from PALETTE_KEY_WIDTH columns, hide it below
    (ctrl+p still works; ? lists it). Footer reads it only when it composes its keys: a
    terminal resized across the width must rebuild it, or the key stays as it was at the
    start (at 80 columns, taking the room the screen's keys need)."""
    show = width >= PALETTE_KEY_WIDTH
    if footer.show_command_palette == show:
        return
    footer.show_command_palette = show
    if footer.is_mounted:
        footer.refresh(recompose=True)
