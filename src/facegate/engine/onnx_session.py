"""Turn a shipped ONNX file into an ``onnxruntime`` session, fixing its graph in memory.

The shipped files stay byte-identical to upstream's (their SHA-256 is checked before this
runs); what onnxruntime needs differently is changed here, on the parsed graph:

- **Inputs no node reads are dropped.** The int8 SFace file still lists its old float32
  weight names as graph inputs; onnxruntime refuses a graph with inputs it cannot be fed.
- **Weights leave the input list.** The files use the old convention of listing every
  weight as an input too, which tells onnxruntime a caller may override it, so it will
  not fold constants through it.
- **Weights are dequantised to float32 once, at load.** The int8 files store each weight
  with per-block scales and dequantise it on every call. Doing it once gives the same SFace
  descriptors (largest difference 3.4e-7 on unit vectors) at 1.6 times the speed (34
  against 21 chips/s on one core). YuNet needs it to run at all: its biases are quantised
  as one block with a one-element scale, which onnxruntime 1.32 takes for a per-tensor
  scale and then refuses because a block size is set.
- **PRelu becomes Relu(x) + slope * Min(x, 0).** onnxruntime 1.32 runs PRelu with a
  per-channel slope through its generic broadcasting kernel, and cannot keep it in the
  blocked layout its convolutions use, so each one also costs two layout reorders: 15 of
  SFace's 28 ms a chip on one core. The three elementwise operators give the same floats
  bit for bit (x + 0 for x >= 0, 0 + slope * x below) in 16 ms. (``max(x, slope * x)`` would
  be cheaper but is wrong: SFace's slopes run from -0.81 to 1.12.)
- **Fixed input dimensions can be freed**: YuNet is exported at 1x3x640x640 but its
  layers work at any size that is a multiple of 32; SFace at a batch of one.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

INTRA_OP_THREADS = 1
"""Threads onnxruntime may use inside one call. One, because the engine is called from the
server's thread pool and from evaluation workers: concurrency comes from requests, and a
session is safe to run from several threads at once. A per-call pool on top would put
several threads per core on a 2-core machine, and its workers spin-wait between
operators, burning the CPU other requests need."""


def inference_session(
    model_bytes: bytes, *, free_dims: dict[int, str] | None = None, dequantise: bool = True, split_prelu: bool = True
) -> ort.InferenceSession:
    """A CPU session for ``model_bytes``. ``free_dims`` maps a dimension index of the
    (single) image input to a symbolic name, making it variable. ``dequantise=False``
    keeps the int8 graph as shipped, the reference the dequantised one is tested against
    (SFace only: onnxruntime refuses YuNet's); ``split_prelu=False`` keeps PRelu, the
    reference for its rewrite."""
    model = onnx.load_model_from_string(model_bytes)
    graph = model.graph
    _drop_unread_inputs(graph)
    _weights_out_of_inputs(graph)
    if dequantise:
        _dequantise_weights(graph)
    if split_prelu:
        _prelu_as_elementwise(graph)
    _drop_unread_weights(graph)
    if free_dims:
        _free_input_dims(graph, free_dims)
    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _drop_unread_inputs(graph: onnx.GraphProto) -> None:
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    keep = [value for value in graph.input if value.name in read]
    del graph.input[:]
    graph.input.extend(keep)


def _weights_out_of_inputs(graph: onnx.GraphProto) -> None:
    weights = {tensor.name for tensor in graph.initializer}
    keep = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(keep)


def _dequantise_weights(graph: onnx.GraphProto) -> None:
    """Replace every DequantizeLinear whose inputs are all weights by its float32 result."""
    weights = {tensor.name: tensor for tensor in graph.initializer}
    folded: list[onnx.TensorProto] = []
    kept_nodes = []
    for node in graph.node:
        constant = all(name in weights for name in node.input if name)
        if node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") and constant:
            arrays = [numpy_helper.to_array(weights[name]) if name else None for name in node.input]
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            values = dequantize_linear(arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else None, **attributes)
            folded.append(numpy_helper.from_array(values, node.output[0]))
        else:
            kept_nodes.append(node)
    del graph.node[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(folded)


def _prelu_as_elementwise(graph: onnx.GraphProto) -> None:
    """Replace each PRelu whose slope is a weight by Relu(x) + slope * Min(x, 0)."""
    weights = {tensor.name for tensor in graph.initializer}
    zero = "prelu-as-elementwise/zero"
    rewritten: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx") or node.input[1] not in weights:
            rewritten.append(node)
            continue
        x, slope = node.input
        out = node.output[0]
        rewritten += [
            onnx.helper.make_node("Relu", [x], [f"{out}/positive"]),
            onnx.helper.make_node("Min", [x, zero], [f"{out}/negative"]),
            onnx.helper.make_node("Mul", [f"{out}/negative", slope], [f"{out}/scaled"]),
            onnx.helper.make_node("Add", [f"{out}/positive", f"{out}/scaled"], [out]),
        ]
    graph.initializer.append(numpy_helper.from_array(np.zeros(1, dtype=np.float32), zero))  # dropped if unread
    del graph.node[:]
    graph.node.extend(rewritten)


def _drop_unread_weights(graph: onnx.GraphProto) -> None:
    read = {name for node in graph.node for name in node.input}
    keep = [tensor for tensor in graph.initializer if tensor.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def dequantize_linear(
    quantised: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1, block_size: int = 0
) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21): ``(x - zero_point) * scale``, with the scale per
    tensor (a scalar), per slice along ``axis`` (1-D), or per block of ``block_size``
    elements along ``axis`` (same rank as ``x``)."""
    x = quantised.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point.astype(np.float32)
    if scale.ndim == 0:
        return ((x - zero) * scale).astype(scale.dtype)
    axis = axis % x.ndim
    if block_size > 0:
        scale = np.repeat(scale, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        zero = np.repeat(zero, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
    else:
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((x - zero) * scale).astype(scale.dtype)


def _free_input_dims(graph: onnx.GraphProto, dims: dict[int, str]) -> None:
    """Make the named input dimensions symbolic; recorded output and intermediate shapes,
    which followed from the fixed ones, are dropped for onnxruntime to infer."""
    shape = graph.input[0].type.tensor_type.shape
    for index, name in dims.items():
        shape.dim[index].ClearField("dim_value")
        shape.dim[index].dim_param = name
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
