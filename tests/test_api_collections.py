"""The Rekognition face API over HTTP, with boto3 as the client: collections, faces, search, users, tags.

Every response is also checked member by member against botocore's output shape.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.support.photos import lfw_photo
from tests.support.postgres import fresh_database
from tests.support.server import running_server
from tests.support.wire_contract import assert_matches_output_shape


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, faces_dir):
    """Every test here runs on the embedded SQLite store and on a real PostgreSQL server."""
    url = fresh_database(request.getfixturevalue("postgres_server_url")) if request.param == "postgresql" else None
    with running_server(tmp_path_factory.mktemp("data"), url) as running:
        assert running.facegate.store.engine.dialect.name == request.param
        yield running


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def photo(faces_dir, name, number=1):
    return {"Bytes": lfw_photo(faces_dir, name, number).read_bytes()}


def call(client, operation, **params):
    """Call through boto3 and check the parsed response against the model's output shape."""
    method = getattr(client, "_".join(part.lower() for part in __import__("re").findall("[A-Z][a-z]*", operation)))
    response = method(**params)
    assert_matches_output_shape(operation, response)
    return response


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_collection_lifecycle(client):
    created = call(client, "CreateCollection", CollectionId="life", Tags={"team": "a"})
    assert created["StatusCode"] == 200 and created["CollectionArn"].endswith(":collection/life")
    described = call(client, "DescribeCollection", CollectionId="life")
    assert described["FaceCount"] == 0 and described["UserCount"] == 0
    assert described["CollectionARN"] == created["CollectionArn"]
    assert abs(described["CreationTimestamp"].timestamp() - time.time()) < 60
    assert "life" in call(client, "ListCollections")["CollectionIds"]
    assert call(client, "DeleteCollection", CollectionId="life")["StatusCode"] == 200
    with pytest.raises(ClientError) as excinfo:
        client.describe_collection(CollectionId="life")
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_duplicate_collection_is_refused(client):
    call(client, "CreateCollection", CollectionId="twice")
    with pytest.raises(ClientError) as excinfo:
        client.create_collection(CollectionId="twice")
    assert error_code(excinfo) == "ResourceAlreadyExistsException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_list_collections_paginates_completely(client):
    names = [f"page-{i:02d}" for i in range(7)]
    for name in names:
        client.create_collection(CollectionId=name)
    seen, token = [], None
    while True:
        page = call(client, "ListCollections", MaxResults=3, **({"NextToken": token} if token else {}))
        assert len(page["CollectionIds"]) <= 3
        seen += page["CollectionIds"]
        token = page.get("NextToken")
        if not token:
            break
    assert [n for n in seen if n.startswith("page-")] == names
    paginated = [c for p in client.get_paginator("list_collections").paginate(PaginationConfig={"PageSize": 2}) for c in p["CollectionIds"]]
    assert [n for n in paginated if n.startswith("page-")] == names


