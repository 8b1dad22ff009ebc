"""The background workers that run stored-video jobs, and the audit record of each outcome.

Every server process runs ``VIDEO_WORKER_THREADS`` worker threads (``$FACEGATE_VIDEO_WORKERS``,
default 1, so ``serve --workers N`` runs at most N jobs at once). A worker claims the oldest
waiting job (``store/video_jobs.py``: an atomic UPDATE, so two workers, in one process or
several, never run one job), renews its lease every ``LEASE_SECONDS / 3`` while it runs,
and records SUCCEEDED or FAILED together with a ``facegate:VideoJobCompleted`` audit record
(people matched, top similarities, FaceIds; never images or embeddings) in one transaction.
A job whose worker died (``kill -9``) is claimed again when its lease lapses, so it is
restarted, at most ``MAX_ATTEMPTS`` times, and never left IN_PROGRESS. Any error while
analysing fails the job with a ``StatusMessage``; it never stops the worker or the server.

The job's request itself passed the gate at Start* (policy packs, threshold floors, the
S3 bucket allow-list) and was audited there; the worker only carries it out.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from facegate.governance import audit
from facegate.governance.s3_access import audited_objects
from facegate.service.context import Service
from facegate.service.video import RESULT_RETENTION_SECONDS
from facegate.service.video_analysis import VideoJobFailed, analyse
from facegate.store import video_jobs
from facegate.store.video_jobs import FAILED, SUCCEEDED, VideoJob

log = logging.getLogger("uvicorn.error")

WORKERS_VARIABLE = "FACEGATE_VIDEO_WORKERS"
VIDEO_WORKER_THREADS = 1
"""Jobs one server process runs at once by default: a job keeps a core busy."""

LEASE_SECONDS = 15.0
"""How long a claim holds without renewal: a killed worker's job restarts this long after."""

POLL_SECONDS = 1.0
"""How often an idle worker looks for a new job."""

PRUNE_SECONDS = 3600.0
"""How often finished jobs past ``RESULT_RETENTION_SECONDS`` are deleted."""

MAX_ATTEMPTS = 3
"""A job claimed this many times without finishing (its worker died each time: a video that
kills the decoder, say) fails instead of being claimed again."""

ACTOR = "facegate-video"
SNS_ENDPOINT_VARIABLE = "FACEGATE_SNS_ENDPOINT_URL"


def start_video_workers(service: Service, threads: int | None = None) -> threading.Event:
    """Start the worker threads (daemons); set the returned event to stop them."""
    stop = threading.Event()
    count = threads if threads is not None else int(os.environ.get(WORKERS_VARIABLE, VIDEO_WORKER_THREADS))
    for number in range(count):
        threading.Thread(target=_work, args=(service, stop), name=f"facegate-video-{number}", daemon=True).start()
    return stop


def _work(service: Service, stop: threading.Event) -> None:
    pruned_at = 0.0
    while not stop.is_set():
        try:
            if time.time() - pruned_at > PRUNE_SECONDS:
                with service.store.transaction() as tx:
                    video_jobs.prune_finished(tx, time.time() - RESULT_RETENTION_SECONDS)
                pruned_at = time.time()
            job = None
            with service.store.reader() as tx:
                waiting = video_jobs.claimable(tx, time.time(), 1)
            if waiting:
                with service.store.transaction() as tx:
                    job = video_jobs.claim_next(tx, time.time(), LEASE_SECONDS)
        except Exception:  # the database is away for a moment: try again later
            log.exception("video worker: cannot claim a job")
            job = None
        if job is None:
            stop.wait(POLL_SECONDS)
            continue
        run_job(service, job)


def run_job(service: Service, job: VideoJob) -> None:
    """Analyse the claimed job, holding its lease, and record the outcome."""
    if job.attempts > MAX_ATTEMPTS:
        _finish(service, job, FAILED, f"The job was interrupted {MAX_ATTEMPTS} times (the server stopped while "
                                      "analysing this video); it will not be retried.", None)
        return
    done = threading.Event()
    threading.Thread(target=_hold_lease, args=(service, job.job_id, done), name="facegate-video-lease", daemon=True).start()
    try:
        result = analyse(service, job)
        _finish(service, job, SUCCEEDED, None, result)
    except VideoJobFailed as exc:
        _finish(service, job, FAILED, str(exc), None)
    except Exception:
        log.exception("video job %s failed", job.job_id)
        _finish(service, job, FAILED, "facegate could not analyse the video (an internal error; see the server log).", None)
    finally:
        done.set()


