"""dlib's face ResNet, run on numpy's BLAS instead of dlib's built-in kernels.

Why: the ``dlib-bin`` wheel is compiled without BLAS, so its descriptor costs ~100 ms a
face on one core while holding the GIL. The very same weights, read from the bundled
``dlib_face_recognition_resnet_model_v1.dat`` and evaluated as im2col + one GEMM per
convolution, give the same descriptors several times faster, batch well, and release
the GIL so threads can share cores.

The network is dlib's ``anet_type`` from ``examples/dnn_face_recognition_ex.cpp``:
a 7x7/2 convolution, 3x3/2 max-pool, then residual stages of 32, 64, 128, 256 and
256 filters (3, 4, 3, 3 and 1 blocks; every stage but the first starts with a stride-2
block whose shortcut is a 2x2 average pool, zero-padded in channels), a global average
pool and a 128x256 fully connected layer without bias. Shapes follow dlib exactly:
unpadded strided convolutions and pools, and zero-padded sums (see ``_add_padded``). Batch-norm was frozen into
``affine_`` layers at training time; we fold those into the preceding convolutions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import as_strided

from facegate.engine.model_files import RESNET, model_path

CHIP_SIZE = 150
_BATCH = 8
_MEAN_RGB = np.array([122.782, 117.001, 104.298], dtype=np.float32)  # input_rgb_image_sized
_STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
"""(filters, blocks, first block downsamples) for each residual stage, input side first."""


@dataclass(frozen=True)
class _Conv:
    """A convolution with its affine layer folded in: weights (kh*kw*cin, cout), bias (cout)."""

    weights: np.ndarray
    bias: np.ndarray
    size: int
    stride: int
    padding: int


class _Reader:
    """dlib's serialisation: integers are a length byte (0x80 = negative) then little-endian
    bytes; strings are an integer length then bytes; tensors (version 2) are an integer
    header then raw little-endian float32."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def integer(self) -> int:
        head = self.data[self.position]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.position + 1 : self.position + 1 + size], "little")
        self.position += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"unsupported dlib tensor version {version}")
        shape = [self.integer() for _ in range(4)]
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.position)
        self.position += 4 * count
        return values.astype(np.float32).reshape(shape)


def _layers(data: bytes, name: str) -> list[_Reader]:
    """A reader positioned just after each serialised occurrence of the layer tag ``name``."""
    tag = bytes([0x01, len(name)]) + name.encode()
    return [_Reader(data, m.end()) for m in re.finditer(re.escape(tag), data)]


def _load(path: Path) -> tuple[list[_Conv], np.ndarray]:
    data = path.read_bytes()
    convolutions = []
    for conv, affine in zip(_layers(data, "con_4"), _layers(data, "affine_"), strict=True):
        params = conv.tensor().ravel()
        filters, size, _, stride, _, padding, _ = (conv.integer() for _ in range(7))
        cin = (params.size - filters) // (filters * size * size)
        kernel = params[: filters * cin * size * size].reshape(filters, cin, size, size)
        gamma_beta = affine.tensor().ravel()
        gamma, beta = gamma_beta[:filters], gamma_beta[filters:]
        # (cout, cin, kh, kw) -> (kh, kw, cin, cout) to match our NHWC im2col ordering.
        weights = (kernel * gamma[:, None, None, None]).transpose(2, 3, 1, 0).reshape(-1, filters)
        bias = params[-filters:] * gamma + beta
        convolutions.append(_Conv(np.ascontiguousarray(weights), bias, size, stride, padding))
    (fc,) = _layers(data, "fc_2")
    outputs, inputs = fc.integer(), fc.integer()
    dense = fc.tensor().reshape(inputs, outputs)
    if len(convolutions) != 1 + 2 * sum(blocks for _, blocks, _ in _STAGES):
        raise ValueError(f"unexpected network: {len(convolutions)} convolutions in {path}")
    return convolutions, dense


def _convolve(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """NHWC convolution as one GEMM over an im2col view (zero padding, dlib's output size)."""
    if conv.padding:
        p = conv.padding
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    n, h, w, c = x.shape
    k, s = conv.size, conv.stride
    out_h, out_w = (h - k) // s + 1, (w - k) // s + 1
    sn, sh, sw, sc = x.strides
    windows = as_strided(x, (n, out_h, out_w, k, k, c), (sn, sh * s, sw * s, sh, sw, sc), writeable=False)
    columns = windows.reshape(n * out_h * out_w, k * k * c)
    return (columns @ conv.weights + conv.bias).reshape(n, out_h, out_w, -1)


def _pool(x: np.ndarray, size: int, stride: int, reduce: str) -> np.ndarray:
    n, h, w, c = x.shape
    out_h, out_w = (h - size) // stride + 1, (w - size) // stride + 1
    sn, sh, sw, sc = x.strides
    windows = as_strided(x, (n, out_h, out_w, size, size, c), (sn, sh * stride, sw * stride, sh, sw, sc), writeable=False)
    return windows.max(axis=(3, 4)) if reduce == "max" else windows.mean(axis=(3, 4), dtype=np.float32)


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's ``add_prev``: the sum takes the larger size in every dimension, and whatever
    lies outside the smaller tensor counts as zero. In the downsampling blocks the shortcut
    can be a row and column larger than the residual (8 px pools to 4, convolves to 3)."""
    shape = tuple(max(x, y) for x, y in zip(a.shape, b.shape))
    out = np.zeros(shape, dtype=np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out


class ResNetDescriptor:
    """``FaceEmbedder`` computing dlib's 128-d face descriptor with numpy. Stateless: thread-safe."""

    name = "dlib-resnet-v1"
    dimension = 128
    chip_size = CHIP_SIZE

    def __init__(self, path: Path | None = None) -> None:
        self._convolutions, self._dense = _load(path or model_path(RESNET))

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(n, 150, 150, 3) uint8 RGB chips -> (n, 128) float32 descriptors."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected chips shaped (n, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}")
        if len(chips) == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        # Larger batches overflow the CPU caches in im2col: 4-8 chips is the measured optimum.
        return np.vstack([self._forward(chips[i : i + _BATCH]) for i in range(0, len(chips), _BATCH)])

    def _forward(self, chips: np.ndarray) -> np.ndarray:
        x = (chips.astype(np.float32) - _MEAN_RGB) / 256.0
        layers = iter(self._convolutions)
        x = np.maximum(_convolve(x, next(layers)), 0)
        x = _pool(x, 3, 2, "max")
        for _, blocks, downsample_first in _STAGES:
            for block in range(blocks):
                down = downsample_first and block == 0
                shortcut = _pool(x, 2, 2, "mean") if down else x
                y = np.maximum(_convolve(x, next(layers)), 0)
                y = _convolve(y, next(layers))
                x = np.maximum(_add_padded(shortcut, y), 0)
        pooled = x.mean(axis=(1, 2), dtype=np.float32)
        return pooled @ self._dense
