"""Model families on the fast path: CLIP's BPE models of every trainer, and SigLIP-style
models with a SentencePiece tokenizer, each exported and queried without torch with the
same guarantees as ViT-B/32 (cosine ≥ 0.9999 against torch, identical rankings)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from clipseek.models import load_model, resolve_model
from tests.support.fastpath import assert_fast_path_agrees
from tests.support.texts import varied_texts

#: open_clip pretrained tags of the CLIP-BPE families: OpenAI, LAION, DataComp, MetaCLIP, DFN.
CLIP_BPE_FAMILIES = (
    ("ViT-B-32-quickgelu", "openai"),
    ("ViT-B-32", "laion2b_s34b_b79k"),
    ("ViT-B-32-256", "datacomp_s34b_b86k"),
    ("ViT-B-32", "datacomp_xl_s13b_b90k"),
    ("ViT-B-32-quickgelu", "metaclip_400m"),
    ("ViT-B-16-quickgelu", "dfn2b"),
)


# --------------------------------------------------------------------------- CLIP's BPE


@pytest.mark.parametrize(("arch", "tag"), CLIP_BPE_FAMILIES)
def test_every_clip_bpe_family_tokenises_and_preprocesses_on_the_fast_path(
    arch: str, tag: str
) -> None:
    """Their tokenizer is exactly the one the fast path reproduces, and their published
    preprocessing is one Pillow reproduces byte for byte."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    from clipseek.models.base import PreprocessConfig
    from clipseek.models.preprocess import pil_supported
    from clipseek.models.tokenizer import supported

    assert supported(open_clip.get_tokenizer(arch)) is None
    cfg = get_pretrained_cfg(arch, tag)
    size = open_clip.get_model_config(arch)["vision_cfg"]["image_size"]
    pp = PreprocessConfig(
        (size, size), cfg["mean"], cfg["std"], cfg["interpolation"], cfg["resize_mode"]
    )
    assert pil_supported(pp)


@pytest.mark.slow  # seconds
def test_gelu_clip_at_another_size_exports_and_agrees(tmp_path: Path) -> None:
    """LAION's and DataComp's towers (GELU, not OpenAI's QuickGELU), at a non-default input
    size as ViT-B-32-256 has, through load, export and the fast path."""
    from clipseek.models.export import export_model
    from clipseek.models.onnx_backend import OnnxModel
    from clipseek.testing import TINY_MODEL_CFG, build_tiny_model

    cfg = {**TINY_MODEL_CFG, "quick_gelu": False}
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "image_size": 40}
    folder = build_tiny_model(tmp_path / "gelu", seed=2, model_cfg=cfg)
    spec = resolve_model(f"local-dir:{folder}")
    torch_model = load_model(spec, device="cpu", precision="fp32")
    export = export_model(torch_model)
    assert export.manifest["tokenizer"]["kind"] == "clip-bpe"
    assert export.preprocess.size == (40, 40)
    assert_fast_path_agrees(torch_model, OnnxModel(spec, export))


# --------------------------------------------------------------------------- SentencePiece


@pytest.fixture(scope="module")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipseek.testing import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"), seed=1)


@pytest.mark.parametrize(
    ("specials", "side", "kind"),
    [
        ("eos", "right", "unigram"),
        ("bos", "right", "unigram"),
        ("bos", "left", "unigram"),
        ("bos", "right", "bpe"),
        ("bos", "right", "bpe-whole"),
    ],
)
@pytest.mark.slow  # seconds
def test_hub_tokenizer_gives_open_clips_ids_for_thousands_of_strings(
    tmp_path: Path, specials: str, side: str, kind: str
) -> None:
    """clipseek's tokenizer (the `tokenizers` library alone) against open_clip's HFTokenizer
    (transformers) over the same trained SentencePiece-style file: T5-like (SigLIP) and
    Gemma-like (SigLIP 2: BPE with byte fallback, with and without a pre-tokeniser) special
    tokens, both padding sides, cut and uncut texts; for BPE also as a query reads it,
    through the export's slice tables."""
    pytest.importorskip("transformers")
    from open_clip.tokenizer import HFTokenizer

    from clipseek.models.token_slices import SLICES_FILE
    from clipseek.models.tokenizer import HubTokenizer, hub_tokenizer_of, hub_tokenizer_settings
    from clipseek.testing import train_hub_tokenizer

    path = train_hub_tokenizer(tmp_path, specials=specials, padding_side=side, seed=3, kind=kind)
    texts = varied_texts(3000, seed=len(specials) + len(side))
    for clean in ("canonicalize", "whitespace"):
        reference = HFTokenizer(str(tmp_path), context_length=16, clean=clean)
        expected = reference(texts).numpy()
        mine, truncated = HubTokenizer.from_folder(tmp_path, 16, clean=clean)(texts)
        assert (mine == expected).all()
        assert any(truncated) and not all(truncated)
        converted, _ = hub_tokenizer_of(reference)(texts)
        assert (converted == expected).all()
        settings = hub_tokenizer_settings(tmp_path)  # as the export's manifest records them
        query = HubTokenizer.from_export(path, 16, clean=clean, **settings)
        assert query.sliced == kind.startswith("bpe")
        assert (query(texts)[0] == expected).all()
    assert (tmp_path / SLICES_FILE).exists()


