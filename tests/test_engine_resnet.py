"""The BLAS port of dlib's face ResNet must give dlib's own descriptors."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facegate.engine.align import DlibChipAligner
from facegate.engine.dlib_embedder import DlibResNetEmbedder
from facegate.engine.image import decode_image
from facegate.engine.face_models import load_engine
from facegate.engine.resnet import ResNetDescriptor


@pytest.fixture(scope="module")
def chips(faces_dir):
    engine = load_engine("dlib")
    out = []
    for person in sorted((faces_dir / "lfw_erstrong").iterdir())[:40]:
        for photo in sorted(person.glob("*.jpg"))[:1]:
            image = decode_image(photo.read_bytes())
            faces = engine.detect(image, details=False)
            if faces:
                out.append(DlibChipAligner(150, 0.25).chips(image.pixels, [(faces[0].detection.box, faces[0].landmarks5)])[0])
    assert len(out) >= 20
    return np.stack(out[:20])


@pytest.fixture(scope="module")
def port():
    return ResNetDescriptor()


def test_descriptors_match_dlib_on_real_faces(chips, port):
    reference = DlibResNetEmbedder().embed(chips)
    assert np.abs(port.embed(chips) - reference).max() < 1e-4


def test_a_batch_gives_the_same_descriptors_as_one_chip_at_a_time(chips, port):
    batch = port.embed(chips[:6])
    single = np.vstack([port.embed(chips[i : i + 1]) for i in range(6)])
    assert np.allclose(batch, single, atol=1e-5)


def test_concurrent_threads_get_identical_results(chips, port):
    expected = port.embed(chips[:4])
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(port.embed(chips[:4]))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 4 and all(np.allclose(r, expected, atol=1e-5) for r in results)


@pytest.mark.parametrize("shape", [(1, 150, 150), (1, 149, 150, 3), (150, 150, 3)])
def test_chips_of_the_wrong_shape_are_refused(port, shape):
    with pytest.raises(ValueError, match="chips shaped"):
        port.embed(np.zeros(shape, dtype=np.uint8))


def test_no_chips_give_no_descriptors(port):
    assert port.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
