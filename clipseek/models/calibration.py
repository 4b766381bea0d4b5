"""What a model's cosines mean: thresholds and scores that follow the model's family.

CLIP is trained with a softmax over a batch, so its text–image cosines sit in a narrow
band (about 0.15 for unrelated, 0.3 for a good match with ViT-B/32) and only their order
means something. SigLIP is trained with a sigmoid per pair: ``sigmoid(scale·cos + bias)``
is the model's own probability that text and image match, its cosines sit lower and can
be negative, and 0.5 is a meaningful line. Faces show :meth:`Calibration.match` (0 to 1)
rather than raw cosines, and commands take their defaults from here, so that a SigLIP
index is neither judged nor grouped on CLIP's scale.

Image–image cosines of near-copies are close to 1 in both families (the towers see nearly
the same pixels); both keep 0.95, the threshold measured with CLIP (docs/PERFORMANCE.md),
until SigLIP's can be measured with real weights (docs/MODELS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Calibration:
    family: str  # "clip" or "siglip"
    duplicate_threshold: float  # image–image cosine from which two pictures are copies
    #: For SigLIP, the model's learned logit scale and bias (from the export's manifest);
    #: typical values stand in until the model has been exported.
    logit_scale: float
    logit_bias: float
    #: CLIP's band of text–image cosines, from unrelated to a clear match (ViT-B/32).
    low: float = 0.15
    high: float = 0.32

    def match(self, cosine: float) -> float:
        """A text–image cosine as 0 (no match) to 1 (a clear match), on the family's scale."""
        if self.family == "siglip":
            z = self.logit_scale * cosine + self.logit_bias
            return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))
        return max(0.0, min(1.0, (cosine - self.low) / (self.high - self.low)))

    def good(self, cosine: float) -> bool:
        """Whether a text–image cosine is a match worth showing as such."""
        return self.match(cosine) >= 0.5


#: SigLIP's published initialisation is scale 10 (log) and bias -10; trained B/16 models
#: end near exp(4.7) ≈ 110 and -16 (what their cosines mean then: 0.5 at cos ≈ 0.15).
_SIGLIP_SCALE, _SIGLIP_BIAS = 110.0, -16.0


def calibration_for(family: str, manifest: dict[str, Any] | None = None) -> Calibration:
    """The calibration of a family, with the model's own scale and bias when known."""
    manifest = manifest or {}
    if family == "siglip":
        return Calibration(
            "siglip",
            0.95,
            float(manifest.get("logit_scale", _SIGLIP_SCALE)),
            float(manifest.get("logit_bias", _SIGLIP_BIAS)),
        )
    return Calibration("clip", 0.95, float(manifest.get("logit_scale", 100.0)), 0.0)


def model_family(spec: Any, manifest: dict[str, Any] | None = None) -> str:
    """ "siglip" or "clip" for a resolved model: its export says so (a learned bias), else
    its own config (``init_logit_bias``), else the catalogue or the name."""
    import json
    from pathlib import Path

    from clipseek.models.catalogue import family_of

    if manifest and "logit_bias" in manifest:
        return "siglip"
    if getattr(spec, "kind", "") == "local-dir":
        config = Path(spec.arch.removeprefix("local-dir:")) / "open_clip_config.json"
        try:
            model_cfg = json.loads(config.read_text(encoding="utf-8")).get("model_cfg", {})
        except (OSError, ValueError, AttributeError):
            model_cfg = {}
        if isinstance(model_cfg, dict) and "init_logit_bias" in model_cfg:
            return "siglip"
        return "clip"
    return family_of(spec.name)
