"""While the model loads (torch's import and load take seconds), the first files are decoded
on the idle core (issue 26): the same vectors as decoding after the load, each file decoded
once, and nothing kept that the loaded model would have prepared otherwise."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clipseek.indexing import pipeline
from clipseek.indexing.decoders import ImagePrep
from clipseek.models.hardware import surely_no_gpu

pytestmark = pytest.mark.skipif(not surely_no_gpu(), reason="decoding ahead is for CPU runs")


class _Recorder:
    """Every decode the indexer makes (path, and whether it was made ahead of the model);
    the model's load waits until ``ahead`` files were decoded ahead, as a slow load would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, ahead: int) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.ahead = ahead
        self.enough = threading.Event()
        self._lock = threading.Lock()
        real = pipeline.decode_file

        def decode(info: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return real(info, model, *args, **kwargs)
            finally:
                with self._lock:
                    self.calls.append((info.path, isinstance(model, ImagePrep)))
                    if sum(1 for _, early in self.calls if early) >= self.ahead:
                        self.enough.set()

        monkeypatch.setattr(pipeline, "decode_file", decode)

    def loader(self, model: Any) -> Any:
        def load(*_args: Any) -> Any:
            self.enough.wait(timeout=30)  # a load that outlasts decoding the first files
            return model

        return load


def _index(model_loader: Any, tiny_model: str, db: Path, photos: Path) -> tuple[Any, dict]:
    from clipseek.config import load_settings
    from clipseek.engine import Engine

    engine = Engine(load_settings({"model": tiny_model, "db": db}), model_loader=model_loader)
    summary = engine.index([photos])
    index = engine.open_index()
    entries = index.entries()
    got = index.get(sorted(entries))
    return summary, {entries[i].path: vector for i, (vector, _meta) in got.items()}


class _Mirrored:
    """The tiny model, but preparing each picture mirrored: its preprocessing settings are the
    export's, its pixels are not."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def prepare(self, image: Any) -> Any:
        return np.ascontiguousarray(np.asarray(self._inner.prepare(image))[:, ::-1])


@pytest.mark.parametrize("which", ["same", "mirrored"])
def test_files_decoded_while_the_model_loads_give_the_same_vectors(
    which: str,
    fast_path: str,
    loaded_tiny_model: Any,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (photos / "broken.jpg").write_bytes(b"not a picture")  # among the first decoded ahead
    model = loaded_tiny_model if which == "same" else _Mirrored(loaded_tiny_model)
    with monkeypatch.context() as patch:  # the reference: every file decoded after the load
        patch.setattr(pipeline.Indexer, "_decode_ahead", lambda *_a: False)
        expected_summary, expected = _index(lambda *_: model, fast_path, tmp_path / "a", photos)

    recorder = _Recorder(monkeypatch, ahead=13)
    summary, got = _index(recorder.loader(model), fast_path, tmp_path / "b", photos)

    assert recorder.enough.is_set()  # every file was decoded while the model loaded
    assert summary.new == expected_summary.new == 12
    assert [f.path for f in summary.failed] == [str(photos / "broken.jpg")]
    assert sorted(got) == sorted(expected)
    for path, vector in expected.items():
        assert np.array_equal(got[path], vector), path
    late = sorted(path for path, early in recorder.calls if not early)
    if which == "same":
        assert late == []  # each file decoded once, ahead
    else:  # prepared otherwise by the loaded model: everything decoded again after the load
        assert len(late) == 13 and str(photos / "broken.jpg") in late


def test_without_an_export_the_files_are_hashed_ahead_as_before(
    loaded_tiny_model: Any,
    tiny_model: str,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder(monkeypatch, ahead=1)
    recorder.enough.set()  # nothing will be decoded ahead: the load need not wait
    summary, _ = _index(recorder.loader(loaded_tiny_model), tiny_model, tmp_path / "db", photos)
    assert summary.new == 12
    assert recorder.calls and not any(early for _, early in recorder.calls)
