"""Indexing: walking folders, deciding what changed, decoding photos, running the model over
them and writing the vectors, with progress as events (:mod:`clipseek.indexing.events`)."""