def test_index_search_and_delete_faces(client, faces_dir):
    call(client, "CreateCollection", CollectionId="people")
    indexed = call(client, "IndexFaces", CollectionId="people", Image=photo(faces_dir, "Colin_Powell", 1), ExternalImageId="powell-1")
    (record,) = indexed["FaceRecords"]
    powell_id = record["Face"]["FaceId"]
    assert record["Face"]["ExternalImageId"] == "powell-1" and indexed["UnindexedFaces"] == []
    blair = call(client, "IndexFaces", CollectionId="people", Image=photo(faces_dir, "Tony_Blair", 2))
    blair_id = blair["FaceRecords"][0]["Face"]["FaceId"]

    found = call(client, "SearchFacesByImage", CollectionId="people", Image=photo(faces_dir, "Colin_Powell", 2))
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [powell_id]
    assert found["FaceMatches"][0]["Similarity"] >= 80

    by_id = call(client, "SearchFaces", CollectionId="people", FaceId=powell_id, FaceMatchThreshold=0, MaxFaces=5)
    assert by_id["SearchedFaceId"] == powell_id
    assert [m["Face"]["FaceId"] for m in by_id["FaceMatches"]] == [blair_id]  # itself excluded, all others at 0

    listed = call(client, "ListFaces", CollectionId="people")
    assert {f["FaceId"] for f in listed["Faces"]} == {powell_id, blair_id}
    assert call(client, "DescribeCollection", CollectionId="people")["FaceCount"] == 2

    deleted = call(client, "DeleteFaces", CollectionId="people", FaceIds=[powell_id, "11111111-1111-1111-1111-111111111111"])
    assert deleted["DeletedFaces"] == [powell_id]
    assert deleted["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["FACE_NOT_FOUND"]
    assert call(client, "DescribeCollection", CollectionId="people")["FaceCount"] == 1
    again = call(client, "SearchFacesByImage", CollectionId="people", Image=photo(faces_dir, "Colin_Powell", 2))
    assert again["FaceMatches"] == []


def test_reindexing_the_same_image_and_external_id_does_not_duplicate(client, faces_dir):
    call(client, "CreateCollection", CollectionId="dedup")
    first = call(client, "IndexFaces", CollectionId="dedup", Image=photo(faces_dir, "Hugo_Chavez"), ExternalImageId="x")
    second = call(client, "IndexFaces", CollectionId="dedup", Image=photo(faces_dir, "Hugo_Chavez"), ExternalImageId="x")
    assert [r["Face"]["FaceId"] for r in first["FaceRecords"]] == [r["Face"]["FaceId"] for r in second["FaceRecords"]]
    other = call(client, "IndexFaces", CollectionId="dedup", Image=photo(faces_dir, "Hugo_Chavez"), ExternalImageId="y")
    assert other["FaceRecords"][0]["Face"]["FaceId"] != first["FaceRecords"][0]["Face"]["FaceId"]
    assert call(client, "DescribeCollection", CollectionId="dedup")["FaceCount"] == 2


def test_max_faces_and_quality_filter_report_unindexed_faces(client, faces_dir):
    call(client, "CreateCollection", CollectionId="group")
    group = {"Bytes": (faces_dir / "dlib_faces" / "_unlabeled_or_multiface" / "2008_002470.jpg").read_bytes()}
    response = call(client, "IndexFaces", CollectionId="group", Image=group, MaxFaces=2, QualityFilter="NONE")
    assert len(response["FaceRecords"]) == 2
    assert response["UnindexedFaces"] and all(u["Reasons"] == ["EXCEEDS_MAX_FACES"] for u in response["UnindexedFaces"])
    strict = call(client, "IndexFaces", CollectionId="group", Image=group, QualityFilter="HIGH", ExternalImageId="strict")
    reasons = {r for u in strict["UnindexedFaces"] for r in u["Reasons"]}
    assert "SMALL_BOUNDING_BOX" in reasons


def test_list_faces_paginates_and_filters(client, faces_dir):
    call(client, "CreateCollection", CollectionId="many")
    ids = []
    for n in range(1, 6):
        ids += [r["Face"]["FaceId"] for r in client.index_faces(CollectionId="many", Image=photo(faces_dir, "Tony_Blair", n))["FaceRecords"]]
    seen, token = [], None
    while True:
        page = call(client, "ListFaces", CollectionId="many", MaxResults=2, **({"NextToken": token} if token else {}))
        seen += [f["FaceId"] for f in page["Faces"]]
        token = page.get("NextToken")
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) >= 5  # photo 1 also shows a second, smaller face
    assert [f["FaceId"] for f in call(client, "ListFaces", CollectionId="many", FaceIds=ids[:2])["Faces"]] == sorted(ids[:2])


def test_users_associate_search_and_idempotency(client, faces_dir):
    call(client, "CreateCollection", CollectionId="users")
    powell = [client.index_faces(CollectionId="users", Image=photo(faces_dir, "Colin_Powell", n))["FaceRecords"][0]["Face"]["FaceId"] for n in (1, 2, 3)]
    blair = client.index_faces(CollectionId="users", Image=photo(faces_dir, "Tony_Blair", 2))["FaceRecords"][0]["Face"]["FaceId"]
    call(client, "CreateUser", CollectionId="users", UserId="colin", ClientRequestToken="create-colin")
    call(client, "CreateUser", CollectionId="users", UserId="colin", ClientRequestToken="create-colin")  # a retry
    with pytest.raises(ClientError) as excinfo:
        client.create_user(CollectionId="users", UserId="colin")
    assert error_code(excinfo) == "ConflictException"

    associated = call(client, "AssociateFaces", CollectionId="users", UserId="colin", FaceIds=powell[:2])
    assert {f["FaceId"] for f in associated["AssociatedFaces"]} == set(powell[:2])
    mixed = call(client, "AssociateFaces", CollectionId="users", UserId="colin", FaceIds=[powell[2], blair], UserMatchThreshold=80)
    assert [f["FaceId"] for f in mixed["AssociatedFaces"]] == [powell[2]]
    assert mixed["UnsuccessfulFaceAssociations"][0]["Reasons"] == ["LOW_MATCH_CONFIDENCE"]
    assert [f["FaceId"] for f in call(client, "ListFaces", CollectionId="users", UserId="colin")["Faces"]] == sorted(powell)

    with pytest.raises(ClientError) as excinfo:
        client.associate_faces(CollectionId="users", UserId="colin", FaceIds=[blair], ClientRequestToken="create-colin-2")
        client.associate_faces(CollectionId="users", UserId="colin", FaceIds=[powell[0]], ClientRequestToken="create-colin-2")
    assert error_code(excinfo) == "IdempotentParameterMismatchException"

    by_image = call(client, "SearchUsersByImage", CollectionId="users", Image=photo(faces_dir, "Colin_Powell", 4))
    assert [m["User"]["UserId"] for m in by_image["UserMatches"]] == ["colin"]
    by_face = call(client, "SearchUsers", CollectionId="users", FaceId=blair)
    assert by_face["UserMatches"] == [] and by_face["SearchedFace"] == {"FaceId": blair}
    assert call(client, "ListUsers", CollectionId="users")["Users"] == [{"UserId": "colin", "UserStatus": "ACTIVE"}]

    blocked = call(client, "DeleteFaces", CollectionId="users", FaceIds=[powell[0]])
    assert blocked["UnsuccessfulFaceDeletions"][0]["Reasons"] == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    released = call(client, "DisassociateFaces", CollectionId="users", UserId="colin", FaceIds=[powell[0], blair])
    assert released["DisassociatedFaces"] == [{"FaceId": powell[0]}]
    call(client, "DeleteUser", CollectionId="users", UserId="colin")
    assert call(client, "ListUsers", CollectionId="users")["Users"] == []
    assert all("UserId" not in f for f in call(client, "ListFaces", CollectionId="users")["Faces"])


