"""Updating a Static at the least cost: the checklist refreshes often (each key, each
engine event, each second), and most of what it would redraw has not changed.

Textual's `Static.update` lays the whole screen out again by default; a layout is only
needed when the widget's size changes, and a repaint only when its content does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.content import Content
from textual.geometry import Size
from textual.reactive import Reactive
from textual.visual import VisualType
from textual.widgets import Static

if TYPE_CHECKING:
    from textual.screen import Screen


# Textual lays the screen out a second time (and draws a second frame) after any layout
# that changed a widget's virtual size. For a widget that does not scroll, that second
# layout finds nothing to move: declared on such a widget, the virtual size is recorded
# without it. (Scrollbars that appear or vanish still lay out again: that is
# `show_vertical_scrollbar`, not this.)
def settled_virtual_size() -> Reactive[Size]:
    return Reactive(Size(0, 0), layout=False, repaint=False)


def same(old: VisualType, new: VisualType) -> bool:
    """The same text and styles (`Content ==` compares the text alone)."""
    if isinstance(old, Content) and isinstance(new, Content):
        return old.is_same(new)
    if isinstance(old, str) and isinstance(new, str):
        return old == new
    return False


class Part(Static):
    """A Static whose size change is settled by the layout that made it (see above)."""

    virtual_size = settled_virtual_size()


def update_static(widget: Static, content: VisualType) -> bool:
    """Show `content` in `widget`: nothing if it is already shown, a repaint if its height
    stays the same, a layout only if it changes. True if anything was redrawn."""
    if same(widget.content, content):
        return False
    width = widget.size.width
    fixed_width = widget.styles.width is None or not widget.styles.width.is_auto
    if not width or not widget.display or not fixed_width:
        widget.update(content)  # not laid out yet, or its width follows its content
        return True
    height = widget.size.height
    widget.update(content, layout=False)
    if widget.get_content_height(widget.container_size, widget.app.size, width) != height:
        widget.refresh(layout=True)
    return True


class WholeFrames:
    """Screen mixin: a frame takes in every repaint already asked for.

    Textual repaints a widget once the screen has its message, sent from the widget's
    next idle. A repaint asked for while a frame is being made (a scrollbar whose thumb
    the layout just moved, a scrollbar restyled as the screen comes back) misses that
    frame and costs another, 1/60 s later, of what the first one already showed. Here the
    frame paints them too; their message, when it comes, finds nothing left to paint.
    Likewise a dialog drawn whole draws the screen under it afresh: what that screen had
    asked to repaint (all of it, when the dialog was pushed) is done.
    (Textual is pinned exactly in pyproject.toml; tests/test_tui_frames.py fails if this
    stops holding.)"""

    def _compositor_refresh(self) -> None:
        screen = cast("Screen[object]", self)
        app = screen.app
        if screen is app.screen:
            compositor = screen._compositor
            pending = {widget for widget in compositor.visible_widgets if widget._repaint_required or widget._repaint_regions}
            if pending:
                for widget in pending:
                    widget._repaint_required = False
                compositor.update_widgets(pending)
            if screen in screen._dirty_widgets:  # the screen itself, whole: with what shows under it
                for background in app._background_screens:
                    for widget in (background, *background._compositor.visible_widgets):
                        widget._repaint_required = False
                        widget._exchange_repaint_regions()
                    background._dirty_widgets.clear()
        super()._compositor_refresh()  # type: ignore[misc]
