"""Product "photos": a style background + pattern and an item-coloured style shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .world import RGB, StyleDef

# --------------------------------------------------------------------------------------------
# Image rendering
# --------------------------------------------------------------------------------------------


def _jitter(c: RGB, rng: np.random.Generator, amount: int = 12) -> RGB:
    j = rng.integers(-amount, amount + 1, 3)
    return (
        int(np.clip(c[0] + j[0], 0, 255)),
        int(np.clip(c[1] + j[1], 0, 255)),
        int(np.clip(c[2] + j[2], 0, 255)),
    )


def _polygon(shape: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def ring(n: int, radius: Sequence[float], phase: float) -> list[tuple[float, float]]:
        pts = []
        for k in range(n):
            a = phase + rot + 2 * math.pi * k / n
            rr = radius[k % len(radius)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [r * 1.3], math.pi / 4)
    if shape == "triangle":
        return ring(3, [r * 1.2], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [r * 1.1], 0.0)
    if shape == "star":
        return ring(10, [r * 1.25, r * 0.5], -math.pi / 2)
    if shape == "diamond":
        return ring(4, [r * 1.3, r * 0.8], -math.pi / 2)
    if shape == "mountain":
        return [
            (cx - 1.3 * r, cy + 0.8 * r),
            (cx - 0.4 * r, cy - 0.9 * r),
            (cx + 0.05 * r, cy - 0.1 * r),
            (cx + 0.5 * r, cy - 0.6 * r),
            (cx + 1.3 * r, cy + 0.8 * r),
        ]
    raise ValueError(f"unknown shape {shape!r}")


def _draw_pattern(
    draw: ImageDraw.ImageDraw, pattern: str, size: int, colour: RGB, rng: np.random.Generator
) -> None:
    step = max(4, size // 8)
    ph = int(rng.integers(0, step))
    lw = max(1, size // 40)
    if pattern == "plain":
        return
    if pattern == "dots":
        rad = max(1, step // 5)
        for y in range(ph, size, step):
            for x in range(ph, size, step):
                draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=colour)
    elif pattern == "stripes":
        for k in range(-size, size, step):
            draw.line((k + ph, size, k + ph + size, 0), fill=colour, width=lw * 2)
    elif pattern == "zigzag":
        for y in range(ph, size + step, step):
            pts = [(x, y + (step // 3 if (x // (step // 2 or 1)) % 2 else 0)) for x in range(0, size + step, max(1, step // 2))]  # fmt: skip
            draw.line(pts, fill=colour, width=lw)
    elif pattern == "diamonds":
        rad = max(2, step // 4)
        for y in range(ph, size, step):
            for x in range(ph + (step // 2 if (y // step) % 2 else 0), size, step):
                draw.polygon([(x, y - rad), (x + rad, y), (x, y + rad), (x - rad, y)], fill=colour)
    elif pattern == "checks":
        cell = step
        for y in range(0, size, cell):
            for x in range(0, size, cell):
                if ((x + y) // cell) % 2 == 0:
                    draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=colour)
    elif pattern == "pinstripes":
        for x in range(ph, size, max(3, step // 2)):
            draw.line((x, 0, x, size), fill=colour, width=1)
    elif pattern == "grid":
        for k in range(ph, size, step):
            draw.line((k, 0, k, size), fill=colour, width=lw)
            draw.line((0, k, size, k), fill=colour, width=lw)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")


def _render(style: StyleDef, colour: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A product 'photo': style background + pattern, and an item-coloured style shape."""
    ss = size * 2  # draw at 2x and downsample: cheap anti-aliasing
    bg = _jitter(style.background, rng, 10)
    img = Image.new("RGB", (ss, ss), bg)
    draw = ImageDraw.Draw(img)
    others = [c for k, (_, c) in enumerate(style.palette) if k != colour]
    pat = others[int(rng.integers(len(others)))]
    # The pattern is blended towards the background so the shape stays the main subject.
    pat = tuple(int(0.55 * a + 0.45 * b) for a, b in zip(pat, bg, strict=True))  # type: ignore[assignment]
    _draw_pattern(draw, style.pattern, ss, pat, rng)
    main = _jitter(style.palette[colour][1], rng, 14)
    cx = ss / 2 + rng.uniform(-0.08, 0.08) * ss
    cy = ss / 2 + rng.uniform(-0.08, 0.08) * ss
    r = ss * rng.uniform(0.24, 0.32)
    rot = rng.uniform(-0.25, 0.25)
    outline = tuple(int(0.6 * c) for c in main)
    if style.shape in ("circle", "ellipse"):
        rx, ry = (r, r) if style.shape == "circle" else (r * 1.35, r * 0.75)
        draw.ellipse(
            (cx - rx, cy - ry, cx + rx, cy + ry), fill=main, outline=outline, width=max(1, ss // 40)
        )
    else:
        draw.polygon(_polygon(style.shape, cx, cy, r, rot), fill=main, outline=outline)
    return img.resize((size, size), Image.Resampling.BOX)
