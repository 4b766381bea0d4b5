"""What a model's cosines mean: thresholds and scores that follow the model's family.

CLIP is trained with a softmax over a batch, so its text–image cosines sit in a narrow
band and only their order is what training asked for; SigLIP is trained with a sigmoid
per pair, so ``sigmoid(scale·cos + bias)`` is the model's own probability that text and
image match, and its cosines sit lower (they can be negative). Faces show
:meth:`Calibration.match` and :meth:`Calibration.verdict` beside the raw cosine, and
commands take their defaults from here, so that a SigLIP index is neither judged nor
grouped on CLIP's scale.

The match scale has one published anchor per family, "the text fits the picture", drawn
at 0.5 (docs/MODELS.md, "Scores follow the model", gives each figure's source):

- CLIP: cosine 0.28 with OpenAI's ViT-B/32, the line LAION-5B kept pairs above after
  people judged how well texts fit images at 0.28–0.30 (LAION-400M chose 0.30); the band
  runs 0.12 either side, to 0.40, which CLIPScore's rescaling of that model's cosines
  (w = 2.5) maps to 1.
- SigLIP: where the model's own probability is 0.5 (logit 0, cosine = −bias / scale, from
  the export's learned scale and bias); the band is as many logits either side as CLIP's
  (0.12 × CLIP's logit scale of 100 = 12), a choice rather than a measurement: random
  stand-in weights say nothing about a trained model's cosines.

Only a query of text alone, nothing subtracted, has cosines on that scale
(:func:`calibrated_query`); a search by example image compares pictures with pictures,
whose cosines no source puts on a scale, and faces show those relative to the best hit.

Image–image cosines of near-copies are close to 1 in both families (the towers see nearly
the same pixels); both keep 0.95, the threshold measured with CLIP (docs/PERFORMANCE.md),
until SigLIP's can be measured with real weights (docs/MODELS.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: CLIP (OpenAI ViT-B/32): the cosine at which a text fits its picture (LAION-5B's line),
#: and the half-width of the band around it (up to CLIPScore's 0.40).
CLIP_FITS, CLIP_HALF_WIDTH = 0.28, 0.12
#: The band's half-width in logits: CLIP's, at CLIP's logit scale of 100.
HALF_WIDTH_LOGITS = CLIP_HALF_WIDTH * 100.0

#: Words for a match, from its position on the family's band (0.5: the text fits).
VERDICTS: tuple[tuple[float, str], ...] = ((0.75, "strong"), (0.5, "good"), (0.25, "fair"))
WEAKEST = "weak"


@dataclass(frozen=True)
class Calibration:
    family: str  # "clip" or "siglip"
    duplicate_threshold: float  # image–image cosine from which two pictures are copies
    #: The model's learned logit scale and (SigLIP's) bias, from the export's manifest;
    #: typical values stand in until the model has been exported.
    logit_scale: float
    logit_bias: float
    #: The text–image cosine at which a text fits its picture (match 0.5), and the cosine
    #: from there to a clear match (1) or to an unrelated picture (0).
    fits: float = CLIP_FITS
    half_width: float = CLIP_HALF_WIDTH

    def match(self, cosine: float) -> float:
        """A text–image cosine as 0 (unrelated) to 1 (a clear match), on the family's
        scale; 0.5 is the family's published "the text fits" line."""
        if cosine != cosine:  # NaN: no match, and never a NaN on the page
            return 0.0
        return max(0.0, min(1.0, 0.5 + (cosine - self.fits) / (2 * self.half_width)))

    def good(self, cosine: float) -> bool:
        """Whether a text–image cosine is at or above the family's "the text fits" line."""
        return self.match(cosine) >= 0.5

    def verdict(self, cosine: float) -> str:
        """One word for a text–image cosine: strong, good, fair or weak."""
        return verdict_of(self.match(cosine))

    def cosine_at(self, match: float) -> float:
        """The cosine that :meth:`match` puts at ``match`` (0 to 1)."""
        return self.fits + (match - 0.5) * 2 * self.half_width


def verdict_of(match: float) -> str:
    """The word for a match (0 to 1) as :meth:`Calibration.match` gives it."""
    for floor, word in VERDICTS:
        if match >= floor:
            return word
    return WEAKEST


def calibrated_query(terms: Iterable[Any]) -> bool:
    """Whether a query's cosines are text–image ones on the family's scale: text terms
    only, none subtracted (a difference of texts, or an example picture, is on another)."""
    terms = list(terms)
    return bool(terms) and all(t.kind == "text" and t.weight > 0 for t in terms)


#: SigLIP's published initialisation is scale 10 (log) and bias -10; trained B/16 models
#: end near exp(4.7) ≈ 110 and -16 (what their cosines mean then: 0.5 at cos ≈ 0.15).
_SIGLIP_SCALE, _SIGLIP_BIAS = 110.0, -16.0


def calibration_for(family: str, manifest: dict[str, Any] | None = None) -> Calibration:
    """The calibration of a family, with the model's own scale and bias when known."""
    manifest = manifest or {}
    if family == "siglip":
        scale = float(manifest.get("logit_scale", _SIGLIP_SCALE))
        bias = float(manifest.get("logit_bias", _SIGLIP_BIAS))
        if not scale > 0:  # a broken manifest: the typical trained values
            scale, bias = _SIGLIP_SCALE, _SIGLIP_BIAS
        return Calibration(
            "siglip", 0.95, scale, bias, fits=-bias / scale, half_width=HALF_WIDTH_LOGITS / scale
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
