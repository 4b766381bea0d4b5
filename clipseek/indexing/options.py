"""How an index run is asked to work: its options and the batch and decoder choices by device."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clipseek.indexing.threads import thread_plan

if TYPE_CHECKING:
    from clipseek.config import Settings


@dataclass(frozen=True)
class IndexOptions:
    #: Images per model batch; None chooses by device (:func:`default_batch_size`).
    batch_size: int | None = None
    include_hidden: bool = False
    excludes: tuple[str, ...] = ()
    rebuild: bool = False
    max_megapixels: float | None = 200.0
    #: Decoder threads; None chooses from the machine (see :func:`thread_plan`).
    decode_workers: int | None = None
    #: torch intra-op threads while indexing; None chooses from the machine.
    torch_threads: int | None = None
    #: Leave out links that lead outside the indexed folders (they are reported either way).
    skip_outside_links: bool = False
    #: Decode in processes (shared memory) rather than threads; None: by device.
    decode_processes: bool | None = None
    #: Write to the index on a thread behind the model; None: on a GPU, not on a CPU.
    write_behind: bool | None = None
    #: First compare the tree with the index's records without chromadb or a model
    #: (:mod:`clipseek.indexing.unchanged`); False when the caller has just done so.
    quick_check: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **choices: Any) -> IndexOptions:
        """Options for a run with ``settings`` (its batch size, if the user set one, and
        its image size limit) and the run's own ``choices``."""
        return cls(
            batch_size=settings.explicit_batch_size,
            max_megapixels=settings.max_megapixels,
            **choices,
        )

    def workers(self, device: str = "cpu") -> int:
        return thread_plan(device, self.decode_workers, self.torch_threads)[1]


#: Images per batch when neither the user nor the device says otherwise. A GPU needs large
#: batches to be busy; on a CPU, larger batches bought nothing measurable and cost memory
#: (docs/PERFORMANCE.md, "GPU indexing").
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 256

#: Records per Chroma write when writes run behind the model: Chroma's insert rate grows
#: with the write size (docs/PERFORMANCE.md, "GPU indexing").
WRITE_BATCH = 2048


def default_batch_size(device: str) -> int:
    return GPU_BATCH_SIZE if device.startswith("cuda") else CPU_BATCH_SIZE


def decode_in_processes(device: str, workers: int) -> bool:
    """Whether decoders should be processes rather than threads.

    On a GPU machine every core decodes and the GIL is the limit: processes decode several
    times faster than threads there (docs/PERFORMANCE.md, "GPU indexing"). On a CPU the model
    shares the cores and threads keep the memory and start-up small.
    ``CLIPSEEK_DECODE=threads|processes`` overrides (for measuring).
    """
    forced = os.environ.get("CLIPSEEK_DECODE", "").strip().lower()
    if forced in ("threads", "processes"):
        return forced == "processes"
    return device != "cpu" and workers >= 4
