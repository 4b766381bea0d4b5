"""Before a model's first export, a loaded torch model's own learned scale and bias set
its match scale, not the typical trained values that stand in when nothing is known."""

from __future__ import annotations

import pytest

from tests.support.engines import engine_with, settings_for


@pytest.mark.slow  # builds and loads a SigLIP stand-in: seconds
def test_a_loaded_siglip_is_read_on_its_own_learned_scale(tmp_path) -> None:
    from clipseek.models import load_model, resolve_model
    from clipseek.models.export import find_export
    from clipseek.testing import build_tiny_siglip, tiny_siglip_cfg

    model_dir = build_tiny_siglip(tmp_path / "siglip", seed=2)
    model = load_model(resolve_model(f"local-dir:{model_dir}"), device="cpu", precision="fp32")
    engine = engine_with(settings_for(model_dir, tmp_path / "db"), model)
    assert find_export(engine.spec) is None  # no manifest to read the scale from

    # Not loaded yet: the typical trained values stand in.
    before = engine.calibration()
    assert (before.family, before.logit_scale, before.logit_bias) == ("siglip", 110.0, -16.0)

    engine.model()  # loaded (a query through torch, before the export that follows it)
    after = engine.calibration()
    # The stand-in's learned values are its initial ones: open_clip's logit scale of
    # log(1 / 0.07) (CLIP's temperature, so 14.29) and the config's bias.
    scale, bias = 1 / 0.07, float(tiny_siglip_cfg(8)["init_logit_bias"])
    assert after.family == "siglip"
    assert after.logit_scale == pytest.approx(scale) and after.logit_bias == pytest.approx(bias)
    assert after.fits == pytest.approx(-bias / scale)
