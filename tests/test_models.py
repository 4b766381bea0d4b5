from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipseek.errors import ModelError, WeightsUnavailableError
from clipseek.models import (
    cached_weights,
    hf_cache_dir,
    load_model,
    resolve_model,
    weights_available,
)


@pytest.mark.parametrize(
    ("name", "arch", "tag"),
    [
        ("ViT-B/32", "ViT-B-32-quickgelu", "openai"),
        ("ViT-B/16", "ViT-B-16-quickgelu", "openai"),
        ("ViT-L/14", "ViT-L-14-quickgelu", "openai"),
        ("RN50", "RN50-quickgelu", "openai"),
        # OpenAI weights always get the QuickGELU architecture, however they are named.
        ("ViT-B-32:openai", "ViT-B-32-quickgelu", "openai"),
        ("ViT-B/32:openai", "ViT-B-32-quickgelu", "openai"),
        ("ViT-B-32:laion2b_s34b_b79k", "ViT-B-32", "laion2b_s34b_b79k"),
    ],
)
def test_resolve_named_models(name: str, arch: str, tag: str) -> None:
    spec = resolve_model(name)
    assert (spec.kind, spec.arch, spec.pretrained) == ("pretrained", arch, tag)
    assert spec.key == f"{arch}:{tag}"


def test_classic_and_pair_names_share_one_index() -> None:
    assert resolve_model("ViT-B/32").key == resolve_model("ViT-B-32:openai").key
    assert (
        resolve_model("ViT-B/32").collection_slug
        == resolve_model("ViT-B-32:openai").collection_slug
    )
    assert resolve_model("ViT-B/32").key != resolve_model("ViT-B/16").key


def test_resolve_schemas(tmp_path: Path) -> None:
    local = resolve_model(f"local-dir:{tmp_path}")
    assert local.kind == "local-dir" and local.arch == f"local-dir:{tmp_path.resolve()}"
    hub = resolve_model("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert hub.kind == "hf-hub" and hub.key == "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("clip-large", "Unknown model 'clip-large'"),
        ("hf-hub:not a repo", "ORG/REPO"),
        ("local-dir:", "needs a folder"),
        ("ViT-B-32:", "lacks one side"),
    ],
)
def test_bad_names_are_clear(name: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_model(name)


def test_unknown_pretrained_tag_lists_known_ones() -> None:
    with pytest.raises(ModelError, match=r"known tags:.*laion2b_s34b_b79k"):
        load_model(resolve_model("ViT-B-32:no_such_tag"), device="cpu")
    with pytest.raises(ModelError, match="no architecture 'NoSuchNet-quickgelu'"):
        load_model(resolve_model("NoSuchNet:openai"), device="cpu")


def test_missing_weights_offline_is_one_clear_sentence() -> None:
    spec = resolve_model("ViT-B/32")
    assert not weights_available(spec)
    with pytest.raises(WeightsUnavailableError) as err:
        load_model(spec, device="cpu")
    message = str(err.value)
    assert "ViT-B/32" in message
    assert str(hf_cache_dir()) in message
    assert "local-dir:PATH" in message
    assert "Traceback" not in message and "\n" not in message


def test_local_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_model(resolve_model(f"local-dir:{tmp_path / 'nope'}"), device="cpu")
    with pytest.raises(ModelError, match=r"no open_clip_config\.json"):
        load_model(resolve_model(f"local-dir:{tmp_path}"), device="cpu")


def test_cuda_requested_without_gpu_is_clear() -> None:
    import torch

    from clipseek.errors import DeviceError
    from clipseek.models import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="--device cpu"):
        resolve_device("cuda")


def test_preprocessing_comes_from_the_model(tmp_path: Path) -> None:
    from clipseek.testing import TINY_MODEL_CFG, build_tiny_model

    cfg = {**TINY_MODEL_CFG, "vision_cfg": {**TINY_MODEL_CFG["vision_cfg"], "image_size": 40}}
    folder = build_tiny_model(
        tmp_path / "m",
        model_cfg=cfg,
        preprocess_cfg={
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "interpolation": "bilinear",
            "resize_mode": "squash",
        },
    )
    model = load_model(resolve_model(f"local-dir:{folder}"), device="cpu", precision="fp32")
    pp = model.preprocess_cfg
    assert pp.size == (40, 40)
    assert pp.mean == (0.5, 0.5, 0.5) and pp.std == (0.25, 0.25, 0.25)
    assert (pp.interpolation, pp.resize_mode) == ("bilinear", "squash")
    from PIL import Image

    tensor = model.transform(Image.new("RGB", (300, 100), (255, 255, 255)))
    assert tuple(tensor.shape) == (3, 40, 40)  # squash: no crop, straight to 40x40
    assert float(tensor.max()) == pytest.approx((1.0 - 0.5) / 0.25, abs=1e-4)


def test_encoders_return_unit_float32_vectors(loaded_tiny_model) -> None:
    import torch

    texts = loaded_tiny_model.encode_texts(["a dog", "a cat in a hat"])
    assert texts.vectors.dtype == np.float32 and texts.vectors.shape == (2, loaded_tiny_model.dim)
    assert np.allclose(np.linalg.norm(texts.vectors, axis=1), 1.0, atol=1e-5)
    assert texts.truncated == [False, False]
    images = loaded_tiny_model.encode_images(torch.rand(3, 3, 32, 32))
    assert images.shape == (3, loaded_tiny_model.dim)
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)


def test_long_text_is_flagged_as_truncated(loaded_tiny_model) -> None:
    encoded = loaded_tiny_model.encode_texts(["word " * 200])
    assert encoded.truncated == [True]


@pytest.mark.slow
def test_named_model_loads_from_the_hugging_face_cache() -> None:
    """The real `--model ViT-B/32` path: a correctly shaped checkpoint where huggingface_hub's
    cache expects OpenAI's weights loads offline, with QuickGELU and OpenAI preprocessing."""
    import torch
    from open_clip.transformer import QuickGELU

    from clipseek.testing import install_hf_standin

    spec = resolve_model("ViT-B/32")
    path = install_hf_standin(hf_cache_dir(), "ViT-B-32-quickgelu", "openai")
    assert cached_weights(spec) == str(path)
    assert weights_available(spec)
    model = load_model(spec, device="cpu", precision="fp32")
    assert model.dim == 512
    assert model.preprocess_cfg.size == (224, 224)
    assert model.preprocess_cfg.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert model.preprocess_cfg.interpolation == "bicubic"
    activations = [m for m in model._model.modules() if isinstance(m, QuickGELU)]
    assert activations, "OpenAI weights must run with QuickGELU"
    # The weights really came from the file: compare one tensor.
    from safetensors.torch import load_file

    stored = load_file(str(path))["visual.conv1.weight"].float()
    assert torch.allclose(model._model.visual.conv1.weight.float(), stored)
    vec = model.encode_texts(["a photo of a dog"]).vectors
    assert vec.shape == (1, 512)
