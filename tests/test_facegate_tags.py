"""The ``facegate:*`` tags facegate acts on accept only values it can act on, through boto3."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from facegate.governance.retention import enforce_retention
from tests.support.photos import lfw_photo
from tests.support.server import running_server

BAD_RETENTION_DAYS = ["-1", "0", "NaN", "abc", "999999999999", "36501", "\u0663", "1.5", " 30", "+30", ""]
GOOD_RETENTION_DAYS = ["1", "30", "36500"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        yield running


def invalid_parameter(excinfo) -> str:
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("days", BAD_RETENTION_DAYS)
def test_create_collection_refuses_a_retention_that_is_not_a_whole_number_of_days(server, days):
    client = server.client()
    with pytest.raises(ClientError) as excinfo:
        client.create_collection(CollectionId="bad-retention", Tags={"facegate:retention-days": days})
    assert "facegate:retention-days" in invalid_parameter(excinfo)
    assert "bad-retention" not in client.list_collections()["CollectionIds"]


@pytest.mark.parametrize("days", BAD_RETENTION_DAYS)
def test_tag_resource_refuses_a_retention_that_is_not_a_whole_number_of_days(server, days):
    client = server.client()
    arn = client.create_collection(CollectionId=f"retagged-{len(days)}-{abs(hash(days))}")["CollectionArn"]
    with pytest.raises(ClientError) as excinfo:
        client.tag_resource(ResourceArn=arn, Tags={"facegate:retention-days": days})
    assert "36500" in invalid_parameter(excinfo)
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"]["facegate:retention-days"] == "1095"


@pytest.mark.parametrize("days", GOOD_RETENTION_DAYS)
def test_a_whole_number_of_days_up_to_a_hundred_years_is_accepted(server, days):
    client = server.client()
    arn = client.create_collection(CollectionId=f"kept-{days}", Tags={"facegate:retention-days": days})["CollectionArn"]
    client.tag_resource(ResourceArn=arn, Tags={"facegate:retention-days": days})
    assert client.list_tags_for_resource(ResourceArn=arn)["Tags"]["facegate:retention-days"] == days


@pytest.mark.parametrize("value", ["Required", "yes", "true", ""])
def test_the_consent_tag_accepts_only_required(server, value):
    client = server.client()
    with pytest.raises(ClientError) as excinfo:
        client.create_collection(CollectionId="consent-typo", Tags={"facegate:consent": value})
    assert "facegate:consent" in invalid_parameter(excinfo)
    arn = client.create_collection(CollectionId=f"consent-{abs(hash(value))}", Tags={"facegate:consent": "required"})["CollectionArn"]
    with pytest.raises(ClientError) as excinfo:
        client.tag_resource(ResourceArn=arn, Tags={"facegate:consent": value})
    assert "facegate:consent" in invalid_parameter(excinfo)


def test_a_retention_stored_before_values_were_checked_counts_as_the_default(server, faces_dir):
    """"-1" once meant "delete every face at the next sweep"; now it means the default."""
    client = server.client()
    client.create_collection(CollectionId="legacy")
    face = client.index_faces(CollectionId="legacy", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})["FaceRecords"][0]
    with server.facegate.store.engine.begin() as connection:  # as an older facegate let it be written
        connection.exec_driver_sql("UPDATE collection_tags SET value = '-1' WHERE key = 'facegate:retention-days'")
    enforce_retention(server.facegate.store, now=time.time())
    assert [f["FaceId"] for f in client.list_faces(CollectionId="legacy")["Faces"]] == [face["Face"]["FaceId"]]
