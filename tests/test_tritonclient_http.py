"""tritonclient.http, unchanged, against a live tern serve."""
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import MODELS, assert_matches, golden


@pytest.fixture(scope="module")
def client(server):
    client = httpclient.InferenceServerClient(url=server.url)
    yield client
    client.close()


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "tern"
    assert "binary_tensor_data" in metadata["extensions"]
    assert client.is_model_ready("credit-risk")
    assert client.is_model_ready("credit-risk", "1")
    assert not client.is_model_ready("credit-risk", "9")
    model = client.get_model_metadata("credit-risk")
    assert model["versions"] == ["1", "2"]
    assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]
    assert [o["name"] for o in model["outputs"]] == ["label", "probabilities"]
    config = client.get_model_config("credit-risk")
    assert config["max_batch_size"] == 256
    assert config["input"][0]["data_type"] == "TYPE_FP32"


def infer_inputs(case, binary):
    inputs = []
    for name, datatype, array in case["inputs"]:
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
@pytest.mark.parametrize("name", MODELS)
def test_golden_outputs(client, name, binary_in, binary_out):
    for case in golden(name):
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n, _, _ in case["outputs"]]
        result = client.infer(name, infer_inputs(case, binary_in), outputs=outputs, request_id=f"{name}-{case['name']}")
        assert result.get_response()["id"] == f"{name}-{case['name']}"
        for output, datatype, expected in case["outputs"]:
            assert result.get_output(output)["datatype"] == datatype
            assert_matches(result.as_numpy(output), expected, f"{name} {case['name']} {output}")


def test_default_outputs_and_subsets(client):
    case = golden("gbc")[1]
    # No outputs named: all of them, binary (tritonclient asks binary_data_output).
    result = client.infer("gbc", infer_inputs(case, True))
    assert sorted(o["name"] for o in result.get_response()["outputs"]) == ["label", "probabilities"]
    # A subset.
    result = client.infer("gbc", infer_inputs(case, True), outputs=[httpclient.InferRequestedOutput("label")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert_matches(result.as_numpy("label"), case["outputs"][0][2], "label subset")


def test_versions(client):
    case = golden("logreg")[1]
    v1 = client.infer("credit-risk", infer_inputs(case, True), model_version="1")
    assert v1.get_response()["model_version"] == "1"
    assert_matches(v1.as_numpy("probabilities"), case["outputs"][1][2], "credit-risk v1 = logreg")
    gbc = golden("gbc")[1]
    newest = client.infer("credit-risk", infer_inputs(gbc, True))
    assert newest.get_response()["model_version"] == "2"
    assert_matches(newest.as_numpy("probabilities"), gbc["outputs"][1][2], "credit-risk newest = gbc")


def test_errors_reach_the_client(client):
    case = golden("logreg")[0]
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", infer_inputs(case, True))
    bad = httpclient.InferInput("features", [1, 10], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 10), dtype=np.float64))
    with pytest.raises(InferenceServerException, match="datatype FP64 but the model expects FP32"):
        client.infer("logreg", [bad])
    assert client.is_server_ready()
