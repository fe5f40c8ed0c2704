"""kserve's own v2 REST client, unchanged, against a live tern serve."""
import asyncio

import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

from conftest import assert_matches, golden


def run(coroutine):
    return asyncio.run(coroutine)


async def with_client(body):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    try:
        return await body(client)
    finally:
        await client.close()


def test_health(server):
    base = f"http://{server.url}"

    async def body(client):
        assert await client.is_server_live(base)
        assert await client.is_server_ready(base)
        assert await client.is_model_ready(base, "credit-risk")
        assert not await client.is_model_ready(base, "nope")
    run(with_client(body))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", ["gbc", "xgboost", "pipeline_categorical", "mlp"])
def test_infer(server, name, binary):
    base = f"http://{server.url}"

    async def body(client):
        for case in golden(name):
            inputs = []
            for input_name, datatype, array in case["inputs"]:
                tensor = InferInput(input_name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            request = InferRequest(model_name=name, infer_inputs=inputs, request_id=f"k-{case['name']}")
            response = await client.infer(base, request, model_name=name)
            assert response.id == f"k-{case['name']}"
            by_name = {o.name: o for o in response.outputs}
            for output, _, expected in case["outputs"]:
                assert_matches(by_name[output].as_numpy(), expected, f"kserve {name} {case['name']} {output}")
    run(with_client(body))
