"""Faces placed small on large canvases, made in memory at evaluation time.

Photos with hand-labelled faces of 40–80 px in a full-HD frame are rare, so recall at
those sizes is measured on canvases built from single-face photos: each face is cut out
with some context, scaled so that its box is ``side`` pixels, and pasted with a soft edge
onto a 1280x720 or 1920x1080 background (plain, noise, texture, or a real group photo
scaled to cover the frame). Nothing built here is written to disk.

The truth box of a pasted face is the box ``reference`` found on the source photo at the
photo's own size, scaled and moved with the paste. The reference is dlib's HOG detector
in practice: its boxes follow the same convention as the hand-labelled ``dlib_faces``
boxes (the labels were drawn with dlib's tools), so "a 40 px face" means the same on a
canvas as in a labelled photo. Other detectors frame faces differently (YuNet's boxes
are taller); on UTKFace their boxes overlap HOG's by IoU 0.56 at the least.

The source photos shape the result. LFW's 250 px photos show each face with its
surroundings. UTKFace's 200 px crops are tight (no HOG box fits 1.4 times inside its
crop), so their cut-outs carry little hair or head outline, and dlib's HOG finds fewer
of them at every size (97–98% at 80–200 px, against 99.8–100% from LFW). UTKFace is
still the set that shows recall by race and gender.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facegate.engine.errors import ImageRejected
from facegate.engine.image import decode_image
from facegate.engine.interfaces import FaceDetector
from facegate.engine.results import PixelBox
from facegate.evaluate.detection import face_side

CANVAS_SIZES: tuple[tuple[int, int], ...] = ((1280, 720), (1920, 1080))
"""(width, height) in pixels: a 720p and a full-HD frame, the largest the engine analyses as it is."""

FACE_SIDES: tuple[int, ...] = (30, 40, 50, 60, 80, 120, 200)
"""Truth-box sides, in pixels, of the pasted faces: one canvas per side and background, so
every size bin of ``detection.SIZE_BINS`` is filled, the 40–80 px target bin most."""

CONTEXT = 1.8
"""A face is cut out as a square this many times its box side, centred on the box: hair,
ears and chin come along, as they would in a photo. Part of a neighbour's face may too
(LFW), so a detection on a cut-out that is not its face is never counted as false."""

FEATHER = 0.12
"""The pasted cut-out's edge fades into the background over this fraction of its longer
side, so no detector is shown a sharp-edged tile."""

FACES_PER_CANVAS = 12
"""At most this many faces on one canvas, each in its own cell of a grid."""

JPEG_QUALITY = 90
"""Canvases reach the detector as JPEG bytes of this quality, decoded as uploads are."""


@dataclass(frozen=True)
class FaceSource:
    """A cut-out around one face, (rows, columns, 3) uint8, the face's box in it, and the
    photo it came from."""

    pixels: np.ndarray
    box: PixelBox
    origin: str = ""


@dataclass(frozen=True)
class Canvas:
    """A generated test image, the truth boxes of the faces pasted on it, the rectangles of
    the cut-outs they came with (where a neighbour's face may show), in its pixels, and the
    photo each face came from."""

    pixels: np.ndarray
    boxes: list[PixelBox]
    pasted: list[PixelBox]
    origins: list[str]
    background: str
    face_side: int

    def jpeg(self) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(self.pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        return buffer.getvalue()


def face_sources(paths: Sequence[Path], reference: FaceDetector) -> list[FaceSource]:
    """Cut-outs of the photos in which ``reference`` finds exactly one face (others are skipped:
    a second face would be pasted without a truth box)."""
    sources = []
    for path in paths:
        try:
            pixels = decode_image(path.read_bytes()).pixels
        except ImageRejected:
            continue
        found = reference.detect(pixels)
        if len(found) == 1:
            sources.append(_cut_out(pixels, found[0].box, str(path)))
    return sources


def canvases(
    sources: Sequence[FaceSource],
    group_photos: Sequence[Path] = (),
    reference: FaceDetector | None = None,
    sizes: Sequence[tuple[int, int]] = CANVAS_SIZES,
    sides: Sequence[int] = FACE_SIDES,
    seed: int = 0,
) -> Iterator[Canvas]:
    """One canvas per canvas size, background and face side, faces drawn from ``sources`` in
    a seeded order. Group photos become backgrounds, and ``reference`` finds their own
    faces so that pasted faces keep clear of them (those faces are not in the truth)."""
    if not sources:
        raise ValueError("no face sources: no photo had exactly one face the reference detector found")
    rng = np.random.default_rng(seed)
    order = iter(_cycle(len(sources), rng))
    for width, height in sizes:
        for name, background, occupied in _backgrounds(width, height, group_photos, reference, rng):
            for side in sides:
                picks = [sources[next(order)] for _ in range(FACES_PER_CANVAS)]
                pixels, boxes, pasted = _paste(background, picks, side, occupied, rng)
                yield Canvas(pixels, boxes, pasted, [p.origin for p in picks[: len(boxes)]], name, side)


def _cut_out(pixels: np.ndarray, box: PixelBox, origin: str) -> FaceSource:
    """The CONTEXT square around ``box``, cut short where it runs off the photo (extending
    the photo's edge instead would paste streaks a detector may take for structure)."""
    side = max(box.width, box.height) * CONTEXT
    left = max(0, round((box.left + box.right - side) / 2))
    top = max(0, round((box.top + box.bottom - side) / 2))
    right = min(pixels.shape[1], round((box.left + box.right + side) / 2))
    bottom = min(pixels.shape[0], round((box.top + box.bottom + side) / 2))
    cut = np.ascontiguousarray(pixels[top:bottom, left:right])
    return FaceSource(cut, PixelBox(box.left - left, box.top - top, box.right - left, box.bottom - top), origin)


def _cycle(count: int, rng: np.random.Generator) -> Iterator[int]:
    while True:
        yield from rng.permutation(count)


def _backgrounds(
    width: int, height: int, group_photos: Sequence[Path], reference: FaceDetector | None, rng: np.random.Generator
) -> Iterator[tuple[str, np.ndarray, list[PixelBox]]]:
    """(name, pixels, faces already there) for each background kind at this size."""
    colour = rng.integers(40, 216, 3)
    yield "plain", np.broadcast_to(colour.astype(np.uint8), (height, width, 3)).copy(), []
    noise = rng.normal(colour, 30.0, (height, width, 3))
    yield "noise", np.clip(noise, 0, 255).astype(np.uint8), []
    yield "texture", _texture(width, height, rng), []
    for number, path in enumerate(group_photos, 1):
        photo = Image.open(path).convert("RGB")
        scale = max(width / photo.width, height / photo.height)
        covered = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.BICUBIC)
        left, top = (covered.width - width) // 2, (covered.height - height) // 2
        pixels = np.asarray(covered.crop((left, top, left + width, top + height)))
        occupied = [d.box for d in reference.detect(pixels)] if reference is not None else []
        yield f"group photo {number}", pixels, occupied


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Fractal clutter: coloured noise summed over octaves from 4 to 256 px, plus stripes."""
    layers = np.zeros((height, width, 3), dtype=np.float32)
    for cell in (256, 64, 16, 4):
        grid = rng.uniform(-1, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        channels = [Image.fromarray(grid[:, :, c]).resize((width + 2 * cell, height + 2 * cell), Image.Resampling.BICUBIC)
                    for c in range(3)]
        layers += np.stack([np.asarray(c)[:height, :width] for c in channels], axis=2) * (cell / 256) ** 0.5
    stripes = np.sin(np.arange(width)[None, :] * rng.uniform(0.05, 0.3) + np.arange(height)[:, None] * rng.uniform(0.05, 0.3))
    pixels = 128 + 45 * layers + 20 * stripes[:, :, None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _paste(
    background: np.ndarray, picks: Sequence[FaceSource], side: int, occupied: Sequence[PixelBox], rng: np.random.Generator
) -> tuple[np.ndarray, list[PixelBox], list[PixelBox]]:
    """The background with up to FACES_PER_CANVAS faces pasted in free grid cells, their
    truth boxes and the cut-outs' rectangles."""
    height, width = background.shape[:2]
    canvas = background.astype(np.float32)
    scales = [side / face_side(source.box) for source in picks]
    sizes = [(max(1, round(s.pixels.shape[1] * k)), max(1, round(s.pixels.shape[0] * k))) for s, k in zip(picks, scales)]
    cell = max(max(size) for size in sizes) + side // 4  # room for the largest cut-out and some jitter
    cells = [(x, y) for y in range(0, height - cell + 1, cell) for x in range(0, width - cell + 1, cell)]
    free = [(x, y) for x, y in cells if not any(_overlaps((x, y, x + cell, y + cell), box) for box in occupied)]
    chosen = [free[i] for i in rng.permutation(len(free))[: len(picks)]]
    boxes, pasted = [], []
    for source, scale, size, (x, y) in zip(picks, scales, sizes, chosen):
        face = np.asarray(Image.fromarray(source.pixels).resize(size, Image.Resampling.LANCZOS), np.float32)
        left = x + int(rng.integers(0, cell - size[0] + 1))
        top = y + int(rng.integers(0, cell - size[1] + 1))
        b = source.box
        inner = PixelBox(b.left * scale, b.top * scale, b.right * scale, b.bottom * scale)
        region = canvas[top : top + size[1], left : left + size[0]]
        region[:] = _opacity(size, inner)[:, :, None] * (face - region) + region
        boxes.append(PixelBox(left + inner.left, top + inner.top, left + inner.right, top + inner.bottom))
        pasted.append(PixelBox(left, top, left + size[0], top + size[1]))
    return np.clip(canvas, 0, 255).astype(np.uint8), boxes, pasted


def _opacity(size: tuple[int, int], face: PixelBox) -> np.ndarray:
    """(rows, columns) opacity for a (width, height) cut-out: 1 inside, falling linearly to 0
    over the outer FEATHER of its longer side, but never over the face box itself (in a
    tight crop, such as UTKFace's, the face reaches the cut-out's edge)."""
    ramp = max(1.0, FEATHER * max(size))

    def edge(length: int) -> np.ndarray:
        distance = np.minimum(np.arange(length), np.arange(length)[::-1]).astype(np.float32) + 0.5
        return np.clip(distance / ramp, 0, 1)

    opacity = np.minimum(edge(size[1])[:, None], edge(size[0])[None, :])
    rows = slice(max(0, int(face.top)), max(0, math.ceil(face.bottom)))
    columns = slice(max(0, int(face.left)), max(0, math.ceil(face.right)))
    opacity[rows, columns] = 1.0
    return opacity


def _overlaps(cell: tuple[int, int, int, int], box: PixelBox) -> bool:
    return cell[0] < box.right and box.left < cell[2] and cell[1] < box.bottom and box.top < cell[3]
