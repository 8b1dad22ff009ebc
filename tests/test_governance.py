"""The governance gate, scenario by scenario, against a running server with boto3 as the client."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from facegate.governance.retention import enforce_retention
from tests.support.photos import lfw_photo
from tests.support.server import running_server

FACEGATE = str(Path(sys.executable).parent / "facegate")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        yield running


def client_for(server, **key):
    return server.client(server.new_key(**key))


def cli(server, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([FACEGATE, *args, "--data-dir", str(server.facegate.data_dir)], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def photo(faces_dir, name="Colin_Powell", number=1):
    return {"Bytes": lfw_photo(faces_dir, name, number).read_bytes()}


def denial(excinfo) -> str:
    assert excinfo.value.response["Error"]["Code"] == "AccessDeniedException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return excinfo.value.response["Error"]["Message"]


def test_law_enforcement_investigation_search_is_denied_naming_the_moratorium(server, faces_dir):
    police = client_for(server, owner="metro-police", sector="law_enforcement", purpose="criminal_investigation")
    with pytest.raises(ClientError) as excinfo:
        police.search_faces_by_image(CollectionId="mugshots", Image=photo(faces_dir), FaceMatchThreshold=99)
    message = denial(excinfo)
    assert "us-police-moratorium-2020" in message and "moratorium" in message


def test_missing_children_search_by_police_is_allowed_at_99_and_denied_at_80_naming_the_floor(server, faces_dir):
    police = client_for(server, owner="child-unit", sector="law_enforcement", purpose="missing_children")
    police.create_collection(CollectionId="missing")
    police.index_faces(CollectionId="missing", Image=photo(faces_dir, "Colin_Powell", 1))
    found = police.search_faces_by_image(CollectionId="missing", Image=photo(faces_dir, "Colin_Powell", 2), FaceMatchThreshold=99)
    assert len(found["FaceMatches"]) == 1
    with pytest.raises(ClientError) as excinfo:
        police.search_faces_by_image(CollectionId="missing", Image=photo(faces_dir, "Colin_Powell", 2), FaceMatchThreshold=80)
    message = denial(excinfo)
    assert "threshold-floors" in message and "99" in message and "not clamped" in message
    with pytest.raises(ClientError) as excinfo:  # the default threshold (80) is below the floor too
        police.search_faces_by_image(CollectionId="missing", Image=photo(faces_dir, "Colin_Powell", 2))
    assert "threshold-floors" in denial(excinfo)


def test_photo_library_key_works_in_its_own_collection_and_sees_no_one_elses(server, faces_dir):
    library = client_for(server, owner="photo-app", sector="commercial", purpose="photo_library")
    other = client_for(server, owner="other-app", sector="commercial", purpose="photo_library")
    other.create_collection(CollectionId="theirs")
    library.create_collection(CollectionId="albums")
    assert len(library.detect_faces(Image=photo(faces_dir))["FaceDetails"]) == 1
    face_id = library.index_faces(CollectionId="albums", Image=photo(faces_dir), ExternalImageId="holiday-1")["FaceRecords"][0]["Face"]["FaceId"]
    assert library.search_faces(CollectionId="albums", FaceId=face_id)["SearchedFaceId"] == face_id
    with pytest.raises(ClientError) as excinfo:
        library.search_faces_by_image(CollectionId="theirs", Image=photo(faces_dir), FaceMatchThreshold=99)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"

    records = [json.loads(line) for line in cli(server, "audit", "export", "--format", "jsonl").stdout.splitlines()]
    mine = [r for r in records if r["organization"] == "photo-app"]
    assert [r["operation"] for r in mine][-4:] == ["DetectFaces", "IndexFaces", "SearchFaces", "SearchFacesByImage"]
    index_record = mine[-3]
    assert index_record["summary"]["face_ids"] == [face_id] and index_record["summary"]["external_image_ids"] == ["holiday-1"]
    assert (mine[-1]["status"], mine[-1]["error_type"], mine[-1]["collection"]) == (400, "ResourceNotFoundException", "theirs")
    assert all("Bytes" not in json.dumps(r) for r in records)


def test_a_research_key_cannot_identify_but_can_detect(server, faces_dir):
    custom = client_for(server, owner="lab", sector="research", purpose="attendance_study")
    custom.create_collection(CollectionId="lab")
    with pytest.raises(ClientError) as excinfo:
        custom.search_faces_by_image(CollectionId="lab", Image=photo(faces_dir))
    assert "identification-requires-purpose" in denial(excinfo)
    assert custom.detect_faces(Image=photo(faces_dir))["FaceDetails"]


def test_approved_child_safety_organisations_are_carved_out_of_the_moratorium(server, faces_dir):
    flagged = client_for(
        server, owner="task-force", sector="law_enforcement", purpose="criminal_investigation", flags=("approved_child_safety",)
    )
    flagged.create_collection(CollectionId="cases")
    assert flagged.search_faces_by_image(CollectionId="cases", Image=photo(faces_dir), FaceMatchThreshold=99)["FaceMatches"] == []


def test_eu_ai_act_pack_requires_a_case_reference_sent_by_a_boto3_hook(server, faces_dir):
    police = client_for(server, owner="eu-police", sector="law_enforcement", purpose="missing_children")
    police.create_collection(CollectionId="eu")
    cli(server, "policy", "enable", "eu-ai-act-art5")
    try:
        with pytest.raises(ClientError) as excinfo:
            police.search_faces_by_image(CollectionId="eu", Image=photo(faces_dir), FaceMatchThreshold=99)
        assert "eu-ai-act-art5" in denial(excinfo)

        def add_case_reference(request, **_):
            request.headers["X-Facegate-Case-Ref"] = "CASE-2026-0042"

        police.meta.events.register("before-sign.rekognition.*", add_case_reference)
        assert police.search_faces_by_image(CollectionId="eu", Image=photo(faces_dir), FaceMatchThreshold=99)["FaceMatches"] == []
    finally:
        cli(server, "policy", "disable", "eu-ai-act-art5")
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    assert records[-1]["operation"] == "facegate:PolicyDisable"
    assert any(r["operation"] == "facegate:PolicyEnable" and r["summary"] == {"pack": "eu-ai-act-art5"} for r in records)
    assert any(r.get("case_reference") == "CASE-2026-0042" for r in records)


def test_policy_test_explains_a_decision(server):
    key = server.new_key(owner="cli-police", sector="law_enforcement", purpose="criminal_investigation")
    done = cli(server, "policy", "test", "--key", key.access_key_id, "--op", "SearchFacesByImage", "--threshold", "99", check=False)
    assert done.returncode == 1 and "DENY" in done.stdout and "moratorium-2020" in done.stdout
    library = server.new_key(owner="cli-lib", purpose="photo_library")
    done = cli(server, "policy", "test", "--key", library.access_key_id, "--op", "DetectFaces")
    assert "ALLOW" in done.stdout


def test_retention_enforce_deletes_expired_faces_and_audits_each(server, faces_dir):
    keeper = client_for(server, owner="gym", sector="commercial", purpose="access_control")
    keeper.create_collection(CollectionId="members", Tags={"facegate:retention-days": "30"})
    old = keeper.index_faces(CollectionId="members", Image=photo(faces_dir, "Tony_Blair", 3))["FaceRecords"][0]["Face"]["FaceId"]
    new = keeper.index_faces(CollectionId="members", Image=photo(faces_dir, "Tony_Blair", 2))["FaceRecords"][0]["Face"]["FaceId"]
    with server.facegate.store.engine.begin() as connection:  # age one face past 30 days
        connection.exec_driver_sql("UPDATE faces SET created_at = ? WHERE face_id = ?", (time.time() - 31 * 86400, old))
    assert "deleted 1 face(s)" in cli(server, "retention", "enforce").stdout
    assert [f["FaceId"] for f in keeper.list_faces(CollectionId="members")["Faces"]] == [new]
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    sweep = [r for r in records if r["operation"] == "facegate:RetentionDelete" and r["collection"] == "members"]
    assert sweep and sweep[-1]["summary"]["face_ids"] == [old]
    assert keeper.search_faces_by_image(CollectionId="members", Image=photo(faces_dir, "Tony_Blair", 2), FaceMatchThreshold=99)["FaceMatches"][0]["Face"]["FaceId"] == new


def test_consent_required_collections_need_a_live_consent_record(server, faces_dir):
    employer = client_for(server, owner="acme", sector="commercial", purpose="access_control")
    employer.create_collection(CollectionId="staff", Tags={"facegate:consent": "required"})
    for external in ({}, {"ExternalImageId": "consent-0042"}):
        with pytest.raises(ClientError) as excinfo:
            employer.index_faces(CollectionId="staff", Image=photo(faces_dir), **external)
        assert "consent-required" in denial(excinfo)
    cli(server, "consent", "add", "consent-0042", "--subject", "employee 42", "--expires", "2099-01-01", "--org", "acme")
    face_id = employer.index_faces(CollectionId="staff", Image=photo(faces_dir), ExternalImageId="consent-0042")["FaceRecords"][0]["Face"]["FaceId"]
    assert "deleted 1 face(s)" in cli(server, "consent", "revoke", "consent-0042", "--org", "acme").stdout
    assert employer.list_faces(CollectionId="staff")["Faces"] == []
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    revoked = [r for r in records if r["operation"] == "facegate:ConsentRevoke"]
    assert revoked[-1]["summary"]["face_ids"] == [face_id] and records[-1]["operation"] == "ListFaces"


def test_faces_under_an_expired_consent_are_deleted_by_the_sweep(server, faces_dir):
    employer = client_for(server, owner="lapsing", sector="commercial", purpose="access_control")
    employer.create_collection(CollectionId="visitors", Tags={"facegate:consent": "required"})
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    cli(server, "consent", "add", "visit-7", "--subject", "visitor 7", "--expires", tomorrow, "--org", "lapsing")
    face_id = employer.index_faces(CollectionId="visitors", Image=photo(faces_dir), ExternalImageId="visit-7")["FaceRecords"][0]["Face"]["FaceId"]
    # The consent runs out: sweep as of two days from now (editing expires_at instead would
    # be tampering, which `audit verify` reports).
    two_days_on = time.time() + 2 * 86400
    assert sum(r["summary"]["faces_deleted"] for r in enforce_retention(server.facegate.store, now=two_days_on)) == 1
    assert employer.list_faces(CollectionId="visitors")["Faces"] == []
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    lapsed = [r for r in records if r["operation"] == "facegate:ConsentExpired"]
    assert lapsed[-1]["summary"] == {"consent_id": "visit-7", "faces_deleted": 1, "face_ids": [face_id]}
    assert enforce_retention(server.facegate.store, now=two_days_on) == []  # swept once, not every hour


def test_every_request_is_audited_in_order_and_any_tampering_is_detected(server, faces_dir, tmp_path):
    mixed = client_for(server, owner="audited", sector="law_enforcement", purpose="criminal_investigation")
    sent = []
    calls = [
        lambda: mixed.create_collection(CollectionId="audited"),                       # allowed
        lambda: mixed.detect_faces(Image=photo(faces_dir)),                            # allowed
        lambda: mixed.search_faces_by_image(CollectionId="audited", Image=photo(faces_dir)),  # denied
        lambda: mixed.describe_collection(CollectionId="nowhere"),                     # fails
        lambda: mixed.list_faces(CollectionId="audited"),                              # allowed
    ] * 3
    for call in calls:
        try:
            sent.append(call()["ResponseMetadata"]["RequestId"])
        except ClientError as error:
            sent.append(error.response["ResponseMetadata"]["RequestId"])
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    audited = [r["request_id"] for r in records if r.get("request_id")]
    assert len(set(audited)) == len(audited)
    assert [rid for rid in audited if rid in set(sent)] == sent  # every one of them, in the order sent
    assert [r["decision"] for r in records if r.get("request_id") in set(sent)][:5] == ["allow", "allow", "deny", "allow", "allow"]
    assert cli(server, "audit", "verify").returncode == 0

    export = tmp_path / "audit.jsonl"
    cli(server, "audit", "export", "--out", str(export))
    lines = export.read_text().splitlines()
    tampered = {
        "modified": lines[:5] + [lines[5].replace('"time":', '"time":1')] + lines[6:],
        "deleted": lines[:5] + lines[6:],
        "inserted": lines[:5] + [lines[2]] + lines[5:],
        "swapped": lines[:5] + [lines[6], lines[5]] + lines[7:],
    }
    for kind, changed in tampered.items():
        path = tmp_path / f"{kind}.jsonl"
        path.write_text("\n".join(changed) + "\n")
        done = cli(server, "audit", "verify", "--file", str(path), "--json", check=False)
        verdict = json.loads(done.stdout)
        assert done.returncode == 1 and verdict["first_bad_seq"] == 6, (kind, verdict)

    for kind in ("modified", "deleted", "swapped", "truncated"):
        copy = tmp_path / f"db-{kind}"
        copy.mkdir()
        source = sqlite3.connect(server.facegate.data_dir / "facegate.db")
        target = sqlite3.connect(copy / "facegate.db")
        source.backup(target)
        source.close()
        rows = target.execute("SELECT seq, record, hash FROM audit_log ORDER BY seq").fetchall()
        if kind == "modified":
            target.execute("""UPDATE audit_log SET record = replace(record, '"time":', '"time":1') WHERE seq = 6""")
        elif kind == "deleted":
            target.execute("DELETE FROM audit_log WHERE seq = 6")
        elif kind == "swapped":
            target.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = 6", rows[6][1:])
            target.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = 7", rows[5][1:])
        else:
            target.execute("DELETE FROM audit_log WHERE seq = ?", (rows[-1][0],))
        target.commit()
        target.close()
        done = subprocess.run([FACEGATE, "audit", "verify", "--json", "--data-dir", str(copy)], capture_output=True, text=True)
        verdict = json.loads(done.stdout)
        assert done.returncode == 1, (kind, verdict)
        assert verdict["first_bad_seq"] == (len(rows) if kind == "truncated" else 6), (kind, verdict)
        shutil.rmtree(copy)


def test_a_request_whose_policy_decision_crashes_is_still_audited(server, monkeypatch):
    def broken_decision(*_args, **_kwargs):
        raise RuntimeError("a bug in policy evaluation")

    monkeypatch.setattr("facegate.governance.policy.Policies.decide", broken_decision)
    with pytest.raises(ClientError) as excinfo:
        server.client().list_faces(CollectionId="never-decided")
    assert excinfo.value.response["Error"]["Code"] == "InternalServerError"
    request_id = excinfo.value.response["ResponseMetadata"]["RequestId"]
    monkeypatch.undo()
    records = [json.loads(line) for line in cli(server, "audit", "export").stdout.splitlines()]
    [record] = [r for r in records if r.get("request_id") == request_id]
    assert (record["operation"], record["collection"], record["status"], record["error_type"], record["decision"]) == (
        "ListFaces", "never-decided", 500, "InternalServerError", None
    )
