"""Widgets of the clipseek app."""
