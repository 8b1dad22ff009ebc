"""A video file to its metadata and a sample of its frames, decoded with PyAV (FFmpeg).

Faces are looked for in one frame every ``interval_ms`` (the first frame at or after each
multiple of it), not in every frame: a face stays on screen far longer than 200 ms, and
detection costs ~25x decoding (see ``service/video_analysis.py`` for the measurement). Each frame is
an upright ``DecodedImage`` at the engine's working resolution, so the engine sees video
frames exactly as it sees photos. Anything FFmpeg cannot read, and anything beyond the
bounds below, is a ``VideoRejected`` with a message fit for ``StatusMessage``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from facegate.engine.image import DecodedImage, working_size

MAX_DURATION_MS = 2 * 3600 * 1000
"""Two hours of video per job (Rekognition allows six; two keeps one job under ~15 minutes
of work on two cores at the default sampling)."""

MAX_FRAME_PIXELS = 3840 * 2160
"""Frames up to 4K UHD; larger ones are refused rather than decoded."""


class VideoRejected(Exception):
    """The file is not a video facegate will analyse; the message says why."""


@dataclass(frozen=True)
class VideoMetadata:
    """As Rekognition reports it: duration in milliseconds, frame rate in frames per second."""

    codec: str
    duration_ms: int
    format: str
    frame_rate: float
    width: int
    height: int
    color_range: str  # FULL | LIMITED


def open_video(path: Path, interval_ms: int) -> tuple[VideoMetadata, Iterator[tuple[int, DecodedImage]]]:
    """The video's metadata and an iterator of ``(timestamp_ms, frame)``: the first frame at
    or after each multiple of ``interval_ms``. Frames between are decoded but not converted."""
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoRejected(f"the object is not a video FFmpeg can read ({exc.__class__.__name__})") from exc
    if not container.streams.video:
        container.close()
        raise VideoRejected("the object has no video stream")
    stream = container.streams.video[0]
    metadata = _metadata(container, stream)
    problem = _out_of_bounds(metadata)
    if problem:
        container.close()
        raise VideoRejected(problem)
    return metadata, _frames(container, stream, interval_ms)


def _metadata(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> VideoMetadata:
    rate = stream.average_rate or stream.guessed_rate or Fraction(0)
    if container.duration is not None:
        duration_ms = int(container.duration * 1000 / av.time_base)
    elif stream.duration is not None and stream.time_base is not None:
        duration_ms = int(stream.duration * stream.time_base * 1000)
    else:
        duration_ms = 0
    context = stream.codec_context
    color_range = "FULL" if int(getattr(context, "color_range", 0) or 0) == 2 else "LIMITED"  # AVCOL_RANGE_JPEG is 2
    return VideoMetadata(
        context.name, duration_ms, container.format.long_name or container.format.name, round(float(rate), 3),
        context.width, context.height, color_range,
    )


def _out_of_bounds(metadata: VideoMetadata) -> str | None:
    if metadata.width <= 0 or metadata.height <= 0:
        return "the video stream has no frame size"
    if metadata.width * metadata.height > MAX_FRAME_PIXELS:
        return f"frames of {metadata.width}x{metadata.height} exceed the limit of {MAX_FRAME_PIXELS} pixels (3840x2160)"
    if metadata.duration_ms > MAX_DURATION_MS:
        return f"the video lasts {metadata.duration_ms} ms; the limit is {MAX_DURATION_MS} ms (2 hours)"
    return None


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, interval_ms: int
) -> Iterator[tuple[int, DecodedImage]]:
    stream.thread_type = "AUTO"
    next_due = 0
    try:
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            timestamp = int(round(frame.time * 1000))
            if timestamp > MAX_DURATION_MS:
                raise VideoRejected(f"the video runs past the limit of {MAX_DURATION_MS} ms")
            if frame.width * frame.height > MAX_FRAME_PIXELS:
                raise VideoRejected(f"a frame of {frame.width}x{frame.height} exceeds the limit of {MAX_FRAME_PIXELS} pixels")
            if timestamp < next_due:
                continue
            next_due = (timestamp // interval_ms + 1) * interval_ms
            width, height = working_size(frame.width, frame.height)
            pixels = frame.to_ndarray(format="rgb24", width=width, height=height)
            yield timestamp, DecodedImage(pixels, "VIDEO", frame.width, frame.height)
    except av.error.FFmpegError as exc:
        raise VideoRejected(f"the video could not be decoded: {exc}") from exc
    finally:
        container.close()
