"""Face models as Rekognition has them: a collection keeps the model it was created with,
faces of different models are never compared, and a normalised model's searches give
exactly the scores an exhaustive comparison would."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.engine.face_models import FACE_MODELS, load_engine
from tests.support.photos import lfw_photo
from tests.support.server import running_server

PEOPLE = [("Colin_Powell", 1), ("Colin_Powell", 2), ("Tony_Blair", 2), ("Tony_Blair", 3), ("Hugo_Chavez", 1), ("Laura_Bush", 1)]


def photo(faces_dir, name: str, number: int) -> dict[str, bytes]:
    return {"Bytes": lfw_photo(faces_dir, name, number).read_bytes()}


def test_a_collection_keeps_its_model_when_the_servers_default_changes(tmp_path, faces_dir):
    dlib, sface = FACE_MODELS["dlib"].version, FACE_MODELS["sface"].version
    with running_server(tmp_path, engine=load_engine("dlib")) as server:
        client = server.client()
        assert client.create_collection(CollectionId="old")["FaceModelVersion"] == dlib
        indexed = client.index_faces(CollectionId="old", Image=photo(faces_dir, "Colin_Powell", 1))
        assert indexed["FaceModelVersion"] == dlib and indexed["FaceRecords"][0]["FaceDetail"]
        # dlib's detector does not see the small face behind Tony Blair in this photo.
        assert len(client.detect_faces(Image=photo(faces_dir, "Tony_Blair", 1))["FaceDetails"]) == 1
    with running_server(tmp_path, engine=load_engine("sface")) as server:
        client = server.client()
        assert client.describe_collection(CollectionId="old")["FaceModelVersion"] == dlib
        assert client.create_collection(CollectionId="new")["FaceModelVersion"] == sface
        assert len(client.detect_faces(Image=photo(faces_dir, "Tony_Blair", 1))["FaceDetails"]) == 2  # YuNet does
        listed = client.list_collections()
        assert dict(zip(listed["CollectionIds"], listed["FaceModelVersions"])) == {"old": dlib, "new": sface}
        again = client.index_faces(CollectionId="old", Image=photo(faces_dir, "Colin_Powell", 3))
        assert again["FaceModelVersion"] == dlib
        found = client.search_faces_by_image(CollectionId="old", Image=photo(faces_dir, "Colin_Powell", 2))
        assert found["FaceModelVersion"] == dlib and len(found["FaceMatches"]) == 2
        # The same photo in the new collection is described by SFace; each collection's
        # faces carry their own model, and each search scores only its own.
        client.index_faces(CollectionId="new", Image=photo(faces_dir, "Colin_Powell", 1))
        for collection, version, count in (("old", dlib, 2), ("new", sface, 1)):
            faces = client.list_faces(CollectionId=collection)["Faces"]
            assert [f["IndexFacesModelVersion"] for f in faces] == [version] * count
        found = client.search_faces_by_image(CollectionId="new", Image=photo(faces_dir, "Colin_Powell", 2))
        assert found["FaceModelVersion"] == sface and len(found["FaceMatches"]) == 1


def test_a_collection_of_a_model_this_server_lacks_is_refused_cleanly(tmp_path, faces_dir):
    with running_server(tmp_path, engine=load_engine("sface")) as server:
        client = server.client()
        client.create_collection(CollectionId="retired")
        with server.facegate.store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE collections SET face_model_version = 'retired-model-1.0'")
        with pytest.raises(client.exceptions.InvalidParameterException, match="retired-model-1.0"):
            client.search_faces_by_image(CollectionId="retired", Image=photo(faces_dir, "Colin_Powell", 1))


def test_a_normalised_models_search_equals_the_exhaustive_normalised_scores(tmp_path, faces_dir):
    engine = load_engine("sface-fsn")
    assert engine.normalisation is not None
    with running_server(tmp_path, engine=engine) as server:
        client = server.client()
        client.create_collection(CollectionId="fsn")
        ids = [
            client.index_faces(CollectionId="fsn", Image=photo(faces_dir, name, n), MaxFaces=1)["FaceRecords"][0]["Face"]["FaceId"]
            for name, n in PEOPLE
        ]
        collection_pk = next(iter(server.facegate.store.index.snapshot()))
        vectors = np.stack([server.facegate.store.index.vector(collection_pk, face_id) for face_id in ids])
        expected = engine.similarity(vectors, vectors)
        raw = load_engine("sface").similarity(vectors, vectors)
        assert not np.allclose(expected, raw)  # the normalisation moves scores
        for row, face_id in enumerate(ids):
            everyone = client.search_faces(CollectionId="fsn", FaceId=face_id, FaceMatchThreshold=0, MaxFaces=10)["FaceMatches"]
            got = {m["Face"]["FaceId"]: m["Similarity"] for m in everyone}
            assert got == pytest.approx({other: expected[row, col] for col, other in enumerate(ids) if other != face_id}, abs=1e-3)  # float32 index
            threshold = 50.0
            passing = client.search_faces(CollectionId="fsn", FaceId=face_id, FaceMatchThreshold=threshold)["FaceMatches"]
            assert {m["Face"]["FaceId"] for m in passing} == {
                other for col, other in enumerate(ids) if other != face_id and expected[row, col] >= threshold
            }
            assert [m["Similarity"] for m in everyone] == sorted((m["Similarity"] for m in everyone), reverse=True)
