"""The result-count control: a small number box that also answers ``+`` and ``-``."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input

from clipseek.config import DEFAULT_TOP_K

#: The largest count the box offers; the engine allows more, but a terminal list does not.
MAX_TOP_K = 500


class TopKInput(Input):
    """A digits-only input; ``+``/``-`` (and up/down) step it without leaving the keyboard."""

    BINDINGS = [  # noqa: RUF012 - Textual's declared ClassVar
        Binding("plus,equals_sign,up", "step(1)", "More", show=False, priority=True),
        Binding("minus,down", "step(-1)", "Fewer", show=False, priority=True),
    ]

    class CountChanged(Message):
        """The count was changed (by a step, or by typing and pressing Enter / leaving)."""

        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

    def __init__(self, value: int = DEFAULT_TOP_K, *, id: str | None = None) -> None:
        super().__init__(
            str(value),
            restrict=r"\d{0,3}",
            max_length=3,
            id=id,
            tooltip="How many results (+/- to change)",
            select_on_focus=True,
        )
        self._count = value

    @property
    def count(self) -> int:
        return self._count

    def set_count(self, value: int, *, announce: bool = True) -> int:
        value = max(1, min(MAX_TOP_K, value))
        changed = value != self._count
        self._count = value
        if self.value != str(value):
            self.value = str(value)
            self.cursor_position = len(self.value)
        if changed and announce:
            self.post_message(self.CountChanged(value))
        return value

    def action_step(self, delta: int) -> None:
        self.set_count(self._typed_or_current() + delta)

    def _typed_or_current(self) -> int:
        return int(self.value) if self.value.isdigit() else self._count

    def commit(self) -> None:
        """Take what was typed (an empty or zero box snaps back to a valid count)."""
        self.set_count(self._typed_or_current() or 1)

    def on_blur(self, _event: events.Blur) -> None:
        self.commit()
