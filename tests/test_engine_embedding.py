"""Descriptors and the similarity scale, on real photos."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.image import decode_image
from facegate.engine.face_models import FACE_MODEL_FAMILIES, FACE_MODELS, load_engine
from tests.support.photos import lfw_photo


@pytest.fixture(scope="module", params=FACE_MODEL_FAMILIES)
def engine(request):
    return load_engine(request.param)


@pytest.fixture(scope="module")
def descriptors(engine, faces_dir):
    """Three photos each of two people."""
    out = {}
    for name in ("Colin_Powell", "Tony_Blair"):
        for number in (1, 2, 3):
            image = decode_image(lfw_photo(faces_dir, name, number).read_bytes())
            faces = engine.detect(image, details=False)
            out[(name, number)] = engine.embed(image, faces[:1])[0]
    return out


def test_descriptors_are_unit_length_128_floats(descriptors):
    for vector in descriptors.values():
        assert vector.shape == (128,) and vector.dtype == np.float32
        assert abs(np.linalg.norm(vector) - 1) < 1e-5


def test_the_same_person_is_closer_than_anyone_else(engine, descriptors):
    powell = np.stack([descriptors[("Colin_Powell", n)] for n in (1, 2, 3)])
    blair = np.stack([descriptors[("Tony_Blair", n)] for n in (1, 2, 3)])
    same = np.concatenate([engine.distances(powell, powell)[np.triu_indices(3, 1)], engine.distances(blair, blair)[np.triu_indices(3, 1)]])
    different = engine.distances(powell, blair).ravel()
    assert same.max() < different.min()


def test_same_person_scores_high_and_different_people_low_on_the_similarity_scale(engine, descriptors):
    same = engine.similarity(descriptors[("Colin_Powell", 1)], descriptors[("Colin_Powell", 2)])[0, 0]
    different = engine.similarity(descriptors[("Colin_Powell", 1)], descriptors[("Tony_Blair", 1)])[0, 0]
    assert same > 99 and different < 80  # 80 is Rekognition's default match threshold


def test_embedding_several_images_at_once_equals_one_at_a_time(engine, faces_dir):
    images = [decode_image(lfw_photo(faces_dir, "Colin_Powell", n).read_bytes()) for n in (1, 2)]
    items = [(image, engine.detect(image, details=False)[:1]) for image in images]
    together = engine.embed_batch(items)
    apart = np.vstack([engine.embed(image, faces) for image, faces in items])
    assert np.allclose(together, apart, atol=1e-5)


def test_an_image_with_no_faces_embeds_to_nothing(engine, faces_dir):
    image = decode_image(lfw_photo(faces_dir).read_bytes())
    assert engine.embed(image, []).shape == (0, 128)


def test_similarity_is_monotone_decreasing_and_bounded(engine):
    calibration = engine.calibration
    similarity = calibration.similarity(np.linspace(0, 2, 500))
    assert np.all(np.diff(similarity) <= 0)
    unsaturated = (similarity > 1e-6) & (similarity < 100 - 1e-6)  # float64 rounds the tails to 0 and 100
    assert unsaturated.sum() > 50 and np.all(np.diff(similarity[unsaturated]) < 0)
    assert similarity.max() <= 100 and similarity.min() >= 0


@pytest.mark.parametrize("threshold", [50.0, 80.0, 90.0, 95.0, 99.0])
def test_distance_for_inverts_similarity(engine, threshold):
    calibration = engine.calibration
    assert calibration.similarity(calibration.distance_for(threshold)) == pytest.approx(threshold)


@pytest.mark.parametrize("model", sorted(FACE_MODELS))
def test_each_model_ships_a_calibration_fitted_on_it_with_its_measured_rates(model):
    data = json.loads(resources.files("facegate.engine").joinpath(f"calibration-{model}.json").read_text())
    measured = data["provenance"]["measured_on_fit_pairs"]
    assert set(measured["fmr"]) == set(measured["fnmr"]) == {"80", "90", "95", "99"}
    assert data["provenance"]["model_version"] == FACE_MODELS[model].version
    assert measured["accuracy"] >= 0.99


def test_a_calibration_that_would_not_be_monotone_is_refused():
    with pytest.raises(ValueError, match="slope"):
        SimilarityCalibration(slope=-1.0, midpoint=0.5)
