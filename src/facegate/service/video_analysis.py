"""What a stored-video job computes: the video's faces, or its people matched against a collection.

The video is copied from the S3-compatible store to a temporary file (at most
``MAX_VIDEO_BYTES``), decoded with PyAV and sampled every ``SAMPLING_INTERVAL_MS``; each
sampled frame goes through the same engine as a photo. Timestamps are milliseconds from
the start of the video; boxes are ratios of the frame's width and height.

Sampling at 5 frames per second was chosen by measurement on the 10 s 640x360 test clip
(2 shared cores, SFace): decoding every frame costs 2.2 ms a frame, detecting faces ~20 ms a
sampled frame, so 5 fps analyses about 9 video seconds per wall second for detection and
still sees any face that stays on screen for 200 ms or more.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.face_tracking import PersonTracker
from facegate.engine.video_frames import VideoMetadata, VideoRejected, open_video
from facegate.service.detection import MAX_FACES_PER_IMAGE
from facegate.service.faces import bounding_box, face_detail
from facegate.service.search import face_matches
from facegate.service.images import s3_location
from facegate.service.neighbours import neighbours_within
from facegate.service.context import Service
from facegate.service import exceptions
from facegate.store.s3_objects import ObjectReader, ObjectLocation, ObjectTooLarge, ObjectUnavailable
from facegate.store.video_jobs import VideoJob

SAMPLING_INTERVAL_MS = 200
"""One analysed frame every 200 ms (5 fps); see the module docstring for why."""

MAX_VIDEO_BYTES = 2 * 1024**3
"""A stored video may be at most 2 GiB (Rekognition allows 10 GB; the copy goes to local disk)."""

DEFAULT_FACE_MATCH_THRESHOLD = 80.0
MAX_MATCHES_PER_FACE = 100


class VideoJobFailed(Exception):
    """The job cannot succeed; the message becomes its ``StatusMessage``."""


def analyse(service: Service, job: VideoJob) -> dict[str, Any]:
    """The job's stored result: ``VideoMetadata`` plus ``Faces`` (FaceDetection) or
    ``Persons`` (FaceSearch), in timestamp order. Raises ``VideoJobFailed``."""
    location = s3_location(job.params["Video"]["S3Object"], "Video.S3Object")
    with tempfile.NamedTemporaryFile(prefix="facegate-video-", suffix=".bin") as copy:
        _download(service.objects, location, copy)
        copy.flush()
        try:
            metadata, frames = open_video(Path(copy.name), SAMPLING_INTERVAL_MS)
            if job.operation == "FaceDetection":
                every_landmark = job.params.get("FaceAttributes", "DEFAULT") == "ALL"
                found: dict[str, Any] = {"Faces": [
                    {"Timestamp": timestamp, "Face": face_detail(face, image, every_landmark)}
                    for timestamp, image in frames
                    for face in service.engine.detect(image)[:MAX_FACES_PER_IMAGE]
                ]}
            else:
                found = {"Persons": _persons(service, job, frames)}
        except VideoRejected as exc:
            raise VideoJobFailed(f"Video.S3Object {location}: {exc}") from exc
    return {"VideoMetadata": _video_metadata(metadata), **found}


def _download(objects: ObjectReader, location: ObjectLocation, sink: Any) -> None:
    try:
        copy_to = getattr(objects, "copy_to", None)
        if copy_to is not None:
            copy_to(location, sink, MAX_VIDEO_BYTES)
        else:
            sink.write(objects.read(location, MAX_VIDEO_BYTES))
    except ObjectTooLarge as exc:
        raise VideoJobFailed(f"Video.S3Object: {exc} (2 GiB).") from exc
    except ObjectUnavailable as exc:
        raise VideoJobFailed(f"Unable to get object from S3 for Video.S3Object: {exc}.") from exc


def _persons(service: Service, job: VideoJob, frames: Any) -> list[dict[str, Any]]:
    """Each sighting of a person whose face matches the collection at ``FaceMatchThreshold``,
    with ``Person.Index`` from the tracker (which follows unmatched people too)."""
    with service.store.reader() as tx:
        collection = tx.get_collection(job.owner, job.params["CollectionId"])
    if collection is None:
        raise VideoJobFailed(f"The collection id: {job.params['CollectionId']} does not exist")
    try:
        engine = service.engine_for(collection)
    except exceptions.RekognitionError as exc:
        raise VideoJobFailed(exc.message) from exc
    threshold = float(job.params.get("FaceMatchThreshold", DEFAULT_FACE_MATCH_THRESHOLD))
    tracker = PersonTracker(engine.similarity)
    persons: list[dict[str, Any]] = []
    for timestamp, image in frames:
        faces = engine.detect(image)[:MAX_FACES_PER_IMAGE]
        if not faces:
            continue
        descriptors = engine.embed(image, faces)
        indexes = tracker.assign(timestamp, [f.detection.box for f in faces], descriptors)
        for face, descriptor, index in zip(faces, descriptors, indexes):
            matches = _matches(service, engine, collection.pk, descriptor, threshold)
            if matches:
                persons.append({
                    "Timestamp": timestamp,
                    "Person": {"Index": index, "BoundingBox": bounding_box(face.detection.box, image),
                               "Face": face_detail(face, image, every_landmark=False)},
                    "FaceMatches": matches,
                })
    return persons


def _matches(service: Service, engine: Any, collection_pk: int, probe: np.ndarray, threshold: float) -> list[dict[str, Any]]:
    neighbours = neighbours_within(service.store.index, engine, collection_pk, probe, threshold, MAX_MATCHES_PER_FACE)
    return face_matches(service, engine, collection_pk, neighbours)


def _video_metadata(metadata: VideoMetadata) -> dict[str, Any]:
    return {
        "Codec": metadata.codec, "DurationMillis": metadata.duration_ms, "Format": metadata.format,
        "FrameRate": metadata.frame_rate, "FrameHeight": metadata.height, "FrameWidth": metadata.width,
        "ColorRange": metadata.color_range,
    }
