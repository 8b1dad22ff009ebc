"""``Image.S3Object``: facegate reads images from an S3-compatible store, as Rekognition reads S3.

A real S3 endpoint (moto's server mode) and boto3 against a running facegate: every image
operation reads ``S3Object`` images through the same decoder and limits as ``Bytes``, each
failure is the Rekognition error a client expects (never a 500), the audit log names bucket
and key but never content, and an organisation may name only the buckets its operator allowed.
"""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from facegate.bench.local_server import free_port, start_serve_process
from facegate.governance import audit
from facegate.governance.audited_state import verify_database
from facegate.governance.s3_access import set_allowed_buckets
from facegate.store.s3_objects import S3ObjectReader, ObjectLocation, ObjectTooLarge, ObjectUnavailable
from tests.support.cli_server import client_factory
from tests.support.photos import encode, lfw_photo
from tests.support.s3 import ADMIN, client_with_bucket, endpoint, enforcing_iam, user_reading_only, versioned_bucket  # noqa: F401 (endpoint is a fixture)
from tests.support.server import running_server

BUCKET = "photos"
FIFTEEN_MB = 15 * 1024 * 1024


@pytest.fixture(scope="module")
def s3(endpoint):
    return client_with_bucket(endpoint, BUCKET)


@pytest.fixture(scope="module")
def server(tmp_path_factory, endpoint, s3):
    """facegate reading from the moto store, with credentials from the usual AWS variables;
    the default organisation may read every bucket."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", ADMIN["aws_access_key_id"])
        env.setenv("AWS_SECRET_ACCESS_KEY", ADMIN["aws_secret_access_key"])
        env.delenv("AWS_PROFILE", raising=False)
        reader = S3ObjectReader.connect(endpoint)  # credentials are resolved here, once
    with running_server(tmp_path_factory.mktemp("data"), objects=reader) as running:
        set_allowed_buckets(running.facegate.store, "default", ("*",))
        yield running


def upload(s3, key: str, body: bytes, bucket: str = BUCKET) -> dict[str, str]:
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return {"S3Object": {"Bucket": bucket, "Name": key}}


def photo_bytes(faces_dir, name="Colin_Powell", number=1) -> bytes:
    return lfw_photo(faces_dir, name, number).read_bytes()


def faceless_jpeg() -> bytes:
    return encode(Image.new("RGB", (200, 200), (128, 128, 128)), "JPEG")


def error_of(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def audit_records(server, operation: str) -> list[dict]:
    with server.facegate.store.reader() as tx:
        return [r for r in audit.stored_records(tx) if r.get("operation") == operation]


# -- every image operation reads S3Object ----------------------------------------------------

def test_detect_faces_reads_an_s3_object_exactly_as_it_reads_the_same_bytes(server, s3, faces_dir):
    client = server.client()
    data = photo_bytes(faces_dir)
    from_s3 = client.detect_faces(Image=upload(s3, "powell/1.jpg", data), Attributes=["ALL"])["FaceDetails"]
    inline = client.detect_faces(Image={"Bytes": data}, Attributes=["ALL"])["FaceDetails"]
    assert len(from_s3) == 1 and from_s3 == inline


def test_compare_faces_reads_source_and_target_from_s3_and_mixes_with_bytes(server, s3, faces_dir):
    client = server.client()
    source = upload(s3, "powell/1.jpg", photo_bytes(faces_dir, "Colin_Powell", 1))
    same = upload(s3, "powell/2.jpg", photo_bytes(faces_dir, "Colin_Powell", 2))
    other = upload(s3, "blair/1.jpg", photo_bytes(faces_dir, "Tony_Blair", 1))
    matched = client.compare_faces(SourceImage=source, TargetImage=same, SimilarityThreshold=90)
    assert len(matched["FaceMatches"]) == 1 and matched["FaceMatches"][0]["Similarity"] > 90
    assert client.compare_faces(SourceImage=source, TargetImage=other, SimilarityThreshold=90)["FaceMatches"] == []
    mixed = client.compare_faces(SourceImage={"Bytes": photo_bytes(faces_dir, "Colin_Powell", 1)}, TargetImage=same)
    assert mixed["FaceMatches"][0]["Similarity"] == matched["FaceMatches"][0]["Similarity"]


def test_index_faces_and_both_searches_by_image_read_s3_objects(server, s3, faces_dir):
    client = server.client()
    client.create_collection(CollectionId="s3-people")
    stored = upload(s3, "enrol/powell-1.jpg", photo_bytes(faces_dir, "Colin_Powell", 1))
    indexed = client.index_faces(CollectionId="s3-people", Image=stored, ExternalImageId="powell")["FaceRecords"]
    assert len(indexed) == 1
    face_id = indexed[0]["Face"]["FaceId"]
    probe = upload(s3, "probe/powell-2.jpg", photo_bytes(faces_dir, "Colin_Powell", 2))
    found = client.search_faces_by_image(CollectionId="s3-people", Image=probe, FaceMatchThreshold=90)
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [face_id]
    client.create_user(CollectionId="s3-people", UserId="colin")
    client.associate_faces(CollectionId="s3-people", UserId="colin", FaceIds=[face_id])
    users = client.search_users_by_image(CollectionId="s3-people", Image=probe, UserMatchThreshold=90)
    assert [m["User"]["UserId"] for m in users["UserMatches"]] == ["colin"]


def test_reindexing_the_same_image_from_s3_or_as_bytes_returns_the_faces_already_stored(server, s3, faces_dir):
    client = server.client()
    client.create_collection(CollectionId="s3-dedupe")
    data = photo_bytes(faces_dir, "Colin_Powell", 3)
    first = client.index_faces(CollectionId="s3-dedupe", Image=upload(s3, "dedupe.jpg", data), ExternalImageId="p3")
    again = client.index_faces(CollectionId="s3-dedupe", Image={"Bytes": data}, ExternalImageId="p3")
    assert [r["Face"]["FaceId"] for r in again["FaceRecords"]] == [r["Face"]["FaceId"] for r in first["FaceRecords"]]
    assert len(client.list_faces(CollectionId="s3-dedupe")["Faces"]) == 1


def test_version_reads_that_version_and_no_version_reads_the_current_one(server, s3, faces_dir):
    versioned_bucket(s3, "versioned-photos")
    first = s3.put_object(Bucket="versioned-photos", Key="person.jpg", Body=photo_bytes(faces_dir))["VersionId"]
    s3.put_object(Bucket="versioned-photos", Key="person.jpg", Body=faceless_jpeg())
    client = server.client()
    located = {"Bucket": "versioned-photos", "Name": "person.jpg"}
    assert len(client.detect_faces(Image={"S3Object": {**located, "Version": first}})["FaceDetails"]) == 1
    assert client.detect_faces(Image={"S3Object": located})["FaceDetails"] == []


def test_an_s3_image_over_five_but_under_fifteen_megabytes_is_accepted(server, s3, faces_dir):
    """Rekognition allows 15 MB from S3 against 5 MB inline: the same JPEG, padded past its end."""
    padded = photo_bytes(faces_dir) + bytes(6 * 1024 * 1024)
    faces = server.client().detect_faces(Image=upload(s3, "padded.jpg", padded))["FaceDetails"]
    assert len(faces) == 1


# -- each failure is Rekognition's error, never a 500 ----------------------------------------

@pytest.mark.parametrize("s3_object, reason", [
    ({"Bucket": "no-such-bucket", "Name": "a.jpg"}, "bucket does not exist"),
    ({"Bucket": BUCKET, "Name": "no/such/key.jpg"}, "object does not exist"),
    ({"Bucket": "versioned-photos", "Name": "person.jpg", "Version": "no-such-version"}, "version does not exist"),
])
def test_a_missing_bucket_key_or_version_is_an_invalid_s3_object(server, s3, faces_dir, s3_object, reason):
    if "Version" in s3_object:
        versioned_bucket(s3, "versioned-photos")
        s3.put_object(Bucket="versioned-photos", Key="person.jpg", Body=photo_bytes(faces_dir))
    code, status, message = error_of(lambda: server.client().detect_faces(Image={"S3Object": s3_object}))
    assert (code, status) == ("InvalidS3ObjectException", 400)
    assert reason in message and f"s3://{s3_object['Bucket']}/{s3_object['Name']}" in message


def test_an_s3_object_without_a_name_is_an_invalid_s3_object(server):
    code, status, message = error_of(lambda: server.client().detect_faces(Image={"S3Object": {"Bucket": BUCKET}}))
    assert (code, status) == ("InvalidS3ObjectException", 400) and "Name" in message


def test_an_s3_object_over_fifteen_megabytes_is_too_large(server, s3):
    image = upload(s3, "huge.jpg", b"\xff\xd8\xff" + bytes(FIFTEEN_MB - 2))
    code, status, message = error_of(lambda: server.client().detect_faces(Image=image))
    assert (code, status) == ("ImageTooLargeException", 400)
    assert f"{FIFTEEN_MB + 1} bytes" in message and "15 MB" in message


def test_an_s3_object_that_is_not_an_image_is_an_invalid_image_format(server, s3):
    image = upload(s3, "notes.txt", b"these are not the pixels you are looking for")
    code, status, _ = error_of(lambda: server.client().detect_faces(Image=image))
    assert (code, status) == ("InvalidImageFormatException", 400)


def test_bytes_and_s3_object_together_are_an_invalid_parameter(server, faces_dir):
    image = {"Bytes": photo_bytes(faces_dir), "S3Object": {"Bucket": BUCKET, "Name": "powell/1.jpg"}}
    code, status, _ = error_of(lambda: server.client().detect_faces(Image=image))
    assert (code, status) == ("InvalidParameterException", 400)


def test_an_unreachable_store_is_an_invalid_s3_object(tmp_path):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "any")
        env.setenv("AWS_SECRET_ACCESS_KEY", "any")
        closed = S3ObjectReader.connect(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with running_server(tmp_path, objects=closed) as running:
        set_allowed_buckets(running.facegate.store, "default", ("*",))
        code, status, message = error_of(lambda: running.client().detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "a.jpg"}}))
    assert (code, status) == ("InvalidS3ObjectException", 400) and "did not answer" in message


def test_without_a_configured_store_s3_object_says_none_is_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("FACEGATE_S3_ENDPOINT_URL", raising=False)
    with running_server(tmp_path) as running:
        set_allowed_buckets(running.facegate.store, "default", ("*",))
        code, status, message = error_of(lambda: running.client().detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "a.jpg"}}))
    assert (code, status) == ("InvalidS3ObjectException", 400)
    assert "no S3-compatible store is configured" in message and "FACEGATE_S3_ENDPOINT_URL" in message


def test_access_the_store_denies_to_facegates_profile_is_an_invalid_s3_object(tmp_path, monkeypatch, endpoint, s3, faces_dir):
    """Credentials from a named profile (FACEGATE_S3_PROFILE) of a user who may read one bucket."""
    s3.create_bucket(Bucket="readable")
    s3.create_bucket(Bucket="forbidden")
    for bucket in ("readable", "forbidden"):
        s3.put_object(Bucket=bucket, Key="powell.jpg", Body=photo_bytes(faces_dir))
    key = user_reading_only(endpoint, "facegate-reader", "readable")
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[store]\naws_access_key_id = {key['aws_access_key_id']}\naws_secret_access_key = {key['aws_secret_access_key']}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("FACEGATE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("FACEGATE_S3_PROFILE", "store")
    with running_server(tmp_path / "data") as running, enforcing_iam(endpoint):
        set_allowed_buckets(running.facegate.store, "default", ("*",))
        client = running.client()
        image = {"S3Object": {"Bucket": "readable", "Name": "powell.jpg"}}
        assert len(client.detect_faces(Image=image)["FaceDetails"]) == 1
        denied = {"S3Object": {"Bucket": "forbidden", "Name": "powell.jpg"}}
        code, status, message = error_of(lambda: client.detect_faces(Image=denied))
    assert (code, status) == ("InvalidS3ObjectException", 400) and "access denied" in message


# -- governance: bucket allow-lists and the audit record -------------------------------------

def test_an_organisation_reads_only_the_buckets_its_operator_allowed(server, s3, faces_dir):
    for tenant in ("tenant-a", "tenant-b"):
        s3.create_bucket(Bucket=f"{tenant}-photos")
        s3.put_object(Bucket=f"{tenant}-photos", Key="p.jpg", Body=photo_bytes(faces_dir))
        server.new_key(owner=tenant)
        set_allowed_buckets(server.facegate.store, tenant, (f"{tenant}-photos",))
    tenant_a = server.client(server.new_key(owner="tenant-a"))
    own = {"S3Object": {"Bucket": "tenant-a-photos", "Name": "p.jpg"}}
    theirs = {"S3Object": {"Bucket": "tenant-b-photos", "Name": "p.jpg"}}
    assert len(tenant_a.detect_faces(Image=own)["FaceDetails"]) == 1
    for call in (
        lambda: tenant_a.detect_faces(Image=theirs),
        lambda: tenant_a.compare_faces(SourceImage=own, TargetImage=theirs),
    ):
        code, status, message = error_of(call)
        assert (code, status) == ("AccessDeniedException", 400) and "s3-buckets-allowed" in message


def test_an_organisation_no_bucket_was_allowed_for_is_refused_before_anything_is_read(server):
    stranger = server.client(server.new_key(owner="no-buckets-org"))
    nowhere = {"S3Object": {"Bucket": "does-not-exist-anywhere", "Name": "a.jpg"}}
    code, status, message = error_of(lambda: stranger.detect_faces(Image=nowhere))
    assert (code, status) == ("AccessDeniedException", 400)  # not InvalidS3Object: the store was never asked
    assert "facegate orgs s3-buckets" in message
    (record,) = [r for r in audit_records(server, "DetectFaces") if r["organization"] == "no-buckets-org"]
    assert record["decision"] == "deny" and "baseline/s3-buckets-allowed" in record["policies"]
    assert record["s3_objects"] == [{"member": "Image", "bucket": "does-not-exist-anywhere", "key": "a.jpg"}]


def test_the_audit_record_names_bucket_key_and_version_but_never_the_content(server, s3, faces_dir):
    data = photo_bytes(faces_dir, "Colin_Powell", 4)
    versioned_bucket(s3, "audited")
    version = s3.put_object(Bucket="audited", Key="who.jpg", Body=data)["VersionId"]
    client = server.client(server.new_key(owner="auditors"))
    set_allowed_buckets(server.facegate.store, "auditors", ("audited",))
    client.compare_faces(
        SourceImage={"S3Object": {"Bucket": "audited", "Name": "who.jpg", "Version": version}},
        TargetImage={"S3Object": {"Bucket": "audited", "Name": "who.jpg"}},
    )
    error_of(lambda: client.detect_faces(Image={"S3Object": {"Bucket": "audited", "Name": "missing.jpg"}}))
    compared = [r for r in audit_records(server, "CompareFaces") if r["organization"] == "auditors"]
    failed = [r for r in audit_records(server, "DetectFaces") if r["organization"] == "auditors"]
    assert [r["s3_objects"] for r in compared] == [[
        {"member": "SourceImage", "bucket": "audited", "key": "who.jpg", "version": version},
        {"member": "TargetImage", "bucket": "audited", "key": "who.jpg"},
    ]]
    assert [(r["error_type"], r["s3_objects"][0]["key"]) for r in failed] == [("InvalidS3ObjectException", "missing.jpg")]
    text = json.dumps(compared + failed)
    for encoding in (base64.b64encode(data[:300]).decode(), data[:300].hex()):
        assert encoding[:64] not in text


def test_audit_verify_explains_an_allow_list_only_when_an_audited_change_made_it(server):
    with server.facegate.store.reader() as tx:
        assert verify_database(tx).ok
    with server.facegate.store.transaction() as tx:  # someone with the database, not the CLI
        tx.set_setting("s3_buckets:no-buckets-org", json.dumps(["tenant-b-photos"]))
    try:
        with server.facegate.store.reader() as tx:
            problems = verify_database(tx).problems
        assert any("no-buckets-org" in p and "no audit record set it" in p for p in problems)
    finally:
        with server.facegate.store.transaction() as tx:
            tx.set_setting("s3_buckets:no-buckets-org", "[]")


@pytest.mark.slow  # a `facegate serve` process: about 13 s
def test_facegate_serve_reads_the_store_named_by_its_environment(tmp_path, monkeypatch, endpoint, s3, faces_dir):
    """The documented set-up: FACEGATE_S3_ENDPOINT_URL, the usual AWS variables and
    `facegate orgs s3-buckets`, with `facegate serve` and boto3 as an operator runs them."""
    import subprocess

    from facegate.bench.local_server import FACEGATE

    upload(s3, "served/powell.jpg", photo_bytes(faces_dir))
    monkeypatch.setenv("FACEGATE_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ADMIN["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ADMIN["aws_secret_access_key"])
    data_dir, port = tmp_path / "data", free_port()
    process = start_serve_process(data_dir, port)
    try:
        client = client_factory(data_dir, port, "s3-cli")()
        image = {"S3Object": {"Bucket": BUCKET, "Name": "served/powell.jpg"}}
        assert error_of(lambda: client.detect_faces(Image=image))[0] == "AccessDeniedException"
        subprocess.run([FACEGATE, "orgs", "s3-buckets", "default", "--allow", BUCKET, "--data-dir", str(data_dir)], check=True)
        assert len(client.detect_faces(Image=image)["FaceDetails"]) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- the reader's bounds, against stores that misbehave --------------------------------------

@contextmanager
def raw_store(respond) -> Iterator[str]:
    """An HTTP server whose every GET is answered by ``respond(handler)``; yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            try:
                respond(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader hung up, as it should

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def reader_for(url: str, monkeypatch, **bounds: float) -> S3ObjectReader:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "any")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "any")
    return S3ObjectReader.connect(url, **bounds)


