"""Many clients at once, each with its own inputs, each gets its own rows back."""
import threading

import numpy as np
import tritonclient.http as httpclient

from conftest import assert_matches, golden


def test_32_concurrent_clients_get_their_own_rows(server):
    case = golden("gbc")[1]
    features = case["inputs"][0][2]
    probabilities = case["outputs"][1][2]
    labels = case["outputs"][0][2]
    failures = []
    start = threading.Barrier(32)

    def client_thread(index):
        try:
            client = httpclient.InferenceServerClient(url=server.url)
            start.wait()
            for round in range(25):
                # Each client sends its own rows, 1 to 3 of them, distinct from every other client's.
                rows = [(index + k * 32) % 64 for k in range(1 + round % 3)]
                batch = features[rows]
                tensor = httpclient.InferInput("features", list(batch.shape), "FP32")
                tensor.set_data_from_numpy(batch, binary_data=round % 2 == 0)
                result = client.infer("gbc", [tensor], request_id=f"{index}-{round}")
                assert result.get_response()["id"] == f"{index}-{round}"
                assert_matches(result.as_numpy("probabilities"), probabilities[rows], f"client {index} round {round}")
                np.testing.assert_array_equal(result.as_numpy("label"), labels[rows])
            client.close()
        except Exception as error:  # noqa: BLE001 - collected and reported below
            failures.append(f"client {index}: {error!r}")

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, "\n".join(failures)