def test_tags_on_collection_arns(client):
    arn = call(client, "CreateCollection", CollectionId="tagged", Tags={"a": "1"})["CollectionArn"]
    call(client, "TagResource", ResourceArn=arn, Tags={"b": "2"})
    call(client, "UntagResource", ResourceArn=arn, TagKeys=["a"])
    # governance adds the retention default (1095 days, BIPA's maximum) to every new collection
    assert call(client, "ListTagsForResource", ResourceArn=arn)["Tags"] == {"b": "2", "facegate:retention-days": "1095"}
    with pytest.raises(ClientError) as excinfo:
        client.list_tags_for_resource(ResourceArn=arn.replace("tagged", "nope"))
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_detect_and_compare_over_the_wire(client, faces_dir):
    detected = call(client, "DetectFaces", Image=photo(faces_dir, "Colin_Powell"), Attributes=["ALL"])
    assert len(detected["FaceDetails"]) == 1 and len(detected["FaceDetails"][0]["Landmarks"]) == 30
    compared = call(client, "CompareFaces", SourceImage=photo(faces_dir, "Colin_Powell", 1), TargetImage=photo(faces_dir, "Colin_Powell", 2), SimilarityThreshold=90)
    assert len(compared["FaceMatches"]) == 1


def test_another_owner_cannot_see_a_collection(server, client):
    call(client, "CreateCollection", CollectionId="private")
    stranger = server.client(server.new_key("stranger", owner="someone-else"))
    with pytest.raises(ClientError) as excinfo:
        stranger.describe_collection(CollectionId="private")
    assert error_code(excinfo) == "ResourceNotFoundException"
    assert "private" not in stranger.list_collections()["CollectionIds"]


def test_concurrent_requests_all_succeed_and_agree_with_serial_answers(server, faces_dir):
    """Requests run on the server's thread pool; the engine must give every thread the
    same answer it gives one at a time (dlib's detector once crashed the process here)."""
    clients = [server.client() for _ in range(4)]
    client = clients[0]
    call(client, "CreateCollection", CollectionId="crowd")
    for name in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez"):
        call(client, "IndexFaces", CollectionId="crowd", Image=photo(faces_dir, name), ExternalImageId=name)
    probes = [photo(faces_dir, name, 2) for name in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Jennifer_Capriati")]

    def answers(c, image):
        boxes = [f["BoundingBox"] for f in c.detect_faces(Image=image)["FaceDetails"]]
        matches = c.search_faces_by_image(CollectionId="crowd", Image=image, FaceMatchThreshold=50)["FaceMatches"]
        return boxes, [(m["Face"]["ExternalImageId"], round(m["Similarity"], 4)) for m in matches]

    serial = [answers(client, image) for image in probes]
    with ThreadPoolExecutor(len(clients)) as pool:
        concurrent = list(pool.map(lambda c: [answers(c, image) for image in probes * 2], clients))
    assert all(result == serial * 2 for result in concurrent)
    assert [ids[0][0] for _, ids in serial[:3]] == ["Colin_Powell", "Tony_Blair", "Hugo_Chavez"]
