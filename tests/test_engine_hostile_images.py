"""No image, whatever its size, shape, mode or bytes, may crash, corrupt or starve the engine.

Issue 9: a flat 100x10000 PNG made dlib's CNN fallback corrupt the heap, so the *next*
detection aborted the process; a 6000x6000 PNG of 35 KB cost seconds and hundreds of MB.
Hostile images are therefore analysed in a spawned child process (a crash fails the test,
not pytest), one after another in the same child, and the last test checks that the child
still finds a face afterwards; each faceless image costs the CNN fallback (about 2 s), so
those tests are marked slow. Cost and memory are measured by ``facegate bench images``.
"""

from __future__ import annotations

import copy
import math
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegate.engine.decode_budget import PixelBudget
from facegate.engine.dlib_detectors import MMOD_MAX_SIDE, MMOD_MIN_SIDE, mmod_input
from facegate.engine.image import WORKING_PIXELS, decode_image, working_size
from facegate.engine.face_models import FACE_MODEL_FAMILIES, load_engine
from facegate.engine.results import Detection, PixelBox
from tests.support.photos import encode, lfw_photo

# (content, width, height, format, PIL mode): built in the child, so nothing large crosses the pipe.
HOSTILE = {
    "the finding's flat 100x10000 grey PNG": ("flat", 100, 10000, "PNG", "L"),
    "the finding's flat 10000x100 JPEG": ("flat", 10000, 100, "JPEG", "RGB"),
    "the finding's flat 6000x6000 grey PNG": ("flat", 6000, 6000, "PNG", "L"),
    "a 1:1000 strip, tall": ("flat", 80, 80000, "PNG", "L"),
    "a 1:1000 strip, wide": ("flat", 80000, 80, "PNG", "L"),
    "a 1:800 JPEG strip at JPEG's size limit": ("flat", 80, 64000, "JPEG", "RGB"),
    "a 1:100 noise strip, tall": ("noise", 80, 8000, "PNG", "RGB"),
    "a 1:100 noise strip, wide": ("noise", 8000, 80, "JPEG", "RGB"),
    "a 1:40 strip, the most elongated the CNN looks at": ("flat", 100, 4000, "PNG", "L"),
    "a 1:10 noise strip": ("noise", 3000, 300, "JPEG", "RGB"),
    "the 80x80 minimum, flat": ("flat", 80, 80, "PNG", "L"),
    "just above the minimum, noise": ("noise", 81, 81, "JPEG", "RGB"),
    "80 px wide, noise": ("noise", 80, 200, "PNG", "RGB"),
    "80 px high, noise": ("noise", 200, 80, "JPEG", "RGB"),
    "a noise PNG": ("noise", 640, 480, "PNG", "RGB"),
    "a 4 MP noise JPEG": ("noise", 2000, 2000, "JPEG", "RGB"),
    "a transparent 9 MP PNG": ("flat", 3000, 3000, "PNG", "RGBA"),
    "a 35 MP 16-bit grey PNG": ("flat", 7000, 5000, "PNG", "I;16"),
    "a 36 MP palette PNG": ("flat", 6000, 6000, "PNG", "P"),
}
TOO_SMALL = {
    "a 1x10000 PNG": ("flat", 1, 10000, "PNG", "L"),
    "a 10000x1 PNG": ("flat", 10000, 1, "PNG", "L"),
    "a 79x5000 JPEG": ("flat", 79, 5000, "JPEG", "RGB"),
    "a 1x1 PNG": ("flat", 1, 1, "PNG", "L"),
}


def _image_bytes(content: str, width: int, height: int, fmt: str, mode: str) -> bytes:
    if content == "flat":
        image = Image.new(mode, (width, height), 0 if mode == "RGBA" else 128)
    else:
        noise = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(noise)
    return encode(image, fmt)


def _analyse(spec: tuple[str, int, int, str, str] | str, model: str) -> dict[str, object]:
    """Run in the child: decode, detect with details, embed with face model ``model``; report what came back."""
    from facegate.engine.errors import ImageRejected

    data = Path(spec).read_bytes() if isinstance(spec, str) else _image_bytes(*spec)
    engine = load_engine(model)
    try:
        image = decode_image(data)
    except ImageRejected as exc:
        return {"rejected": type(exc).__name__}
    faces = engine.detect(image)
    descriptors = engine.embed(image, faces)
    return {
        "size": (image.width, image.height),
        "working_pixels": image.pixels.shape[0] * image.pixels.shape[1],
        "boxes": [(f.detection.box.left, f.detection.box.top, f.detection.box.right, f.detection.box.bottom)
                  for f in faces],
        "descriptors": descriptors.shape,
    }


