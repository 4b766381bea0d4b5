"""A key footer that drops whole keys, never letters, when the terminal is narrow.

Textual's footer clips at the right edge, so at 60 columns the last key read "i Inde".
The keys are declared most useful first; the ones that do not fit are hidden from the end
(every one of them stays in the command palette and in help), and come back when there is
room again.
"""

from __future__ import annotations

from textual import events
from textual.geometry import Size
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class FittingFooter(Footer):
    """:class:`~textual.widgets.Footer` that shows as many whole keys as fit."""

    async def recompose(self) -> None:
        await super().recompose()
        self.call_after_refresh(self._fit)

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def _width_of(self, key: FooterKey) -> int:
        """Cells the key takes when shown (its text, padding, border and margins)."""
        content = key.get_content_width(Size(0, 0), self.app.size)
        return content + key.styles.gutter.width + key.styles.margin.width

    def _fit(self) -> None:
        if not self.is_attached:
            return
        keys = [key for key in self.query(FooterKey) if not key.has_class("-command-palette")]
        room = self.size.width - sum(
            self._width_of(key) for key in self.query(FooterKey).filter(".-command-palette")
        )
        used = 0
        fits = True
        for key in keys:
            used += self._width_of(key)
            fits = fits and used <= room
            key.display = fits
