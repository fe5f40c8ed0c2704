"""The Open Inference Protocol v2 over gRPC: tritonclient.grpc and kserve's gRPC client, unchanged, against a
live tern serve; typed contents and malformed requests through the protocol's own stub."""
import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import MODELS, Server, assert_matches, golden, run_concurrently


@pytest.fixture(scope="module")
def client(server):
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_url)
    yield service_pb2_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("credit-risk")
    assert client.is_model_ready("credit-risk", "1")
    assert not client.is_model_ready("nope") and not client.is_model_ready("credit-risk", "9")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "tern"
    model = client.get_model_metadata("credit-risk", as_json=True)
    assert model["versions"] == ["1", "2"]
    assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "10"]}]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.get_model_metadata("nope")


def grpc_inputs(case):
    inputs = []
    for name, datatype, array in case["inputs"]:
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("name", MODELS)
def test_golden_outputs_raw(client, name):
    for case in golden(name):
        result = client.infer(name, grpc_inputs(case), request_id=f"{name}-{case['name']}")
        assert result.get_response().id == f"{name}-{case['name']}"
        for output, datatype, expected in case["outputs"]:
            assert result.get_output(output).datatype == datatype
            assert_matches(result.as_numpy(output), expected, f"grpc {name} {case['name']} {output}")


def test_output_subset_and_version(client):
    case = golden("logreg")[1]
    result = client.infer("credit-risk", grpc_inputs(case), model_version="1",
                          outputs=[grpcclient.InferRequestedOutput("probabilities")])
    response = result.get_response()
    assert response.model_version == "1"
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert_matches(result.as_numpy("probabilities"), case["outputs"][1][2], "credit-risk v1 subset")


TYPED_FIELDS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def typed_request(model, inputs, skip_fp16=True):
    request = service_pb2.ModelInferRequest(model_name=model, id="typed")
    raw = []
    for name, datatype, array in inputs:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if datatype == "FP16":
            raw.append(array)
            continue
        getattr(tensor.contents, TYPED_FIELDS[datatype]).extend(array.reshape(-1).tolist())
    return request, raw


def decode_raw(data, datatype, expected):
    """An output's raw contents as a numpy array shaped like `expected` (BYTES: length-prefixed elements)."""
    if datatype != "BYTES":
        return np.frombuffer(data, dtype=expected.dtype).reshape(expected.shape)
    values, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        values.append(data[offset + 4:offset + 4 + length])
        offset += 4 + length
    return np.array(values, dtype=np.object_).reshape(expected.shape)


def raw_bytes(array, datatype):
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in array.reshape(-1))
    return array.tobytes()


@pytest.mark.parametrize("name", ["pipeline_categorical", "gbc", "mlp"])
def test_typed_contents(stub, name):
    for case in golden(name):
        request, _ = typed_request(name, case["inputs"])
        response = stub.ModelInfer(request)
        assert response.id == "typed"
        for index, (output, datatype, expected) in enumerate(case["outputs"]):
            assert response.outputs[index].name == output
            data = response.raw_output_contents[index]
            assert_matches(np.frombuffer(data, dtype=expected.dtype).reshape(expected.shape), expected, f"typed {name}")


def test_typed_contents_every_datatype_but_fp16(stub):
    case = golden("all_types")[1]
    # FP16 has no typed list: non-empty FP16 typed data is refused with a message saying what to do.
    request, _ = typed_request("all_types", case["inputs"])
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16 has no typed contents list; send it in raw_input_contents" in error.value.details()
    # Every other datatype, typed, full 64 rows (FP16 with zero rows: the Identity model treats each input
    # on its own), comes back equal to onnxruntime's outputs.
    inputs = [(n, d, a[:0] if d == "FP16" else a) for n, d, a in case["inputs"]]
    request, _ = typed_request("all_types", inputs)
    response = stub.ModelInfer(request)
    checked = 0
    for index, (output, datatype, expected) in enumerate(case["outputs"]):
        if datatype == "FP16":
            assert list(response.outputs[index].shape) == [0, 3]
            continue
        actual = decode_raw(response.raw_output_contents[index], datatype, expected)
        assert_matches(actual, expected, f"typed all_types {output}")
        checked += 1
    assert checked == 12


