"""Screens of the clipseek app."""
