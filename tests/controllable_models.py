"""Small ONNX models whose failures a test controls, for fallbacks, circuit breakers and rollouts.

Every model takes `features` FP32 [N, 10] and answers `score` FP32 [N, 1], the sum of a row's features
times `scale` (so versions are told apart by their answers too):
- `steady`: never fails.
- `failing`: fails (ONNX Runtime refuses a Gather index) for any row whose first feature is `limit` or more.
- `slow`: multiplies a 2000x2000 matrix built from the input by itself before answering (about 16 GFLOP,
  a good fraction of a second on one core), so a short timeout always passes first.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper


def _model(nodes, initializers, path):
    graph = helper.make_graph(
        nodes, "controllable",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _sum(scale):
    return ([helper.make_node("ReduceSum", ["features", "axes"], ["total"], keepdims=1),
             helper.make_node("Mul", ["total", "scale"], ["base"])],
            [helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
             helper.make_tensor("scale", TensorProto.FLOAT, [], [scale])])


def steady(path, scale=1.0):
    nodes, initializers = _sum(scale)
    nodes.append(helper.make_node("Identity", ["base"], ["score"]))
    return _model(nodes, initializers, path)


def failing(path, limit=100, scale=1.0):
    nodes, initializers = _sum(scale)
    nodes += [
        helper.make_node("Gather", ["features", "zero"], ["first"], axis=1),          # [N]
        helper.make_node("Cast", ["first"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["picked"], axis=0),            # fails past the table
        helper.make_node("Unsqueeze", ["picked", "axes"], ["column"]),
        helper.make_node("Add", ["base", "column"], ["score"]),
    ]
    initializers += [helper.make_tensor("zero", TensorProto.INT64, [], [0]),
                     helper.make_tensor("table", TensorProto.FLOAT, [limit], np.zeros(limit, np.float32))]
    return _model(nodes, initializers, path)


def slow(path, size=2000, scale=1.0):
    nodes, initializers = _sum(scale)
    nodes += [
        helper.make_node("Slice", ["features", "start", "end", "axes01"], ["corner"]),  # [1, 1]
        helper.make_node("Expand", ["corner", "square"], ["big"]),
        helper.make_node("MatMul", ["big", "big"], ["product"]),
        helper.make_node("ReduceSum", ["product"], ["everything"], keepdims=0),
        helper.make_node("Mul", ["everything", "nothing"], ["zero"]),
        helper.make_node("Add", ["base", "zero"], ["score"]),
    ]
    initializers += [helper.make_tensor("start", TensorProto.INT64, [2], [0, 0]),
                     helper.make_tensor("end", TensorProto.INT64, [2], [1, 1]),
                     helper.make_tensor("axes01", TensorProto.INT64, [2], [0, 1]),
                     helper.make_tensor("square", TensorProto.INT64, [2], [size, size]),
                     helper.make_tensor("nothing", TensorProto.FLOAT, [], [0.0])]
    return _model(nodes, initializers, path)
