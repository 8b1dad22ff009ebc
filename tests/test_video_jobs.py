"""Stored-video jobs: StartFaceDetection/GetFaceDetection and StartFaceSearch/GetFaceSearch.

A real S3 endpoint (moto's server mode) holds the videos; boto3 drives a running facegate.
Videos with known faces at known times are built at test time from shared photos; the
Hamilton clip is a real 10 s 640x360 video of Lin-Manuel Miranda.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from facegate.bench.local_server import FACEGATE, free_port, start_serve_process
from facegate.governance import audit
from facegate.governance.audited_state import verify_database
from facegate.governance.s3_access import set_allowed_buckets
from facegate.service.video_analysis import SAMPLING_INTERVAL_MS
from facegate.store.database import open_store, sqlite_url
from facegate.store.s3_objects import S3ObjectReader
from tests.support.cli_server import client_factory
from tests.support.photos import lfw_photo
from tests.support.s3 import ADMIN, admin_client, client_with_bucket, endpoint  # noqa: F401 (endpoint is a fixture)
from tests.support.server import running_server
from tests.support.videos import Appearance, build_video
from tests.support.wire_contract import assert_matches_output_shape

BUCKET = "videos"
COLIN = (1000, 2600)  # ms: Colin Powell is on screen from 1.0 s until 2.6 s
STRANGER = (3400, 4600)  # and Tony Blair, never enrolled, from 3.4 s until 4.6 s


@pytest.fixture(scope="module")
def s3(endpoint):
    return client_with_bucket(endpoint, BUCKET)


def reader(endpoint: str) -> S3ObjectReader:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ADMIN["aws_access_key_id"])
        env.setenv("AWS_SECRET_ACCESS_KEY", ADMIN["aws_secret_access_key"])
        env.delenv("AWS_PROFILE", raising=False)
        return S3ObjectReader.connect(endpoint)


@pytest.fixture(scope="module")
def server(tmp_path_factory, endpoint, s3):
    with running_server(tmp_path_factory.mktemp("data"), objects=reader(endpoint)) as running:
        set_allowed_buckets(running.facegate.store, "default", ("*",))
        yield running


@pytest.fixture(scope="module")
def known_faces_video(s3, faces_dir) -> dict:
    data = build_video([
        Appearance(lfw_photo(faces_dir, "Colin_Powell", 2), *COLIN),
        Appearance(lfw_photo(faces_dir, "Tony_Blair", 1), *STRANGER),
    ], 6000)
    return upload(s3, "known-faces.mp4", data)


@pytest.fixture(scope="module")
def colin_collection(server, faces_dir) -> str:
    client = server.client()
    client.create_collection(CollectionId="people")
    client.index_faces(CollectionId="people", ExternalImageId="colin",
                       Image={"Bytes": lfw_photo(faces_dir, "Colin_Powell", 1).read_bytes()})
    return "people"


def upload(s3, key: str, body: bytes) -> dict:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return {"S3Object": {"Bucket": BUCKET, "Name": key}}


def finished(get, job_id: str, timeout: float = 180, **params) -> dict:
    """Poll ``get`` until the job leaves IN_PROGRESS; every answer must match botocore's shape."""
    deadline = time.monotonic() + timeout
    while True:
        answer = get(JobId=job_id, **params)
        if answer["JobStatus"] != "IN_PROGRESS":
            return answer
        assert time.monotonic() < deadline, f"job {job_id} still IN_PROGRESS after {timeout} s"
        time.sleep(0.3)


def all_pages(get, job_id: str, member: str, **params) -> list[dict]:
    items, token = [], None
    while True:
        page = get(JobId=job_id, **params, **({"NextToken": token} if token else {}))
        items += page[member]
        token = page.get("NextToken")
        if token is None:
            return items


