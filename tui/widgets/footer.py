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