@pytest.fixture(scope="module")
def child():
    """One spawned process for the whole module: hostile images run in it one after another."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        yield pool


@pytest.mark.slow
@pytest.mark.parametrize("model", FACE_MODEL_FAMILIES)
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_image_gets_an_answer_without_crashing_the_process(child, name, model):
    content, width, height, _, _ = HOSTILE[name]
    result = child.submit(_analyse, HOSTILE[name], model).result()
    assert result["size"] == (width, height)
    assert result["working_pixels"] <= WORKING_PIXELS or width * height <= WORKING_PIXELS
    assert result["descriptors"] == (len(result["boxes"]), 128)
    if content == "flat":
        assert result["boxes"] == []
    for left, top, right, bottom in result["boxes"]:
        assert right > max(left, 0) and bottom > max(top, 0) and left < width and top < height


@pytest.mark.slow
@pytest.mark.parametrize("name", TOO_SMALL)
def test_an_image_under_80_px_on_a_side_is_too_small_whatever_its_other_side(child, name):
    assert child.submit(_analyse, TOO_SMALL[name], "sface").result() == {"rejected": "ImageTooSmall"}


@pytest.mark.slow
@pytest.mark.parametrize("model", FACE_MODEL_FAMILIES)
def test_the_process_still_finds_faces_after_every_hostile_image(child, faces_dir, model):
    """Heap corruption shows on the next native call, so this runs last in the same child."""
    result = child.submit(_analyse, str(lfw_photo(faces_dir)), model).result()
    assert len(result["boxes"]) == 1 and result["descriptors"] == (1, 128)
    flat = child.submit(_analyse, ("flat", 250, 250, "JPEG", "RGB"), model).result()  # dlib: HOG, padded HOG, then the CNN
    assert flat["boxes"] == []


@pytest.fixture(scope="module", params=FACE_MODEL_FAMILIES)
def engine(request):
    return load_engine(request.param)


@pytest.fixture(scope="module")
def portrait(faces_dir) -> Image.Image:
    return Image.open(lfw_photo(faces_dir)).convert("RGB")


def _iou(a: PixelBox, b: PixelBox) -> float:
    inter = PixelBox(max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom))
    return inter.area / (a.area + b.area - inter.area)


@pytest.mark.parametrize("fmt, exif_rotated", [("JPEG", False), ("PNG", False), ("JPEG", True)])
def test_a_face_in_a_large_image_is_boxed_and_described_in_the_originals_pixels(engine, portrait, fmt, exif_rotated):
    """A 250 px photo enlarged six times onto a 15 MP canvas: analysed at working resolution,
    its box and landmarks still come back in the canvas's pixels, and its descriptor is the photo's."""
    small_image = decode_image(encode(portrait, "PNG"))
    (small,) = engine.detect(small_image)
    factor, left, top = 6, 1700, 900
    canvas = Image.new("RGB", (4800, 3200), (90, 110, 130))
    canvas.paste(portrait.resize((250 * factor, 250 * factor), Image.Resampling.BICUBIC), (left, top))
    if exif_rotated:  # stored turned a quarter, tagged "rotate 90 CW to view"
        exif = Image.Exif()
        exif[0x0112] = 6
        data = encode(canvas.transpose(Image.Transpose.ROTATE_90), fmt, quality=95, exif=exif.tobytes())
    else:
        data = encode(canvas, fmt, quality=95) if fmt == "JPEG" else encode(canvas, fmt)

    image = decode_image(data)
    assert (image.width, image.height) == (4800, 3200)
    assert image.pixels.shape[0] * image.pixels.shape[1] <= WORKING_PIXELS
    (face,) = engine.detect(image)
    b = small.detection.box
    expected = PixelBox(b.left * factor + left, b.top * factor + top, b.right * factor + left, b.bottom * factor + top)
    assert _iou(face.detection.box, expected) > 0.75
    # YuNet places its keypoints a little differently at different face sizes (the big
    # face is found at its reduced pass): measured up to 0.08 of the box on this photo.
    tolerance = {"dlib": 0.05, "sface": 0.1}[engine.name]
    for name in ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"):
        x, y = small.landmarks[name]
        assert math.dist(face.landmarks[name], (x * factor + left, y * factor + top)) < tolerance * expected.width
    assert engine.similarity(engine.embed(image, [face]), engine.embed(small_image, [small]))[0, 0] > 99.9


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("I;16", 0x8000, (128, 128, 128)),
        ("P", None, (255, 255, 255)),
        ("LA", (0, 0), (255, 255, 255)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_large_png_of_every_mode_is_decoded_at_working_resolution_with_its_colours(mode, value, expected):
    image = Image.new(mode, (6000, 5000), value)
    if mode == "P":
        image.info["transparency"] = 0  # palette entry 0 (black) is transparent: shows as white
    decoded = decode_image(encode(image, "PNG", **({"transparency": 0} if mode == "P" else {})))
    assert (decoded.width, decoded.height) == (6000, 5000)
    assert decoded.pixels.shape == (*reversed(working_size(6000, 5000)), 3)
    assert decoded.pixels.dtype == np.uint8 and (decoded.pixels == expected).all()


def test_working_size_keeps_the_aspect_ratio_within_the_pixel_budget():
    for width, height in [(6000, 6000), (100, 40000), (40000, 100), (1921, 1081), (4000, 3000)]:
        w, h = working_size(width, height)
        assert w * h <= WORKING_PIXELS and abs(w / h - width / height) < 0.05 * width / height
    assert working_size(1920, 1080) == (1920, 1080)
    assert working_size(250, 250) == (250, 250)


def test_the_cnn_never_sees_a_side_under_its_window_nor_more_than_its_pixel_budget():
    """dlib's MMOD corrupted the heap on a 5x512 input; it is only ever given inputs it can scan."""
    sides = [40, 79, 80, 100, 250, 256, 300, 512, 1000, 3000, 3300, 4000, 10000, 80000]
    for width in sides:
        for height in sides:
            geometry = mmod_input(width, height)
            if geometry is None:
                too_thin = min(width, height) < MMOD_MIN_SIDE
                assert too_thin or max(width, height) / min(width, height) > (MMOD_MAX_SIDE / MMOD_MIN_SIDE) ** 2 / 1.01
                continue
            (w, h), upsample = geometry
            assert min(w, h) >= MMOD_MIN_SIDE and w * h * 4**upsample <= MMOD_MAX_SIDE**2
    assert mmod_input(100, 10000) is None  # the finding: was 5x512; HOG alone looks at it
    assert mmod_input(100, 3000) == ((80, 2400), 0)  # was 17x512
    assert mmod_input(250, 250) == ((250, 250), 1)  # LFW photos: as before
    assert mmod_input(1024, 768) == ((512, 384), 0)  # larger photos: as before


