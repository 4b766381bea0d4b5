"""Slice tables of a BPE tokenizer.json: a query tokenises with the slice of the model its
text can use and gets the whole file's ids, without loading the whole vocabulary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from clipseek.models.token_slices import SLICES_FILE, read_slices, write_slices
from clipseek.models.tokenizer import HubTokenizer
from clipseek.testing import MULTILINGUAL_SAMPLES, train_hub_tokenizer, write_full_size_bpe
from tests.support.texts import varied_texts

#: SigLIP 2's kind over fewer texts in the quick tier; every flavour over 2,000 texts (seconds
#: each) in the full run.
FLAVOURS = (
    pytest.param(("bpe", 600), id="bpe-quick"),
    pytest.param(("bpe", 2000), id="bpe", marks=pytest.mark.slow),
    pytest.param(("bpe-whole", 2000), id="bpe-whole", marks=pytest.mark.slow),
    pytest.param(("bytelevel", 2000), id="bytelevel", marks=pytest.mark.slow),
    pytest.param(("full-size", 2000), id="full-size", marks=pytest.mark.slow),
)


def _bytelevel(folder: Path) -> Path:
    """A GPT-2-style byte-level BPE: another pre-tokeniser, the same slicing."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        special_tokens=["<pad>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(list(MULTILINGUAL_SAMPLES) * 20 + varied_texts(600, seed=9), trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


@pytest.fixture(scope="module", params=FLAVOURS)
def bpe_file(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, int]:
    """A tokenizer file of one flavour, and how many texts to compare with it."""
    flavour, count = request.param
    folder = tmp_path_factory.mktemp(flavour)
    if flavour == "bytelevel":
        return _bytelevel(folder), count
    kind = "bpe-whole" if flavour == "bpe-whole" else "bpe"
    path = train_hub_tokenizer(folder, specials="bos", kind=kind, seed=4)
    if flavour == "full-size":  # SigLIP 2's vocabulary size is 256,000; 64,000 here
        write_full_size_bpe(path, 64_000, seed=4)
    return path, count


def _tables(path: Path) -> Path:
    tables = path.with_name(SLICES_FILE)
    assert write_slices(path, tables, keep=["<pad>"])
    return tables


def test_sliced_ids_equal_the_whole_files_for_thousands_of_texts(
    bpe_file: tuple[Path, int],
) -> None:
    """Raw texts (capitals, punctuation, tabs, every script) through the model alone, and
    cleaned ones through open_clip's steps (context 16: cut and uncut), both ways."""
    from tokenizers import Tokenizer

    path, count = bpe_file
    slices, settled = read_slices(_tables(path), path)
    assert slices is not None and settled
    whole = Tokenizer.from_file(str(path))
    # The slice for one text is a small part of the model, not the model again.
    one = slices.tokenizer_for(["a dog on the beach"])
    assert one is not None and one.get_vocab_size() < whole.get_vocab_size()
    texts = varied_texts(count, seed=5)
    for start in range(0, len(texts), 100):
        batch = texts[start : start + 100]
        sliced = slices.tokenizer_for(batch)
        assert sliced is not None
        for text in batch:
            assert sliced.encode(text).ids == whole.encode(text).ids, text
    for clean in ("canonicalize", "whitespace"):
        reference = HubTokenizer(path, 16, clean=clean, pad_token="<pad>")
        mine = HubTokenizer(path, 16, clean=clean, pad_token="<pad>", slices=slices)
        assert mine.sliced and not reference.sliced
        expected, expected_cut = reference(texts)
        ids, cut = mine(texts)
        assert (ids == expected).all() and cut == expected_cut
        assert any(cut) and not all(cut)
        assert [mine.token_count(t) for t in texts[:50]] == [
            reference.token_count(t) for t in texts[:50]
        ]


def test_a_text_holding_an_added_token_is_tokenised_by_the_whole_file(tmp_path: Path) -> None:
    path = train_hub_tokenizer(tmp_path, specials="bos", kind="bpe", seed=6)
    slices, _ = read_slices(_tables(path), path)
    assert slices is not None
    texts = ["a dog <bos> on a beach", "<pad><pad>", "ein Hund"]
    assert slices.tokenizer_for(texts[:1]) is None
    reference = HubTokenizer(path, 16, clean="whitespace", pad_token="<pad>")
    mine = HubTokenizer(path, 16, clean="whitespace", pad_token="<pad>", slices=slices)
    expected, _ = reference(texts)
    assert (mine(texts)[0] == expected).all()
    assert (expected == reference.pad_id).sum() < expected.size  # the specials did count


def test_a_unigram_file_is_read_whole_and_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clipseek.models.token_slices as token_slices

    path = train_hub_tokenizer(tmp_path, specials="eos", kind="unigram", seed=7)
    assert not write_slices(path, path.with_name(SLICES_FILE))
    assert read_slices(path.with_name(SLICES_FILE), path) == (None, True)

    def never(*args: object, **kwargs: object) -> bool:
        raise AssertionError("a settled file was written again")

    monkeypatch.setattr(token_slices, "write_slices", never)
    tokenizer = HubTokenizer.from_export(path, 16, clean="whitespace", pad_token="<pad>")
    reference = HubTokenizer(path, 16, clean="whitespace", pad_token="<pad>")
    assert not tokenizer.sliced
    texts = list(MULTILINGUAL_SAMPLES)
    assert (tokenizer(texts)[0] == reference(texts)[0]).all()


def _damage(tables: Path, how: str) -> None:
    raw = bytearray(tables.read_bytes())
    if how == "flipped":
        middle = len(raw) // 2
        raw[middle : middle + 64] = bytes(b ^ 0x5A for b in raw[middle : middle + 64])
    elif how == "truncated":
        raw = raw[: len(raw) // 3]
    else:  # "foreign": tables of a file one byte longer
        raw = bytearray()
    tables.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flipped", "truncated", "foreign"])
def test_damaged_or_foreign_tables_are_passed_over_and_written_again(
    tmp_path: Path, how: str
) -> None:
    path = train_hub_tokenizer(tmp_path, specials="bos", kind="bpe", seed=8)
    tables = _tables(path)
    if how == "foreign":
        other = tmp_path / "other" / "tokenizer.json"
        other.parent.mkdir()
        other.write_bytes(path.read_bytes() + b" ")
        tables.write_bytes(_tables(other).read_bytes())
    else:
        _damage(tables, how)
    assert read_slices(tables, path) == (None, False)
    texts = varied_texts(300, seed=8)
    reference = HubTokenizer(path, 16, clean="canonicalize", pad_token="<pad>")
    mine = HubTokenizer.from_export(path, 16, clean="canonicalize", pad_token="<pad>")
    assert mine.sliced  # written again from tokenizer.json, sound
    assert (mine(texts)[0] == reference(texts)[0]).all()


def test_tables_that_cannot_be_written_leave_the_whole_file_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only export folder: the query reads the tokenizer whole, as before."""
    import clipseek.models.token_slices as token_slices

    path = train_hub_tokenizer(tmp_path, specials="bos", kind="bpe", seed=10)

    def read_only(path: Path, data: bytes) -> bool:
        return False  # as write_whole answers where the folder cannot be written

    monkeypatch.setattr(token_slices, "write_whole", read_only)
    mine = HubTokenizer.from_export(path, 16, clean="canonicalize", pad_token="<pad>")
    assert not mine.sliced and not path.with_name(SLICES_FILE).exists()
    reference = HubTokenizer(path, 16, clean="canonicalize", pad_token="<pad>")
    texts = list(MULTILINGUAL_SAMPLES)
    assert (mine(texts)[0] == reference(texts)[0]).all()


def test_a_sliced_tokenizer_never_reads_the_whole_file(tmp_path: Path) -> None:
    """Once built, the tokenizer answers with tokenizer.json gone: it reads only the tables."""
    path = train_hub_tokenizer(tmp_path, specials="bos", kind="bpe", seed=11)
    _tables(path)
    reference = HubTokenizer(path, 16, clean="canonicalize", pad_token="<pad>")
    texts = varied_texts(500, seed=11)
    expected = reference(texts)[0]
    mine = HubTokenizer.from_export(path, 16, clean="canonicalize", pad_token="<pad>")
    os.rename(path, path.with_name("moved.json"))
    assert (mine(texts)[0] == expected).all()


def test_tables_hold_no_more_than_a_few_bytes_a_token(tmp_path: Path) -> None:
    """What a query loads: about 12 MB for SigLIP 2's 256,000 tokens, scaled down here."""
    path = train_hub_tokenizer(tmp_path, specials="bos", kind="bpe", seed=12)
    write_full_size_bpe(path, 64_000, seed=12)
    tables = _tables(path)
    with np.load(tables) as z:
        loaded = sum(z[name].nbytes for name in z.files)
    assert loaded < 64 * 64_000
    assert tables.stat().st_size < path.stat().st_size * 2


@pytest.mark.slow  # an ONNX export (seconds)
def test_a_siglip2_like_export_queries_through_its_slices(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The export writes the tables; the fast path tokenises through them (tokenizer.json
    unread) and agrees with torch; an export that lacks them (written before they existed)
    gets them at its first query."""
    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import build_tiny_siglip

    folder = build_tiny_siglip(tmp_path_factory.mktemp("siglip2-bpe"), seed=3, kind="bpe")
    spec = resolve_model(f"local-dir:{folder}")
    torch_model = load_model(spec, device="cpu", precision="fp32")
    export = export_model(torch_model)
    tables = export.path(SLICES_FILE)
    assert tables.exists()
    texts = [*MULTILINGUAL_SAMPLES, "", "x " * 80]
    expected = torch_model.encode_texts(texts)
    fast = OnnxModel(spec, export)
    got = fast.encode_texts(texts)
    assert fast._tokenize_setup().sliced
    assert got.truncated == expected.truncated
    assert float((got.vectors * expected.vectors).sum(1).min()) >= 0.9999

    tables.unlink()  # as an export made before the tables existed
    again = OnnxModel(spec, export)
    assert np.array_equal(again.encode_texts(texts).vectors, got.vectors)
    assert again._tokenize_setup().sliced and tables.exists()