def test_raw_inputs_through_the_stub(stub):
    case = golden("all_types")[1]
    request = service_pb2.ModelInferRequest(model_name="all_types")
    for name, datatype, array in case["inputs"]:
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        request.raw_input_contents.append(raw_bytes(array, datatype))
    response = stub.ModelInfer(request)
    for index, (output, datatype, expected) in enumerate(case["outputs"]):
        actual = decode_raw(response.raw_output_contents[index], datatype, expected)
        assert_matches(actual, expected, f"raw all_types {output}")


def bad_requests():
    good = golden("logreg")[0]["inputs"][0][2]

    def base(**changes):
        request = service_pb2.ModelInferRequest(model_name="logreg")
        request.inputs.add(name="features", datatype="FP32", shape=[1, 10])
        for key, value in changes.items():
            setattr(request, key, value)
        return request

    raw_and_typed = base()
    raw_and_typed.raw_input_contents.append(good.tobytes())
    raw_and_typed.inputs[0].contents.fp32_contents.extend(good.reshape(-1).tolist())
    wrong_size = base()
    wrong_size.raw_input_contents.append(good.tobytes()[:36])
    wrong_field = base()
    wrong_field.inputs[0].contents.int_contents.extend([1] * 10)
    huge = base()
    huge.inputs[0].shape[:] = [4_000_000_000, 4_000_000_000]
    huge.raw_input_contents.append(good.tobytes())
    negative = base()
    negative.inputs[0].shape[:] = [-1, 10]
    negative.raw_input_contents.append(good.tobytes())
    too_few_raw = base()
    too_few_raw.inputs.add(name="extra", datatype="FP32", shape=[1])
    too_few_raw.raw_input_contents.append(good.tobytes())
    wrong_dtype = base()
    wrong_dtype.inputs[0].datatype = "FP64"
    wrong_dtype.raw_input_contents.append(np.zeros(10).tobytes())
    unknown = base(model_name="nope")
    unknown.raw_input_contents.append(good.tobytes())
    unknown_version = base(model_version="9")
    unknown_version.raw_input_contents.append(good.tobytes())
    no_data = base()
    return [
        ("raw and typed together", raw_and_typed, grpc.StatusCode.INVALID_ARGUMENT, "raw_input_contents"),
        ("wrong raw size", wrong_size, grpc.StatusCode.INVALID_ARGUMENT, "36 bytes"),
        ("wrong typed field", wrong_field, grpc.StatusCode.INVALID_ARGUMENT, "takes fp32_contents"),
        ("huge shape", huge, grpc.StatusCode.INVALID_ARGUMENT, "too large"),
        ("negative shape", negative, grpc.StatusCode.INVALID_ARGUMENT, "negative"),
        ("raw count mismatch", too_few_raw, grpc.StatusCode.INVALID_ARGUMENT, "1 entries for 2 inputs"),
        ("wrong datatype", wrong_dtype, grpc.StatusCode.INVALID_ARGUMENT, "FP64 but the model expects FP32"),
        ("no data", no_data, grpc.StatusCode.INVALID_ARGUMENT, "needs 10 elements"),
        ("unknown model", unknown, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        ("unknown version", unknown_version, grpc.StatusCode.NOT_FOUND, "no loaded version '9'"),
    ]


@pytest.mark.parametrize("label,request_message,code,words", bad_requests(), ids=[b[0] for b in bad_requests()])
def test_bad_requests(stub, client, label, request_message, code, words):
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request_message)
    assert error.value.code() == code, error.value.details()
    assert words in error.value.details(), error.value.details()
    case = golden("logreg")[1]
    result = client.infer("logreg", grpc_inputs(case))
    assert_matches(result.as_numpy("probabilities"), case["outputs"][1][2], f"after {label}")


def test_undecodable_message(server, client):
    channel = grpc.insecure_channel(server.grpc_url)
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                               request_serializer=lambda x: x, response_deserializer=lambda x: x)
    with pytest.raises(grpc.RpcError) as error:
        call(b"\xff\xff\xff\xff garbage that is not a protobuf message")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "deserialize" in error.value.details()
    channel.close()
    assert client.is_server_ready()