class _Boxes:
    """A plug-in detector that returns whatever it is told to (detectors are pluggable)."""

    name = "fixed-boxes"

    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        return self.detections


def test_degenerate_boxes_never_reach_the_landmark_models_or_the_aligner(engine, portrait):
    image = decode_image(encode(portrait, "PNG"))
    (real,) = engine.detect(image)
    nan, inf = float("nan"), float("inf")
    degenerate = [
        PixelBox(nan, 10, 100, 100),
        PixelBox(10, 10, inf, 100),
        PixelBox(50, 50, 50, 120),  # zero width
        PixelBox(50, 50, 120, 50.5),  # under a pixel high
        PixelBox(250, 0, 330, 80),  # wholly right of the image
        PixelBox(-80, -80, 0, 0),  # wholly above and left
    ]
    keypoints = real.detection.keypoints  # the portrait is analysed at its own size
    nan_points = tuple((nan, y) for _, y in keypoints) or ((nan, nan),) * 5
    plugged = copy.copy(engine)
    plugged.detector = _Boxes(
        [Detection(box, 1.0, 99.0, keypoints) for box in degenerate]
        + [Detection(real.detection.box, 1.0, 99.0, nan_points)] * (engine.alignment_landmarks is None)
        + [real.detection]
    )
    faces = plugged.detect(image)
    assert [f.detection.box for f in faces] == [real.detection.box]
    assert plugged.embed(image, faces).shape == (1, 128)


def test_decodes_wait_while_the_pixel_budget_is_spent():
    budget = PixelBudget(40)
    holding, release, second_entered = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.reserve(30):
            holding.set()
            release.wait()

    def second() -> None:
        with budget.reserve(20):
            second_entered.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    holding.wait()
    threads[1].start()
    assert not second_entered.wait(0.2)
    release.set()
    assert second_entered.wait(10)
    for thread in threads:
        thread.join()
    with budget.reserve(100):  # larger than the whole budget: runs alone rather than never
        pass
