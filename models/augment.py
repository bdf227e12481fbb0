"""Batched SimCLR augmentations in torch, run on whatever device the batch is on.

One view transform is applied twice to get the two views (Chen et al., 2020, appendix A):
random resized crop, horizontal flip, colour jitter, random grayscale, Gaussian blur.
Every parameter is drawn per sample from a `torch.Generator`, so a seed reproduces a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Rec. 601 luma weights: the grayscale used by colour jitter and random grayscale.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class ViewAugmentation:
    """Parameters of one view.

    The defaults are SimCLR's, with the crop scale widened down to 0.2 as is usual for small images.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    jitter_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_probability: float = 0.2
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip_probability", "jitter_probability", "grayscale_probability", "blur_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be within [0, 1], got {value}")


def to_float_nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [0, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (B, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def _uniform(low: float, high: float, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _chance(p: float, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def random_resized_crop_and_flip(
    x: torch.Tensor, size: int, aug: ViewAugmentation, gen: torch.Generator
) -> torch.Tensor:
    """Crop a random box of random area and aspect ratio, resize it to `size`, maybe flip.

    Shape: (B, 3, H, W) -> (B, 3, size, size)
    """
    b, device = x.shape[0], x.device
    area = _uniform(*aug.crop_scale, b, gen, device)
    log_ratio = _uniform(math.log(aug.crop_ratio[0]), math.log(aug.crop_ratio[1]), b, gen, device)
    ratio = torch.exp(log_ratio)
    # Box sides as fractions of the image side, clipped to fit.
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    # Box centres in grid_sample's [-1, 1] coordinates, chosen so the box stays inside.
    cx = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - width)
    cy = (torch.rand(b, generator=gen, device=device) * 2 - 1) * (1 - height)
    flip = torch.where(_chance(aug.flip_probability, b, gen, device), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _luma(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)  # (B, 1, H, W)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate chroma in YIQ space by `angle` radians per sample: a linear hue shift."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
        device=x.device,
        dtype=x.dtype,
    )
    from_yiq = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = from_yiq @ rotation @ to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, x)


def color_jitter(x: torch.Tensor, aug: ViewAugmentation, gen: torch.Generator) -> torch.Tensor:
    """Colour jitter: brightness, contrast, saturation and hue, each by a random factor.

    Applied on a random `jitter_probability` share of the batch.

    Shape: (B, 3, H, W) -> (B, 3, H, W)
    """
    b, device = x.shape[0], x.device
    apply = _chance(aug.jitter_probability, b, gen, device).view(b, 1, 1, 1)
    brightness = _uniform(1 - aug.brightness, 1 + aug.brightness, b, gen, device).view(b, 1, 1, 1)
    contrast = _uniform(1 - aug.contrast, 1 + aug.contrast, b, gen, device).view(b, 1, 1, 1)
    saturation = _uniform(1 - aug.saturation, 1 + aug.saturation, b, gen, device).view(b, 1, 1, 1)
    hue = _uniform(-aug.hue, aug.hue, b, gen, device) * 2 * math.pi
    out = (x * brightness).clamp(0, 1)
    mean = _luma(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0, 1)
    gray = _luma(out)
    out = ((out - gray) * saturation + gray).clamp(0, 1)
    out = _rotate_hue(out, hue).clamp(0, 1)
    return torch.where(apply, out, x)


def random_grayscale(x: torch.Tensor, aug: ViewAugmentation, gen: torch.Generator) -> torch.Tensor:
    """Turn a random `grayscale_probability` share of the batch to grayscale (luma in all 3 channels)."""
    b = x.shape[0]
    apply = _chance(aug.grayscale_probability, b, gen, x.device).view(b, 1, 1, 1)
    return torch.where(apply, _luma(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, aug: ViewAugmentation, gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur on a random `blur_probability` share of the batch.

    The sigma is random per sample (in pixels at 224 px scaled to this size).
    """
    b, c, h, w = x.shape
    device = x.device
    apply = _chance(aug.blur_probability, b, gen, device).view(b, 1, 1, 1)
    # SimCLR's kernel is 10% of the image side; sigmas are given for 224 px images.
    sigma = _uniform(*aug.blur_sigma, b, gen, device) * (h / 224)
    radius = max(1, int(0.05 * h))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=x.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, k)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, k): one kernel per image channel
    flat = x.reshape(1, b * c, h, w)
    padded = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(padded, kernel.view(b * c, 1, 1, -1), groups=b * c)
    padded = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(padded, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return torch.where(apply, flat.view(b, c, h, w), x)


def augment_view(
    images: torch.Tensor, size: int, aug: ViewAugmentation, gen: torch.Generator
) -> torch.Tensor:
    """One random view of a uint8 batch.

    Shape: uint8 (B, H, W, 3) -> float32 (B, 3, size, size) in [0, 1]
    """
    x = to_float_nchw(images)
    x = random_resized_crop_and_flip(x, size, aug, gen)
    x = color_jitter(x, aug, gen)
    x = random_grayscale(x, aug, gen)
    x = gaussian_blur(x, aug, gen)
    return x.clamp_(0, 1)
