"""Many clients at once, each with its own inputs and row counts, each gets its own rows back.

tern serve batches these requests dynamically (automatic for models with a batch dimension), so this is
also the end-to-end check that merged batches are split back exactly.
"""
import pytest
import tritonclient.http as httpclient

from conftest import assert_matches, golden, run_concurrently


@pytest.mark.parametrize("name,clients", [("gbc", 32), ("mlp", 64), ("pipeline_categorical", 64), ("gbc_zipmap", 64)])
def test_concurrent_clients_get_their_own_rows(server, name, clients):
    case = golden(name)[1]

    def client_session(index):
        client = httpclient.InferenceServerClient(url=server.url)
        yield
        for round in range(12):
            # 1 to 4 rows, starting at a row of this client's own, different every round.
            count = 1 + (index + round) % 4
            first = (index + round * 7) % (64 - count)
            rows = list(range(first, first + count))
            inputs = []
            for input_name, datatype, array in case["inputs"]:
                tensor = httpclient.InferInput(input_name, [count, *array.shape[1:]], datatype)
                tensor.set_data_from_numpy(array[rows], binary_data=round % 2 == 0)
                inputs.append(tensor)
            result = client.infer(name, inputs, request_id=f"{index}-{round}")
            assert result.get_response()["id"] == f"{index}-{round}"
            for output, _, expected in case["outputs"]:
                assert_matches(result.as_numpy(output), expected[rows], f"{name} client {index} round {round}")
        client.close()

    run_concurrently(clients, client_session)
