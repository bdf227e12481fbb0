"""Built-in quality flags, derived from a sample's metadata with documented thresholds.

Flags describe; they do not remove. Use them to look (samples.parquet's `flags`), or to
select around them with THRESHOLD strategies on the same metadata keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

# Each flag and the rule that raises it. Sharpness is the Laplacian variance of luma at
# 128 px on the long side (tasks/media/metadata.py): scikit-image's photographs score
# 200-2,700 there whatever their resolution, and the same ones blurred with a Gaussian of
# 1.6% of their long side (8 px at 512) 5-30.
FLAG_RULES: dict[str, tuple[str, Callable[[Mapping[str, float]], bool]]] = {
    "dark": ("luminance < 0.15", lambda m: m["luminance"] < 0.15),
    "bright": ("luminance > 0.85", lambda m: m["luminance"] > 0.85),
    "blurry": ("sharpness < 40", lambda m: m["sharpness"] < 40),
    "low_information": ("entropy < 3 bits", lambda m: m["entropy"] < 3.0),
    "odd_aspect_ratio": (
        "longer side over shorter side > 3",
        lambda m: max(m["width"], m["height"]) > 3 * min(m["width"], m["height"]),
    ),
    "odd_size": ("shorter side < 32 px", lambda m: min(m["width"], m["height"]) < 32),
    "grayscale": ("every pixel's channels within 6 of each other", lambda m: m["grayscale"] == 1.0),
}


def sample_flags(metadata: Mapping[str, float]) -> list[str]:
    """The flags a clean sample's metadata (and width, height) raises, in FLAG_RULES order."""
    return [name for name, (_, rule) in FLAG_RULES.items() if rule(metadata)]
