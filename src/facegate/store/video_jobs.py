"""Stored-video jobs as rows of ``video_jobs``: created by Start*, claimed by a worker, finished once.

A job is IN_PROGRESS from its creation until a worker finishes it. Workers in any process
on the database take jobs with ``claim_next``: one UPDATE whose WHERE clause still requires
the lease to be free, inside the store's serialised write transaction, so two workers never
hold one job. A worker renews its lease while it runs; a worker killed with ``kill -9``
stops renewing, its lease passes, and the next claim restarts the job from the beginning
(jobs are pure functions of the video, so a restart repeats nothing visible).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update

from facegate.store import schema
from facegate.store.transaction import Transaction

IN_PROGRESS, SUCCEEDED, FAILED = "IN_PROGRESS", "SUCCEEDED", "FAILED"


@dataclass(frozen=True)
class VideoJob:
    job_id: str
    owner: str
    operation: str  # FaceDetection | FaceSearch
    client_token: str | None
    request_hash: str
    params: dict[str, Any]
    status: str
    status_message: str | None
    result: dict[str, Any] | None
    attempts: int
    created_at: float


def _job(row) -> VideoJob:  # type: ignore[no-untyped-def]
    return VideoJob(
        row.job_id, row.owner, row.operation, row.client_token, row.request_hash, json.loads(row.params),
        row.status, row.status_message, json.loads(row.result) if row.result else None, row.attempts, row.created_at,
    )


_jobs = schema.video_jobs.c


def create_job(
    tx: Transaction, job_id: str, owner: str, operation: str, client_token: str | None, request_hash: str,
    params: dict[str, Any], now: float,
) -> VideoJob:
    tx.connection.execute(insert(schema.video_jobs).values(
        job_id=job_id, owner=owner, operation=operation, client_token=client_token, request_hash=request_hash,
        params=json.dumps(params), status=IN_PROGRESS, attempts=0, created_at=now,
    ))
    return VideoJob(job_id, owner, operation, client_token, request_hash, params, IN_PROGRESS, None, None, 0, now)


def get_job(tx: Transaction, owner: str, operation: str, job_id: str) -> VideoJob | None:
    """The owner's job of that kind; another organisation's job is invisible."""
    row = tx.connection.execute(select(schema.video_jobs).where(
        _jobs.job_id == job_id, _jobs.owner == owner, _jobs.operation == operation
    )).first()
    return _job(row) if row else None


def job_for_token(tx: Transaction, owner: str, operation: str, client_token: str) -> VideoJob | None:
    row = tx.connection.execute(select(schema.video_jobs).where(
        _jobs.owner == owner, _jobs.operation == operation, _jobs.client_token == client_token
    )).first()
    return _job(row) if row else None


def count_in_progress(tx: Transaction, owner: str) -> int:
    return tx.connection.execute(
        select(func.count()).select_from(schema.video_jobs).where(_jobs.owner == owner, _jobs.status == IN_PROGRESS)
    ).scalar_one()


def claimable(tx: Transaction, now: float, limit: int = 4) -> list[str]:
    """Jobs waiting for a worker (IN_PROGRESS with a free lease), oldest first. Idle workers
    poll this with a reader, so polling never takes the write lock."""
    free = or_(_jobs.lease_until.is_(None), _jobs.lease_until < now)
    return list(tx.connection.execute(
        select(_jobs.job_id).where(_jobs.status == IN_PROGRESS, free).order_by(_jobs.created_at).limit(limit)
    ).scalars())


def claim_next(tx: Transaction, now: float, lease_seconds: float) -> VideoJob | None:
    """The oldest IN_PROGRESS job whose lease is free, now leased until ``now + lease_seconds``
    (its ``attempts`` counted up), or None. The UPDATE re-checks the lease, so a job another
    process claimed in between is not taken twice."""
    free = or_(_jobs.lease_until.is_(None), _jobs.lease_until < now)
    for job_id in claimable(tx, now):
        claimed = tx.connection.execute(
            update(schema.video_jobs)
            .where(_jobs.job_id == job_id, _jobs.status == IN_PROGRESS, free)
            .values(lease_until=now + lease_seconds, attempts=_jobs.attempts + 1)
        ).rowcount
        if claimed == 1:
            row = tx.connection.execute(select(schema.video_jobs).where(_jobs.job_id == job_id)).one()
            return _job(row)
    return None


def renew_lease(tx: Transaction, job_id: str, until: float) -> bool:
    """Keep holding a running job; False if it is no longer IN_PROGRESS."""
    return tx.connection.execute(
        update(schema.video_jobs).where(_jobs.job_id == job_id, _jobs.status == IN_PROGRESS).values(lease_until=until)
    ).rowcount == 1


def finish_job(
    tx: Transaction, job_id: str, status: str, message: str | None, result: dict[str, Any] | None, now: float
) -> bool:
    """Record the outcome once; False if the job was already finished (by a worker whose
    lease had lapsed while it was still running)."""
    return tx.connection.execute(
        update(schema.video_jobs).where(_jobs.job_id == job_id, _jobs.status == IN_PROGRESS).values(
            status=status, status_message=message, result=json.dumps(result) if result is not None else None,
            finished_at=now, lease_until=None,
        )
    ).rowcount == 1


def prune_finished(tx: Transaction, finished_before: float) -> int:
    """Delete jobs (and their results) finished before ``finished_before`` (epoch seconds)."""
    return tx.connection.execute(delete(schema.video_jobs).where(
        and_(_jobs.status != IN_PROGRESS, _jobs.finished_at < finished_before)
    )).rowcount
