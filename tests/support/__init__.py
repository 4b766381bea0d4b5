"""Helpers shared by the tests: plain functions and classes, no fixtures, no tests.

Fixtures live in ``conftest.py`` files; everything else a second test file needs lives
here, so no test module imports another. One module per trade:

- ``waiting``: wait until a condition holds (threads and asyncio alike).
- ``probes``: run code in a fresh interpreter and see which modules it left imported; a
  command that failed in one clear sentence.
- ``pictures``: small generated photos, awkward files, the EXIF library, planted duplicates.
- ``files``: denied permissions, snapshots and hashes of a tree (proof nothing was written).
- ``stores``: a synthetic index (unit vectors, records, filters) for the store's readers.
- ``engines``: settings and engines on the tiny model, a loader that counts its calls.
- ``processes``: real ``python -m clipseek`` processes with an isolated environment.
- ``servers``: ``clipseek serve`` in a thread or a process, ``chroma run``, free ports.
- ``app``: drive the Textual app with Pilot (search, the gallery, the EXIF library app).
- ``browser``: headless Chromium for the web page.
- ``texts``: thousands of varied strings in many scripts, for tokenizer tests.
- ``fastpath``: the fast path (ONNX on an export) held to torch: vectors and rankings.
"""

from __future__ import annotations

from pathlib import Path

#: The repository: what a child process needs on its PYTHONPATH to run this checkout.
REPO_ROOT = Path(__file__).resolve().parents[2]
