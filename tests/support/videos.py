"""Videos with known faces at known times, built at test time with PyAV (never committed).

A video is a grey 640x360 canvas at 10 frames per second; each ``Appearance`` pastes a
photo onto it from ``start_ms`` (inclusive) to ``end_ms`` (exclusive).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

WIDTH, HEIGHT, FPS = 640, 360, 10


@dataclass(frozen=True)
class Appearance:
    photo: Path
    start_ms: int
    end_ms: int
    left: int = 195  # a 250x250 LFW photo, centred
    top: int = 55


def build_video(appearances: list[Appearance], duration_ms: int) -> bytes:
    """An H.264 MP4 of ``duration_ms`` showing each appearance in its interval."""
    photos = {a.photo: Image.open(a.photo).convert("RGB") for a in appearances}
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for number in range(duration_ms * FPS // 1000):
            now = number * 1000 // FPS
            canvas = Image.new("RGB", (WIDTH, HEIGHT), (120, 120, 120))
            for a in appearances:
                if a.start_ms <= now < a.end_ms:
                    canvas.paste(photos[a.photo], (a.left, a.top))
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