def error_of(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def within(timestamp: int, interval: tuple[int, int]) -> bool:
    """On screen at ``timestamp``, give or take one sampling interval."""
    return interval[0] - SAMPLING_INTERVAL_MS <= timestamp < interval[1] + SAMPLING_INTERVAL_MS


def test_face_detection_reports_each_face_at_the_times_it_is_on_screen(server, known_faces_video):
    client = server.client()
    job_id = client.start_face_detection(Video=known_faces_video, JobTag="known-faces")["JobId"]
    answer = finished(client.get_face_detection, job_id)
    assert_matches_output_shape("GetFaceDetection", answer)
    assert answer["JobStatus"] == "SUCCEEDED" and answer["JobTag"] == "known-faces"
    assert answer["VideoMetadata"] == {
        "Codec": "h264", "DurationMillis": 6000, "Format": "QuickTime / MOV", "FrameRate": 10.0,
        "FrameHeight": 360, "FrameWidth": 640, "ColorRange": "LIMITED",
    }
    timestamps = [f["Timestamp"] for f in answer["Faces"]]
    assert timestamps == sorted(timestamps)
    assert all(within(t, COLIN) or within(t, STRANGER) for t in timestamps)
    for interval in (COLIN, STRANGER):  # every sample while the face is on screen finds it
        expected = set(range(interval[0], interval[1], SAMPLING_INTERVAL_MS))
        assert expected <= set(timestamps)
    box = answer["Faces"][0]["Face"]["BoundingBox"]
    assert 0.25 < box["Left"] < 0.6 and 0.1 < box["Top"] < 0.6  # the photo is pasted mid-frame
    assert len(answer["Faces"][0]["Face"]["Landmarks"]) == 5


def test_face_attributes_all_returns_every_landmark(server, known_faces_video):
    client = server.client()
    job_id = client.start_face_detection(Video=known_faces_video, FaceAttributes="ALL")["JobId"]
    answer = finished(client.get_face_detection, job_id)
    assert len(answer["Faces"][0]["Face"]["Landmarks"]) > 5


def test_detection_pages_are_complete_and_without_duplicates(server, known_faces_video):
    client = server.client()
    job_id = client.start_face_detection(Video=known_faces_video)["JobId"]
    everything = finished(client.get_face_detection, job_id)["Faces"]
    paged = all_pages(client.get_face_detection, job_id, "Faces", MaxResults=4)
    assert paged == everything and len(everything) > 8
    assert error_of(lambda: client.get_face_detection(JobId=job_id, NextToken="not-a-token"))[0] == \
        "InvalidPaginationTokenException"


def test_face_search_finds_the_enrolled_person_while_on_screen_and_not_the_stranger(server, known_faces_video, colin_collection):
    client = server.client()
    job_id = client.start_face_search(Video=known_faces_video, CollectionId=colin_collection, FaceMatchThreshold=90)["JobId"]
    answer = finished(client.get_face_search, job_id)
    assert_matches_output_shape("GetFaceSearch", answer)
    persons = answer["Persons"]
    assert persons, "Colin Powell was not found"
    assert all(within(p["Timestamp"], COLIN) for p in persons)  # never the stranger
    assert {m["Face"]["ExternalImageId"] for p in persons for m in p["FaceMatches"]} == {"colin"}
    assert len({p["Person"]["Index"] for p in persons}) == 1  # one person, tracked across the sighting
    assert len(persons) >= (COLIN[1] - COLIN[0]) // SAMPLING_INTERVAL_MS - 1


def test_a_stranger_is_not_matched_at_99(server, faces_dir, s3, colin_collection):
    client = server.client()
    video = upload(s3, "stranger.mp4", build_video([Appearance(lfw_photo(faces_dir, "Tony_Blair", 2), 0, 3000)], 3000))
    job_id = client.start_face_search(Video=video, CollectionId=colin_collection, FaceMatchThreshold=99)["JobId"]
    answer = finished(client.get_face_search, job_id)
    assert answer["JobStatus"] == "SUCCEEDED" and answer["Persons"] == []


def test_face_search_sorts_by_index_or_timestamp_and_pages(server, faces_dir, s3, colin_collection):
    client = server.client()
    colin = lfw_photo(faces_dir, "Colin_Powell", 2)
    video = upload(s3, "two-colins.mp4", build_video(
        [Appearance(colin, 0, 2000, left=20), Appearance(colin, 1000, 3000, left=370)], 3000
    ))
    job_id = client.start_face_search(Video=video, CollectionId=colin_collection)["JobId"]
    by_time = finished(client.get_face_search, job_id)["Persons"]
    by_index = all_pages(client.get_face_search, job_id, "Persons", SortBy="INDEX", MaxResults=3)
    assert [p["Timestamp"] for p in by_time] == sorted(p["Timestamp"] for p in by_time)
    assert [(p["Person"]["Index"], p["Timestamp"]) for p in by_index] == \
        sorted((p["Person"]["Index"], p["Timestamp"]) for p in by_time)
    left_of = {p["Person"]["Index"]: set() for p in by_time}
    for p in by_time:
        left_of[p["Person"]["Index"]].add(p["Person"]["BoundingBox"]["Left"] < 0.5)
    assert len(left_of) == 2 and all(len(sides) == 1 for sides in left_of.values())  # each index stays on its side


def test_face_search_finds_lin_manuel_miranda_in_the_hamilton_clip(server, faces_dir, s3):
    clip = faces_dir / "video" / "short_hamilton_clip.mp4"
    reference = next((faces_dir / "face_recognition_ageitgey" / "lin_manuel_miranda").iterdir())
    client = server.client()
    client.create_collection(CollectionId="hamilton")
    client.index_faces(CollectionId="hamilton", ExternalImageId="lin-manuel-miranda", Image={"Bytes": reference.read_bytes()})
    job_id = client.start_face_search(Video=upload(s3, "hamilton.mp4", clip.read_bytes()), CollectionId="hamilton")["JobId"]
    answer = finished(client.get_face_search, job_id)
    assert answer["VideoMetadata"]["FrameWidth"] == 640 and 9900 < answer["VideoMetadata"]["DurationMillis"] < 10100
    assert answer["Persons"], "Lin-Manuel Miranda was not found in the clip"
    assert all(m["Face"]["ExternalImageId"] == "lin-manuel-miranda" for p in answer["Persons"] for m in p["FaceMatches"])


def test_same_client_request_token_returns_the_same_job(server, known_faces_video):
    client = server.client()
    first = client.start_face_detection(Video=known_faces_video, ClientRequestToken="once-only")["JobId"]
    again = client.start_face_detection(Video=known_faces_video, ClientRequestToken="once-only")["JobId"]
    assert again == first
    code, _ = error_of(lambda: client.start_face_detection(
        Video=known_faces_video, ClientRequestToken="once-only", JobTag="other"
    ))
    assert code == "IdempotentParameterMismatchException"


def test_a_corrupt_video_fails_its_job_with_a_message(server, s3):
    client = server.client()
    job_id = client.start_face_detection(Video=upload(s3, "corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000)))["JobId"]
    answer = finished(client.get_face_detection, job_id)
    assert answer["JobStatus"] == "FAILED"
    assert "corrupt.mp4" in answer["StatusMessage"] and "video" in answer["StatusMessage"]
    missing = client.start_face_detection(Video={"S3Object": {"Bucket": BUCKET, "Name": "no-such.mp4"}})["JobId"]
    answer = finished(client.get_face_detection, missing)
    assert answer["JobStatus"] == "FAILED" and "does not exist" in answer["StatusMessage"]
    assert client.get_face_detection(JobId=job_id)["JobStatus"] == "FAILED"  # and the server still answers


def test_unknown_job_and_another_organisations_job_are_not_found(server, known_faces_video):
    client = server.client()
    job_id = client.start_face_detection(Video=known_faces_video)["JobId"]
    other = server.client(server.new_key("other-org", owner="Elsewhere"))
    assert error_of(lambda: other.get_face_detection(JobId=job_id))[0] == "ResourceNotFoundException"
    assert error_of(lambda: client.get_face_search(JobId=job_id))[0] == "ResourceNotFoundException"


def test_more_concurrent_jobs_than_the_limit_is_limit_exceeded(tmp_path, endpoint, s3, known_faces_video, monkeypatch):
    monkeypatch.setenv("FACEGATE_VIDEO_WORKERS", "0")  # nothing runs, so the jobs stay in progress
    monkeypatch.setenv("FACEGATE_VIDEO_JOBS_PER_ORGANIZATION", "2")
    with running_server(tmp_path, objects=reader(endpoint)) as idle:
        set_allowed_buckets(idle.facegate.store, "default", ("*",))
        client = idle.client()
        for _ in range(2):
            client.start_face_detection(Video=known_faces_video)
        code, message = error_of(lambda: client.start_face_detection(Video=known_faces_video))
        assert code == "LimitExceededException" and "2" in message


def test_face_search_for_a_purpose_that_may_not_identify_is_denied(server, known_faces_video, colin_collection):
    kiosk = server.client(server.new_key("kiosk", purpose="identity_verification"))
    code, message = error_of(lambda: kiosk.start_face_search(Video=known_faces_video, CollectionId=colin_collection))
    assert code == "AccessDeniedException" and "identification-requires-purpose" in message


def test_face_search_below_the_threshold_floor_is_denied_for_missing_children(server, known_faces_video):
    key = server.new_key("amber", owner="Amber Alert", sector="ngo", purpose="missing_children")
    set_allowed_buckets(server.facegate.store, "Amber Alert", (BUCKET,))
    client = server.client(key)
    client.create_collection(CollectionId="children")
    code, message = error_of(lambda: client.start_face_search(Video=known_faces_video, CollectionId="children"))
    assert code == "AccessDeniedException" and "threshold-floor-99" in message
    client.start_face_search(Video=known_faces_video, CollectionId="children", FaceMatchThreshold=99)


def test_video_from_a_bucket_not_allowed_is_denied(server, known_faces_video):
    client = server.client(server.new_key("no-buckets", owner="NoBuckets"))
    code, message = error_of(lambda: client.start_face_detection(Video=known_faces_video))
    assert code == "AccessDeniedException" and "s3-buckets-allowed" in message


def test_a_pack_can_forbid_identification_in_stored_video_only(server, known_faces_video, colin_collection, faces_dir):
    packs = server.facegate.data_dir / "packs"
    packs.mkdir(exist_ok=True)
    (packs / "no-video-identification.cedar").write_text(
        '@id("no-post-event-identification")\n@reason("no identification in recorded video")\n'
        'forbid (principal, action in Action::"Identification", resource) when { context.video == "stored" };\n'
    )
    policies = server.facegate.gate.policies
    policies.set_enabled("no-video-identification", True)
    try:
        client = server.client()
        code, message = error_of(lambda: client.start_face_search(Video=known_faces_video, CollectionId=colin_collection))
        assert code == "AccessDeniedException" and "no-post-event-identification" in message
        photo = {"Bytes": lfw_photo(faces_dir, "Colin_Powell", 2).read_bytes()}
        assert client.search_faces_by_image(CollectionId=colin_collection, Image=photo)["FaceMatches"]
    finally:
        policies.set_enabled("no-video-identification", False)


def test_the_audit_log_records_start_completion_with_matches_and_every_read(server, known_faces_video, colin_collection):
    client = server.client()
    job_id = client.start_face_search(Video=known_faces_video, CollectionId=colin_collection, FaceMatchThreshold=90)["JobId"]
    finished(client.get_face_search, job_id)
    client.get_face_search(JobId=job_id)
    with server.facegate.store.reader() as tx:
        records = audit.stored_records(tx)
        assert verify_database(tx).ok
    starts = [r for r in records if r.get("operation") == "StartFaceSearch" and r.get("status") == 200]
    assert any(r["s3_objects"][0]["key"] == "known-faces.mp4" and r["threshold"] == 90 for r in starts)
    completion = [r for r in records if r.get("operation") == "facegate:VideoJobCompleted" and r["summary"]["job_id"] == job_id]
    assert len(completion) == 1
    summary = completion[0]["summary"]
    assert summary["job_status"] == "SUCCEEDED" and summary["people_matched"] == 1
    assert summary["top_similarity"] >= 90 and summary["candidates"][0]["ExternalImageId"] == "colin"
    assert len(summary["face_ids"]) == 1
    reads = [r for r in records if r.get("operation") == "GetFaceSearch"]
    assert len(reads) >= 2


@pytest.mark.slow
def test_a_job_interrupted_by_killing_the_server_finishes_after_restart(tmp_path, endpoint, s3, faces_dir):
    """``kill -9`` mid-job: on restart the lapsed lease lets the job be claimed again; it
    finishes, and is never left IN_PROGRESS."""
    clip = faces_dir / "video" / "short_hamilton_clip.mp4"
    video = upload(s3, "interrupted.mp4", clip.read_bytes())
    data_dir, port = tmp_path / "data", free_port()
    env = {"FACEGATE_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ADMIN["aws_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": ADMIN["aws_secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        process = start_serve_process(data_dir, port)
        try:
            subprocess.run([FACEGATE, "orgs", "s3-buckets", "default", "--allow", "*", "--data-dir", str(data_dir)],
                           check=True, capture_output=True)
            client = client_factory(data_dir, port, "video")()
            job_id = client.start_face_detection(Video=video)["JobId"]
            _wait_until_claimed(data_dir, job_id)
            process.send_signal(signal.SIGKILL)
            process.wait()
            process = start_serve_process(data_dir, port)
            answer = finished(client_factory(data_dir, port, "after")().get_face_detection, job_id, timeout=240)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert answer["JobStatus"] == "SUCCEEDED" and answer["Faces"]
    store = open_store(sqlite_url(data_dir), create=False)
    try:
        with store.reader() as tx:
            completion = [r for r in audit.stored_records(tx) if r.get("operation") == "facegate:VideoJobCompleted"]
            assert verify_database(tx).ok
    finally:
        store.close()
    assert [r["summary"]["attempts"] for r in completion] == [2]


def _wait_until_claimed(data_dir: Path, job_id: str, timeout: float = 60) -> None:
    from sqlalchemy import select

    from facegate.store import schema

    store = open_store(sqlite_url(data_dir), create=False)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with store.reader() as tx:
                lease = tx.connection.execute(
                    select(schema.video_jobs.c.lease_until).where(schema.video_jobs.c.job_id == job_id)
                ).scalar_one()
            if lease is not None:
                return
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"job {job_id} was never claimed")


def test_completion_is_published_to_the_sns_topic_when_an_endpoint_is_configured(server, endpoint, known_faces_video, monkeypatch):
    sns, sqs = admin_client(endpoint, "sns"), admin_client(endpoint, "sqs")
    topic = sns.create_topic(Name="video-jobs")["TopicArn"]
    queue = sqs.create_queue(QueueName="video-jobs")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    channel = {"SNSTopicArn": topic, "RoleArn": "arn:aws:iam::123456789012:role/unused"}
    client = server.client()
    monkeypatch.delenv("FACEGATE_SNS_ENDPOINT_URL", raising=False)
    unpublished = client.start_face_detection(Video=known_faces_video, NotificationChannel=channel, JobTag="quiet")["JobId"]
    assert finished(client.get_face_detection, unpublished)["JobStatus"] == "SUCCEEDED"  # accepted; poll instead
    monkeypatch.setenv("FACEGATE_SNS_ENDPOINT_URL", endpoint)
    for name, value in (("AWS_ACCESS_KEY_ID", ADMIN["aws_access_key_id"]), ("AWS_SECRET_ACCESS_KEY", ADMIN["aws_secret_access_key"])):
        monkeypatch.setenv(name, value)
    job_id = client.start_face_detection(Video=known_faces_video, NotificationChannel=channel, JobTag="loud")["JobId"]
    finished(client.get_face_detection, job_id)
    deadline, messages = time.monotonic() + 30, []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert [json.loads(m["Body"]) for m in messages] == [{
        "JobId": job_id, "Status": "SUCCEEDED", "API": "StartFaceDetection", "JobTag": "loud",
        "Timestamp": json.loads(messages[0]["Body"])["Timestamp"],
        "Video": {"S3ObjectName": "known-faces.mp4", "S3Bucket": BUCKET},
    }]
