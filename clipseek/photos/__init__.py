"""Photos as files: reading images as a viewer shows them, their metadata, and how their
paths are shown to people."""
