"""Durable video jobs in the database (migration v7), on SQLite and PostgreSQL: each job is
claimed by exactly one worker however many processes share the database, a job whose
worker stopped renewing its lease is claimed again, and finished jobs are pruned."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.exc import IntegrityError

from facegate.store import video_jobs
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.video_jobs import FAILED, IN_PROGRESS, SUCCEEDED
from tests.support.postgres import fresh_database

LEASE = 10.0


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return fresh_database(request.getfixturevalue("postgres_server_url"))


def _create(store: Store, job_id: str, now: float = 0.0, token: str | None = None) -> None:
    with store.transaction() as tx:
        video_jobs.create_job(tx, job_id, "default", "FaceDetection", token, "hash", {"Video": {}}, now)


def test_two_stores_on_one_database_never_claim_the_same_job(any_database_url):
    """Like `serve --workers 2`: two processes' stores, four threads each, claiming at once."""
    stores = [open_store(any_database_url), open_store(any_database_url)]
    try:
        for number in range(40):
            _create(stores[0], f"job-{number:02d}", now=float(number))
        claimed: list[str] = []
        lock = threading.Lock()

        def claim(store: Store) -> None:
            while True:
                with store.transaction() as tx:
                    job = video_jobs.claim_next(tx, 1000.0, LEASE)
                if job is None:
                    return
                with lock:
                    claimed.append(job.job_id)

        threads = [threading.Thread(target=claim, args=(s,)) for s in stores for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claimed) == [f"job-{n:02d}" for n in range(40)]
    finally:
        for store in stores:
            store.close()


def test_a_job_whose_lease_lapsed_is_claimed_again_and_finished_once(any_database_url):
    store = open_store(any_database_url)
    try:
        _create(store, "job")
        with store.transaction() as tx:
            first = video_jobs.claim_next(tx, 100.0, LEASE)
            assert first is not None and first.attempts == 1
            assert video_jobs.claim_next(tx, 100.0 + LEASE - 1, LEASE) is None  # still held
            second = video_jobs.claim_next(tx, 100.0 + LEASE + 1, LEASE)  # its worker died
            assert second is not None and second.job_id == "job" and second.attempts == 2
            assert video_jobs.finish_job(tx, "job", SUCCEEDED, None, {"Faces": []}, 200.0)
            assert not video_jobs.finish_job(tx, "job", FAILED, "late", None, 201.0)  # the first worker, late
            job = video_jobs.get_job(tx, "default", "FaceDetection", "job")
            assert job is not None and job.status == SUCCEEDED and job.result == {"Faces": []}
            assert video_jobs.claim_next(tx, 1000.0, LEASE) is None
    finally:
        store.close()


def test_finished_jobs_are_pruned_after_their_retention_and_running_ones_never(any_database_url):
    store = open_store(any_database_url)
    try:
        _create(store, "old")
        _create(store, "running")
        with store.transaction() as tx:
            video_jobs.finish_job(tx, "old", SUCCEEDED, None, {}, 50.0)
            assert video_jobs.prune_finished(tx, 100.0) == 1
            assert video_jobs.get_job(tx, "default", "FaceDetection", "old") is None
            running = video_jobs.get_job(tx, "default", "FaceDetection", "running")
            assert running is not None and running.status == IN_PROGRESS
    finally:
        store.close()


def test_a_client_request_token_is_unique_per_organisation_and_operation(any_database_url):
    store = open_store(any_database_url)
    try:
        _create(store, "first", token="t")
        with store.reader() as tx:
            found = video_jobs.job_for_token(tx, "default", "FaceDetection", "t")
            assert found is not None and found.job_id == "first"
            assert video_jobs.job_for_token(tx, "default", "FaceSearch", "t") is None
        with pytest.raises(IntegrityError):
            _create(store, "second", token="t")
    finally:
        store.close()
