"""kserve's own v2 clients (REST and gRPC), unchanged, against a tern serve.

    python kserve_clients.py rest http://localhost:8000
    python kserve_clients.py grpc localhost:8001

Run by test_kserve.py in a process of its own: kserve and tritonclient both register the protocol's messages
in protobuf's default pool, so one Python process cannot import both.
"""
import asyncio
import sys

from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

from conftest import assert_matches, golden

MODELS = ("gbc", "xgboost", "pipeline_categorical", "mlp")


def requests_for(name, binary):
    for case in golden(name):
        inputs = []
        for input_name, datatype, array in case["inputs"]:
            tensor = InferInput(input_name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        yield case, InferRequest(model_name=name, infer_inputs=inputs, request_id=f"k-{case['name']}")


def check(case, response, label):
    assert response.id == f"k-{case['name']}", response.id
    by_name = {o.name: o for o in response.outputs}
    for output, _, expected in case["outputs"]:
        assert_matches(by_name[output].as_numpy(), expected, f"{label} {output}")


async def rest(base):
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=1, timeout=30))
    cases = 0
    try:
        assert await client.is_server_live(base)
        assert await client.is_server_ready(base)
        assert await client.is_model_ready(base, "credit-risk")
        assert not await client.is_model_ready(base, "nope")
        for name in MODELS:
            for binary in (False, True):
                for case, request in requests_for(name, binary):
                    check(case, await client.infer(base, request, model_name=name), f"kserve rest {name}")
                    cases += 1
    finally:
        await client.close()
    return cases


async def grpc(url):
    client = InferenceGRPCClient(url=url, timeout=30)
    cases = 0
    try:
        for name in MODELS:
            for case, request in requests_for(name, False):
                check(case, await client.infer(request), f"kserve grpc {name}")
                cases += 1
    finally:
        await client.close()
    return cases


mode, address = sys.argv[1], sys.argv[2]
count = asyncio.run(rest(address) if mode == "rest" else grpc(address))
print(f"kserve {mode}: {count} cases match")