@pytest.mark.slow  # an ONNX export (about 4 s): kept out of the quick tier
def test_siglip_family_exports_and_agrees_without_transformers_or_torch(tiny_siglip: Path):
    """Load (clipseek's tokenizer, no transformers), export (the token table beside the
    text graph), and the fast path: same vectors, same rankings, the table mapped."""
    from clipseek.models.export import TOKEN_TABLE_FILE, export_model
    from clipseek.models.onnx_backend import OnnxModel

    spec = resolve_model(f"local-dir:{tiny_siglip}")
    torch_model = load_model(spec, device="cpu", precision="fp32")
    assert torch_model.preprocess_cfg.resize_mode == "squash"
    assert torch_model.preprocess_cfg.mean == pytest.approx((0.5, 0.5, 0.5))
    export = export_model(torch_model)
    manifest = export.manifest
    assert manifest["tokenizer"]["kind"] == "hub" and manifest["text_input"] == "embeddings"
    assert manifest["logit_bias"] == pytest.approx(-10.0)
    table = np.load(export.path(TOKEN_TABLE_FILE), mmap_mode="r")
    assert table.shape == tuple(torch_model._model.text.token_embedding.weight.shape)
    fast = OnnxModel(spec, export)
    assert_fast_path_agrees(torch_model, fast)
    assert isinstance(fast._table, np.memmap)


@pytest.mark.slow  # a child process
def test_siglip_fast_path_runs_in_a_process_without_torch(tiny_siglip: Path, tmp_path: Path):
    """A fresh process answers a non-Latin query through the export with no torch, no
    open_clip and no transformers imported."""
    import os
    import subprocess

    from clipseek.models.export import export_model

    spec = resolve_model(f"local-dir:{tiny_siglip}")
    export_model(load_model(spec, device="cpu", precision="fp32"))
    code = (
        "import sys\n"
        "from clipseek.models import resolve_model\n"
        "from clipseek.models.onnx_backend import load_onnx_model\n"
        f"model = load_onnx_model(resolve_model({spec.name!r}))\n"
        "v = model.encode_texts(['夕暮れのビーチで遊ぶ犬', 'Straße im Regen']).vectors\n"
        "print('SHAPE', v.shape)\n"
        "print('HEAVY', [m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert "SHAPE (2, 192)" in out.stdout and "HEAVY []" in out.stdout


def test_siglip_without_a_tokenizer_file_or_transformers_is_one_clear_sentence(
    tiny_siglip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from clipseek.errors import ModelError

    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_siglip, folder)
    (folder / "tokenizer.json").unlink()
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ModelError) as err:
        load_model(resolve_model(f"local-dir:{folder}"), device="cpu", precision="fp32")
    assert "transformers" in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- calibration


def test_each_family_reads_its_cosines_on_its_own_scale(tiny_siglip: Path, tiny_model: str):
    from clipseek.models.calibration import calibration_for, model_family

    assert model_family(resolve_model(f"local-dir:{tiny_siglip}")) == "siglip"
    assert model_family(resolve_model(tiny_model)) == "clip"
    assert model_family(resolve_model("ViT-B-32-SigLIP2-256:webli")) == "siglip"
    assert model_family(resolve_model("ViT-B-32:laion2b_s34b_b79k")) == "clip"
    clip = calibration_for("clip")
    assert clip.good(0.30) and not clip.good(0.18)
    siglip = calibration_for("siglip", {"logit_scale": 100.0, "logit_bias": -10.0})
    assert siglip.match(0.1) == pytest.approx(0.5) and siglip.good(0.15)
    assert not siglip.good(0.05) and siglip.match(-0.5) == 0.0
    # The same cosine is a good SigLIP match and a poor CLIP one on these scales.
    assert calibration_for("siglip").good(0.2) and not clip.good(0.2)


def test_duplicates_finds_the_same_planted_copies_with_each_family(
    tiny_siglip: Path, tiny_model: str, tmp_path: Path
) -> None:
    import io

    from PIL import Image

    from clipseek.config import load_settings
    from clipseek.engine import Engine
    from clipseek.testing import make_scene

    folder = tmp_path / "pictures"
    folder.mkdir()
    captions = ["a red circle", "a blue star", "a green square", "a yellow cross", "white stripes"]
    for i, caption in enumerate(captions):
        picture = make_scene(caption, size=(320, 240), seed=i)
        picture.save(folder / f"{i}.png")
        if i < 2:  # a smaller re-encoded copy of the first two
            data = io.BytesIO()
            picture.resize((240, 180)).save(data, "JPEG", quality=85)
            Image.open(data).convert("RGB").save(folder / f"{i}-copy.png")
    expected = [{"0.png", "0-copy.png"}, {"1.png", "1-copy.png"}]
    for name, model in (("clip", tiny_model), ("siglip", f"local-dir:{tiny_siglip}")):
        settings = load_settings(
            {"model": model, "db": tmp_path / f"db-{name}", "device": "cpu", "precision": "fp32"}
        )
        engine = Engine(settings)
        engine.index([folder])
        assert engine.calibration().family == name
        # Random weights put unrelated scenes closer than trained ones would, hence 0.995.
        groups = engine.duplicates(0.995)
        found = sorted(({Path(i.path).name for i in g.items} for g in groups), key=sorted)
        assert found == expected, name
