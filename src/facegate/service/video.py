"""StartFaceDetection, StartFaceSearch and their Get* operations: stored-video jobs.

Start* checks the request, then records a durable job (``store/video_jobs.py``) and answers
its ``JobId`` at once; a background worker (``governance/video_worker.py``) analyses the
video (``service/video_analysis.py``) and stores the result. Get* reads the job: its
``JobStatus`` (IN_PROGRESS, SUCCEEDED or FAILED with a ``StatusMessage``) and, once it
succeeded, ``VideoMetadata`` and a page of results. Results are kept for
``RESULT_RETENTION_SECONDS`` after the job finishes (Rekognition keeps them 7 days).
There are no notifications unless the operator configures an SNS endpoint: poll Get*.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

from facegate.service import exceptions
from facegate.service.context import Scope, Service, after_token, require_collection
from facegate.service.images import s3_location
from facegate.store import video_jobs
from facegate.store.video_jobs import SUCCEEDED, VideoJob

FACE_DETECTION, FACE_SEARCH = "FaceDetection", "FaceSearch"

RESULT_RETENTION_SECONDS = 7 * 86_400
"""Finished jobs and their results are deleted 7 days after they finish, as in Rekognition."""

CONCURRENT_JOBS_VARIABLE = "FACEGATE_VIDEO_JOBS_PER_ORGANIZATION"
DEFAULT_CONCURRENT_JOBS = 20
"""Rekognition's default quota of concurrent stored-video jobs per account; here per
organisation. One more is a ``LimitExceededException``."""

DEFAULT_MAX_RESULTS = 1000
"""Get*'s page size when ``MaxResults`` is absent (Rekognition's, and its maximum)."""

_PAGE_TOKEN = r"[0-9]{1,9}"  # a NextToken is the position of the next result


def concurrent_job_limit() -> int:
    return int(os.environ.get(CONCURRENT_JOBS_VARIABLE, DEFAULT_CONCURRENT_JOBS))


def start_face_detection(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    return _start(service, scope, FACE_DETECTION, params)


def start_face_search(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    return _start(service, scope, FACE_SEARCH, params)


def _start(service: Service, scope: Scope, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Record the job, or answer the one an earlier request with the same
    ``ClientRequestToken`` and parameters started (other parameters: a mismatch error)."""
    s3_location((params.get("Video") or {}).get("S3Object") or {}, "Video.S3Object")
    token = params.get("ClientRequestToken")
    job_params = {k: v for k, v in params.items() if k != "ClientRequestToken"}
    request_hash = hashlib.sha256(json.dumps(job_params, sort_keys=True).encode()).hexdigest()
    with service.store.transaction() as tx:
        if operation == FACE_SEARCH:
            require_collection(tx, scope, params["CollectionId"])
        if token is not None:
            earlier = video_jobs.job_for_token(tx, scope.owner, operation, token)
            if earlier is not None:
                if earlier.request_hash != request_hash:
                    raise exceptions.IdempotentParameterMismatchException(
                        "ClientRequestToken was already used for a job with other parameters."
                    )
                return {"JobId": earlier.job_id}
        limit = concurrent_job_limit()
        if video_jobs.count_in_progress(tx, scope.owner) >= limit:
            raise exceptions.LimitExceededException(
                f"The organisation already has {limit} stored-video jobs in progress; start more when they finish."
            )
        job = video_jobs.create_job(
            tx, uuid.uuid4().hex, scope.owner, operation, token, request_hash, job_params, time.time()
        )
    return {"JobId": job.job_id}


def get_face_detection(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    job, answer = _job_answer(service, scope, FACE_DETECTION, params)
    if job.status == SUCCEEDED and job.result is not None:
        answer.update(_page(job.result["Faces"], params))
    return answer


def get_face_search(service: Service, scope: Scope, params: dict[str, Any]) -> dict[str, Any]:
    """Persons ordered by ``SortBy``: TIMESTAMP (the default) or INDEX (person, then time)."""
    job, answer = _job_answer(service, scope, FACE_SEARCH, params)
    if job.status == SUCCEEDED and job.result is not None:
        persons = job.result["Persons"]
        if params.get("SortBy") == "INDEX":
            persons = sorted(persons, key=lambda p: (p["Person"]["Index"], p["Timestamp"]))
        answer.update(_page(persons, params, "Persons"))
    return answer


def _job_answer(service: Service, scope: Scope, operation: str, params: dict[str, Any]) -> tuple[VideoJob, dict[str, Any]]:
    with service.store.reader() as tx:
        job = video_jobs.get_job(tx, scope.owner, operation, params["JobId"])
    if job is None:
        raise exceptions.ResourceNotFoundException(f"The job id: {params['JobId']} does not exist")
    answer: dict[str, Any] = {"JobId": job.job_id, "JobStatus": job.status, "Video": job.params["Video"]}
    if "JobTag" in job.params:
        answer["JobTag"] = job.params["JobTag"]
    if job.status_message:
        answer["StatusMessage"] = job.status_message
    if job.status == SUCCEEDED and job.result is not None:
        answer["VideoMetadata"] = job.result["VideoMetadata"]
    return job, answer


def _page(items: list[dict[str, Any]], params: dict[str, Any], member: str = "Faces") -> dict[str, Any]:
    start = int(after_token(params, _PAGE_TOKEN) or 0)
    if start > len(items):
        raise exceptions.InvalidPaginationTokenException("Invalid pagination token.")
    size = min(int(params.get("MaxResults") or DEFAULT_MAX_RESULTS), DEFAULT_MAX_RESULTS)
    page: dict[str, Any] = {member: items[start : start + size]}
    if start + size < len(items):
        page["NextToken"] = str(start + size)
    return page