def test_32_concurrent_grpc_clients(server):
    case = golden("gbc")[1]
    features, probabilities = case["inputs"][0][2], case["outputs"][1][2]

    def client_session(index):
        client = grpcclient.InferenceServerClient(url=server.grpc_url)
        yield
        for round in range(20):
            count = 1 + (index + round) % 3
            first = (index + round * 5) % (64 - count)
            rows = list(range(first, first + count))
            tensor = grpcclient.InferInput("features", [count, 10], "FP32")
            tensor.set_data_from_numpy(features[rows])
            result = client.infer("gbc", [tensor], request_id=f"{index}-{round}")
            assert result.get_response().id == f"{index}-{round}"
            assert_matches(result.as_numpy("probabilities"), probabilities[rows], f"client {index}")
        client.close()

    run_concurrently(32, client_session)


def test_message_size_limit_is_configurable(repository):
    """Above the default gRPC limit of 4 MiB works by default (64 MiB); a configured lower limit is enforced."""
    rows = np.random.default_rng(1).normal(size=(150_000, 10)).astype(np.float32)  # 6 MB of raw data
    small = Server(repository, "--max-request-size", "1M")
    try:
        client = grpcclient.InferenceServerClient(url=small.grpc_url)
        tensor = grpcclient.InferInput("features", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        with pytest.raises(InferenceServerException) as error:
            client.infer("logreg", [tensor])
        # grpc-swift's transport refuses an oversized message by resetting the stream (clients see CANCELLED).
        assert error.value.status() in ("StatusCode.CANCELLED", "StatusCode.RESOURCE_EXHAUSTED"), str(error.value)
        assert client.is_server_ready()
        client.close()
    finally:
        small.stop()


def test_large_message_within_the_default_limit(client):
    rows = np.random.default_rng(2).normal(size=(150_000, 10)).astype(np.float32)
    tensor = grpcclient.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer("logreg", [tensor], outputs=[grpcclient.InferRequestedOutput("label")])
    assert result.as_numpy("label").shape == (150_000,)


def test_rest_config_and_grpc_model_config_agree_field_by_field(tmp_path):
    """One model description encoded twice (issue 26): tritonclient's HTTP and gRPC configs of a version with
    dynamic batching settings, and of one without, compared field by field."""
    import shutil

    import tritonclient.http as httpclient

    from conftest import EXAMPLES

    repository = tmp_path / "models"
    shutil.copytree(f"{EXAMPLES}/credit-risk", repository / "batched")
    (repository / "batched" / "config.yaml").write_text(
        "max_batch_size: 64\ndynamic_batching:\n  preferred_batch_sizes: [8, 4]\n  max_queue_delay_microseconds: 500\n")
    shutil.copytree(f"{EXAMPLES}/credit-risk", repository / "plain")
    (repository / "plain" / "config.yaml").write_text("dynamic_batching: false\n")
    server = Server(str(repository))
    try:
        rest_client = httpclient.InferenceServerClient(url=server.url)
        grpc_client = grpcclient.InferenceServerClient(url=server.grpc_url)
        for name in ("batched", "plain"):
            rest = rest_client.get_model_config(name)
            over_grpc = grpc_client.get_model_config(name, as_json=True)["config"]
            for field in ("name", "platform", "backend"):
                assert rest[field] == over_grpc[field], field
            # protobuf's JSON leaves out fields at their default (0: no limit).
            assert rest["max_batch_size"] == int(over_grpc.get("max_batch_size", 0))
            for key in ("input", "output"):
                assert [(t["name"], t["data_type"], t["dims"]) for t in rest[key]] == \
                    [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in over_grpc[key]], key
            if name == "batched":
                assert rest["max_batch_size"] == 64
                assert rest["dynamic_batching"] == {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 500}
                grpc_batching = over_grpc["dynamic_batching"]
                assert grpc_batching["preferred_batch_size"] == rest["dynamic_batching"]["preferred_batch_size"]
                assert int(grpc_batching["max_queue_delay_microseconds"]) == 500
            else:
                assert "dynamic_batching" not in rest and "dynamic_batching" not in over_grpc
        rest_client.close()
        grpc_client.close()
    finally:
        server.stop()
