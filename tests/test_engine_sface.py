"""The second face model (issue 10): YuNet detection and SFace descriptors on onnxruntime,
from vendored, hash-checked weights. Engine components only; real LFW photos."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from facegate.engine import vendored_models
from facegate.engine.arcface_align import ARCFACE_POINTS, ARCFACE_SIZE, arcface_chips, similarity_transform
from facegate.engine.dlib_detectors import HogDetector
from facegate.engine.image import decode_image
from facegate.engine.onnx_session import inference_session
from facegate.engine.results import PixelBox
from facegate.engine.sface import SFaceEmbedder
from facegate.engine.vendored_models import MODELS_DIR, SFACE, YUNET, ModelFileMismatch, verified_model_bytes
from facegate.engine.yunet import YuNetDetector
from facegate.evaluate.detection import iou
from tests.support.photos import lfw_photo

ONE_FACE_PHOTOS = [("Colin_Powell", n) for n in (1, 2, 3, 4)] + [("Hugo_Chavez", n) for n in (1, 2, 3, 4)]
"""LFW photos with exactly one face in them (many LFW photos show part of a second person)."""

IDENTITIES = ("Colin_Powell", "Tony_Blair", "Hugo_Chavez", "Laura_Bush", "Silvio_Berlusconi")


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


@pytest.fixture(scope="module")
def embedder() -> SFaceEmbedder:
    return SFaceEmbedder()


def pixels_of(faces_dir, name: str, number: int) -> np.ndarray:
    return decode_image(lfw_photo(faces_dir, name, number).read_bytes()).pixels


def largest_face_chip(detector: YuNetDetector, pixels: np.ndarray) -> np.ndarray:
    face = max(detector.detect(pixels), key=lambda d: d.box.area)
    return arcface_chips(pixels, [np.array(face.keypoints)])


@pytest.mark.parametrize("model", [SFACE, YUNET], ids=["sface", "yunet"])
def test_a_model_file_with_one_byte_changed_is_refused(model, tmp_path):
    shutil.copy(MODELS_DIR / model.filename, tmp_path / model.filename)
    assert verified_model_bytes(model, tmp_path)  # the untouched copy loads
    data = bytearray((tmp_path / model.filename).read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / model.filename).write_bytes(bytes(data))
    with pytest.raises(ModelFileMismatch, match=f"expected {model.sha256}"):
        verified_model_bytes(model, tmp_path)


@pytest.mark.parametrize("model", [YuNetDetector, SFaceEmbedder], ids=["yunet", "sface"])
def test_a_model_does_not_load_from_a_tampered_file(model, tmp_path, monkeypatch):
    for shipped in (SFACE, YUNET):
        data = bytearray((MODELS_DIR / shipped.filename).read_bytes())
        data[-1] ^= 0x01
        (tmp_path / shipped.filename).write_bytes(bytes(data))
    monkeypatch.setattr(vendored_models, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelFileMismatch, match="is not the file facegate ships"):
        model()


@pytest.mark.parametrize("model", [SFACE, YUNET], ids=["sface", "yunet"])
def test_each_shipped_model_travels_with_its_licence_and_recorded_digest(model):
    notice = (MODELS_DIR / "NOTICE").read_text()
    assert f"SHA-256: {model.sha256}" in notice
    assert f"Size: {(MODELS_DIR / model.filename).stat().st_size:,} bytes" in notice
    licence = {"Apache-2.0": "LICENSE-SFace.txt", "MIT": "LICENSE-YuNet.txt"}[model.licence]
    assert model.licence.split("-")[0] in (MODELS_DIR / licence).read_text()


def test_a_missing_model_file_is_refused(tmp_path):
    with pytest.raises(ModelFileMismatch, match="missing"):
        verified_model_bytes(SFACE, tmp_path)


@pytest.mark.parametrize(("name", "number"), ONE_FACE_PHOTOS)
def test_yunet_finds_the_one_face_hog_finds_with_its_keypoints_inside(detector, faces_dir, name, number):
    pixels = pixels_of(faces_dir, name, number)
    faces = detector.detect(pixels)
    assert len(faces) == 1
    (hog,) = HogDetector().detect(pixels)
    box = faces[0].box
    assert iou(box, hog.box) > 0.5
    assert 0 < faces[0].confidence <= 100
    points = np.array(faces[0].keypoints)
    assert points.shape == (5, 2)
    assert np.all((points[:, 0] > box.left) & (points[:, 0] < box.right))
    assert np.all((points[:, 1] > box.top) & (points[:, 1] < box.bottom))
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # image-left first
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_a_face_that_fills_a_large_photo_is_found_where_it_is(detector, faces_dir):
    """YuNet was trained on faces up to about 300 px. A 160 px crop around an LFW face,
    enlarged to 1000 px, holds one of about 570x730: at full resolution YuNet boxes only
    part of it (IoU 0.65); the reduced second pass boxes all of it."""
    pixels = pixels_of(faces_dir, "Colin_Powell", 1)
    (small,) = detector.detect(pixels)
    left, top, zoom = 45, 50, 1000 / 160
    crop = Image.fromarray(pixels[top : top + 160, left : left + 160])
    (face,) = detector.detect(np.asarray(crop.resize((1000, 1000), Image.Resampling.BILINEAR)))
    edges = (small.box.left - left, small.box.top - top, small.box.right - left, small.box.bottom - top)
    expected = PixelBox(*(edge * zoom for edge in edges))
    assert iou(face.box, expected) > 0.8


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_flat_image_has_no_face(detector, value):
    assert detector.detect(np.full((480, 640, 3), value, dtype=np.uint8)) == []


def test_a_100_by_10000_strip_is_scanned_without_error(detector):
    strip = np.random.default_rng(7).integers(0, 256, (100, 10000, 3), dtype=np.uint8)
    assert isinstance(detector.detect(strip), list)


def test_concurrent_detection_matches_serial_detection(detector, faces_dir):
    photos = [pixels_of(faces_dir, name, number) for name, number in ONE_FACE_PHOTOS]
    serial = [detector.detect(p) for p in photos]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(detector.detect, photos * 3))
    assert parallel == serial * 3


def test_sface_descriptors_put_each_person_nearer_themselves_than_anyone_else(detector, embedder, faces_dir):
    chips = np.concatenate(
        [largest_face_chip(detector, pixels_of(faces_dir, name, n)) for name in IDENTITIES for n in (1, 2, 3)]
    )
    descriptors = embedder.embed(chips)
    assert descriptors.shape == (15, 128) and descriptors.dtype == np.float32
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=2)
    person = np.repeat(np.arange(len(IDENTITIES)), 3)
    same = person[:, None] == person[None]
    off_diagonal = ~np.eye(15, dtype=bool)
    assert distances[same & off_diagonal].max() < distances[~same].min()
    cosine = descriptors @ descriptors.T
    assert np.allclose(cosine, 1 - distances**2 / 2, atol=1e-5)


def test_embedding_a_batch_equals_embedding_one_at_a_time(detector, embedder, faces_dir):
    chips = np.concatenate([largest_face_chip(detector, pixels_of(faces_dir, name, 1)) for name in IDENTITIES])
    together = embedder.embed(chips)
    apart = np.concatenate([embedder.embed(chip[None]) for chip in chips])
    assert np.allclose(together, apart, atol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 128)


def sface_outputs(detector, faces_dir, **session_options) -> np.ndarray:
    """SFace's raw outputs for the identities' chips, from a session built with ``session_options``."""
    chips = np.concatenate([largest_face_chip(detector, pixels_of(faces_dir, name, 1)) for name in IDENTITIES])
    session = inference_session(verified_model_bytes(SFACE), free_dims={0: "batch"}, **session_options)
    return session.run(None, {"data": chips.transpose(0, 3, 1, 2).astype(np.float32)})[0]


def test_weights_dequantised_at_load_give_the_int8_networks_descriptors(detector, faces_dir):
    as_shipped = sface_outputs(detector, faces_dir, dequantise=False, split_prelu=False)
    dequantised = sface_outputs(detector, faces_dir)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    assert np.abs(unit(as_shipped) - unit(dequantised)).max() < 1e-5


def test_prelu_rewritten_as_elementwise_operators_gives_the_same_descriptors_bit_for_bit(detector, faces_dir):
    with_prelu = sface_outputs(detector, faces_dir, split_prelu=False)
    rewritten = sface_outputs(detector, faces_dir)
    assert rewritten.shape == (len(IDENTITIES), 128)
    assert np.array_equal(with_prelu, rewritten)


def test_alignment_puts_the_keypoints_on_the_arcface_template():
    angle, scale, shift = np.radians(20), 2.5, np.array([300.0, 120.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    keypoints = ARCFACE_POINTS @ (scale * rotation).T + shift
    matrix = similarity_transform(keypoints, ARCFACE_POINTS)
    assert np.allclose(keypoints @ matrix[:, :2].T + matrix[:, 2], ARCFACE_POINTS, atol=1e-9)


def test_alignment_samples_the_image_under_the_template():
    """A white square drawn where the template's nose tip falls, 2x enlarged, lands on the
    chip's nose tip; the chip's far corner, outside the image, is black."""
    pixels = np.zeros((300, 300, 3), dtype=np.uint8)
    nose = (ARCFACE_POINTS[2] * 2).round().astype(int)
    pixels[nose[1] - 4 : nose[1] + 5, nose[0] - 4 : nose[0] + 5] = 255
    (chip,) = arcface_chips(pixels, [ARCFACE_POINTS * 2])
    x, y = ARCFACE_POINTS[2].round().astype(int)
    assert chip.shape == (ARCFACE_SIZE, ARCFACE_SIZE, 3)
    assert chip[y, x].min() == 255 and chip[y - 6, x].max() == 0


def test_keypoints_that_coincide_give_a_black_chip_not_an_error():
    pixels = np.full((200, 200, 3), 200, dtype=np.uint8)
    (chip,) = arcface_chips(pixels, [np.full((5, 2), 100.0)])
    assert chip.max() == 0
