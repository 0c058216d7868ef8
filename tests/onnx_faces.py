"""Tiny ONNX models in the layout of an insightface model pack (buffalo_l), written by the tests so that the real
insightface code path (its FaceAnalysis / model_zoo API, onnx2torch) can run here without the real weights.

- det_10g.onnx: SCRFD-like detector, 9 outputs (score, box, key points at strides 8/16/32, 2 anchors); the score of
  a cell is the mean brightness of its pixels, boxes and key points are fixed offsets.
- w600k_r50.onnx: "ArcFace": [N, 3, 112, 112] -> average pool to 4x4 -> a fixed random linear map -> [N, 512].
- 2d106det.onnx: "landmarks": [N, 3, 192, 192] -> the same kind of map -> tanh -> [N, 212].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _save(graph, path: Path) -> None:
    import onnx
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="latent-lab-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def detector(path: Path, size: int = 128) -> None:
    from onnx import TensorProto, helper, numpy_helper
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])
    nodes, inits, scores, boxes, points = [], [numpy_helper.from_array(np.array([-1, 1], np.int64), "flat")], [], [], []
    inits += [numpy_helper.from_array(np.zeros((1, 4), np.float32), "zero4"),
              numpy_helper.from_array(np.zeros((1, 10), np.float32), "zero10")]
    kps = np.array([[-0.4, -0.3, 0.4, -0.3, 0.0, 0.0, -0.3, 0.4, 0.3, 0.4]], np.float32)
    for s in (8, 16, 32):
        inits += [numpy_helper.from_array(np.ones((1, 4), np.float32), f"box{s}"),
                  numpy_helper.from_array(kps, f"kp{s}")]
        nodes += [helper.make_node("AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("ReduceMean", [f"pool{s}"], [f"mean{s}"], axes=[1], keepdims=1),
                  helper.make_node("Concat", [f"mean{s}", f"mean{s}"], [f"two{s}"], axis=1),
                  helper.make_node("Transpose", [f"two{s}"], [f"cells{s}"], perm=[0, 2, 3, 1]),
                  helper.make_node("Reshape", [f"cells{s}", "flat"], [f"score_{s}"]),
                  helper.make_node("Mul", [f"score_{s}", "zero4"], [f"b0{s}"]),
                  helper.make_node("Add", [f"b0{s}", f"box{s}"], [f"bbox_{s}"]),
                  helper.make_node("Mul", [f"score_{s}", "zero10"], [f"k0{s}"]),
                  helper.make_node("Add", [f"k0{s}", f"kp{s}"], [f"kps_{s}"])]
        scores.append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, ["n", 1]))
        boxes.append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, ["n", 4]))
        points.append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, ["n", 10]))
    _save(helper.make_graph(nodes, "det", [inp], scores + boxes + points, inits), path)


def pooled_linear(path: Path, side: int, outputs: int, seed: int, squash: bool = False) -> None:
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    k = side // 4
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, side, side])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", outputs])
    weight = numpy_helper.from_array((rng.standard_normal((48, outputs)) * 0.1).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(outputs, np.float32), "B")
    nodes = [helper.make_node("AveragePool", ["data"], ["p"], kernel_shape=[k, k], strides=[k, k]),
             helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W", "B"], ["g" if squash else "fc1"])]
    if squash:
        nodes.append(helper.make_node("Tanh", ["g"], ["fc1"]))
    _save(helper.make_graph(nodes, "pooled", [inp], [out], [weight, bias]), path)


def write_pack(root: Path, pack: str = "buffalo_l") -> Path:
    """Write the tiny pack under root/models/<pack>/ and return that folder."""
    folder = Path(root) / "models" / pack
    folder.mkdir(parents=True, exist_ok=True)
    detector(folder / "det_10g.onnx")
    pooled_linear(folder / "w600k_r50.onnx", 112, 512, seed=0)
    pooled_linear(folder / "2d106det.onnx", 192, 212, seed=1, squash=True)
    return folder