def _hold_lease(service: Service, job_id: str, done: threading.Event) -> None:
    while not done.wait(LEASE_SECONDS / 3):
        try:
            with service.store.transaction() as tx:
                video_jobs.renew_lease(tx, job_id, time.time() + LEASE_SECONDS)
        except Exception:
            log.exception("video job %s: cannot renew its lease", job_id)


def _finish(service: Service, job: VideoJob, status: str, message: str | None, result: dict[str, Any] | None) -> None:
    with service.store.transaction() as tx:
        if not video_jobs.finish_job(tx, job.job_id, status, message, result, time.time()):
            return  # already finished by a worker that claimed it after our lease lapsed
        audit.append(tx, completion_record(job, status, message, result))
    _notify(job, status)


def completion_record(job: VideoJob, status: str, message: str | None, result: dict[str, Any] | None) -> dict[str, Any]:
    """The audit record of a job's outcome: for a face search, who was matched (FaceIds,
    ExternalImageIds), how often and how closely (0–100); never images or embeddings."""
    summary: dict[str, Any] = {"job_id": job.job_id, "job_status": status, "attempts": job.attempts}
    if message:
        summary["status_message"] = message
    if result is not None:
        summary["duration_ms"] = result["VideoMetadata"]["DurationMillis"]
        if "Faces" in result:
            summary["faces"] = len(result["Faces"])
        if "Persons" in result:
            summary.update(_search_summary(result["Persons"]))
    return {
        "key_id": ACTOR, "organization": job.owner, "purpose": "video", "operation": "facegate:VideoJobCompleted",
        "collection": job.params.get("CollectionId"), "decision": "allow", "policies": [], "status": 200,
        "error_type": None, "request_id": job.job_id, "summary": summary, **audited_objects(job.params),
    }


def _search_summary(persons: list[dict[str, Any]]) -> dict[str, Any]:
    best: dict[str, dict[str, Any]] = {}
    for sighting in persons:
        for match in sighting["FaceMatches"]:
            face = match["Face"]
            seen = best.setdefault(face["FaceId"], {"FaceId": face["FaceId"], "Similarity": 0.0, "sightings": 0})
            if "ExternalImageId" in face:
                seen["ExternalImageId"] = face["ExternalImageId"]
            seen["Similarity"] = max(seen["Similarity"], match["Similarity"])
            seen["sightings"] += 1
    matched = sorted(best.values(), key=lambda m: -m["Similarity"])
    return {
        "people_matched": len({s["Person"]["Index"] for s in persons}),
        "sightings": len(persons),
        "top_similarity": matched[0]["Similarity"] if matched else None,
        "candidates": matched,
        "face_ids": [m["FaceId"] for m in matched],
    }


def _notify(job: VideoJob, status: str) -> None:
    """Rekognition's completion message to ``NotificationChannel.SNSTopicArn``, only when the
    operator configured an SNS-compatible endpoint; otherwise callers poll Get*."""
    endpoint = os.environ.get(SNS_ENDPOINT_VARIABLE)
    channel = job.params.get("NotificationChannel")
    if not endpoint or not channel:
        return
    message = {
        "JobId": job.job_id, "Status": status, "API": f"Start{job.operation}", "JobTag": job.params.get("JobTag"),
        "Timestamp": int(time.time() * 1000),
        "Video": {"S3ObjectName": job.params["Video"]["S3Object"].get("Name"),
                  "S3Bucket": job.params["Video"]["S3Object"].get("Bucket")},
    }
    try:
        import boto3

        topic = channel["SNSTopicArn"]
        region = topic.split(":")[3] if topic.count(":") >= 5 else "us-east-1"
        boto3.client("sns", endpoint_url=endpoint, region_name=region).publish(TopicArn=topic, Message=json.dumps(message))
    except Exception:
        log.exception("video job %s: cannot publish its completion to %s", job.job_id, endpoint)