def test_an_object_sent_without_a_length_is_cut_off_one_byte_past_the_limit(monkeypatch):
    def chunked(handler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(32):  # 2 MB, in 64 KiB chunks
            handler.wfile.write(b"10000\r\n" + bytes(65536) + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    with raw_store(chunked) as url:
        with pytest.raises(ObjectTooLarge) as excinfo:
            reader_for(url, monkeypatch).read(ObjectLocation("b", "k"), max_bytes=1024 * 1024)
    assert excinfo.value.size is None and excinfo.value.limit == 1024 * 1024


def test_a_store_that_never_answers_is_unavailable_after_the_read_timeout(monkeypatch):
    release = threading.Event()
    with raw_store(lambda handler: release.wait(30)) as url:
        try:
            with pytest.raises(ObjectUnavailable, match="did not answer"):
                reader_for(url, monkeypatch, read_timeout=0.5).read(ObjectLocation("b", "k"), max_bytes=1024)
        finally:
            release.set()


def test_a_store_that_trickles_is_unavailable_after_the_deadline(monkeypatch):
    def trickle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(64 * 65536))
        handler.end_headers()
        for _ in range(64):
            handler.wfile.write(bytes(65536))
            handler.wfile.flush()
            time.sleep(0.2)

    with raw_store(trickle) as url:
        with pytest.raises(ObjectUnavailable, match="took over"):
            reader_for(url, monkeypatch, deadline=0.5).read(ObjectLocation("b", "k"), max_bytes=FIFTEEN_MB)


def test_a_reader_streams_into_a_file_and_reports_the_size(endpoint, s3, monkeypatch):
    upload(s3, "stream.bin", b"x" * 200_000)
    sink = io.BytesIO()
    size = reader_for(endpoint, monkeypatch).copy_to(ObjectLocation(BUCKET, "stream.bin"), sink, max_bytes=200_000)
    assert size == 200_000 and sink.getvalue() == b"x" * 200_000
