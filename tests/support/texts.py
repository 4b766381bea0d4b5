"""Texts for tokenizer tests: thousands of varied strings in many scripts."""

from __future__ import annotations

import random
import unicodedata

from clipseek.testing import MULTILINGUAL_SAMPLES


def varied_texts(count: int, seed: int = 0) -> list[str]:
    """Thousands of strings: the samples' words in every script, shuffled and joined with
    punctuation, accents in composed and decomposed form, entities, emoji, long runs."""
    rng = random.Random(seed)
    words = " ".join(MULTILINGUAL_SAMPLES).split()
    joins = [" ", "  ", ", ", "-", "_", "! ", "? ", " & ", "/", "\t", "…", "’"]
    out = list(MULTILINGUAL_SAMPLES)
    while len(out) < count:
        n = rng.choice((1, 2, 3, 5, 8, 30))
        text = "".join(rng.choice(words) + rng.choice(joins) for _ in range(n))
        form = rng.choice(("NFC", "NFD", "NFKC", None))
        if form:
            text = unicodedata.normalize(form, text)
        if rng.random() < 0.2:
            text = text.upper()
        out.append(text)
    return out
