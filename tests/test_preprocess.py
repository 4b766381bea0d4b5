"""The Pillow-only preprocessing equals open_clip's torchvision transform, pixel for pixel."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from clipseek.models.base import PreprocessConfig
from clipseek.models.preprocess import normalise_batch, pil_supported, prepare_image

SIZES = [(300, 100), (100, 300), (224, 224), (225, 223), (97, 61), (40, 30), (4000, 3000), (1, 999)]


def _picture(size: tuple[int, int], seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _open_clip_transform(cfg: PreprocessConfig):
    from open_clip.transform import image_transform

    return image_transform(
        cfg.size,
        is_train=False,
        mean=cfg.mean,
        std=cfg.std,
        resize_mode=cfg.resize_mode,
        interpolation=cfg.interpolation,
        fill_color=cfg.fill_color,
    )


@pytest.mark.parametrize("resize_mode", ["shortest", "squash"])
@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_prepare_equals_open_clip(loaded_tiny_model, resize_mode: str, interpolation: str) -> None:
    import torch

    cfg = dataclasses.replace(
        loaded_tiny_model.preprocess_cfg, resize_mode=resize_mode, interpolation=interpolation
    )
    assert pil_supported(cfg)
    transform = _open_clip_transform(cfg)
    for seed, size in enumerate(SIZES):
        picture = _picture(size, seed)
        ours = torch.from_numpy(normalise_batch([prepare_image(picture, cfg)], cfg))[0]
        assert torch.equal(ours, transform(picture)), (size, resize_mode, interpolation)


def test_longest_and_non_square_keep_the_torch_transform(loaded_tiny_model) -> None:
    cfg = loaded_tiny_model.preprocess_cfg
    assert not pil_supported(dataclasses.replace(cfg, resize_mode="longest"))
    assert not pil_supported(dataclasses.replace(cfg, size=(32, 48)))
    assert not pil_supported(dataclasses.replace(cfg, interpolation="some-filter"))
