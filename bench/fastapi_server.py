"""The baseline: FastAPI + uvicorn + onnxruntime, speaking the same V2 JSON as Tern.

This is the deployment most guides recommend for serving an ONNX model from Python. It loads every
bench/models/<name>/1/model.onnx and serves POST /v2/models/{name}/infer and GET /v2/health/ready.
Run: uvicorn fastapi_server:app --workers N (see bench/run.py).
"""
import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException

MODELS = os.environ.get("BENCH_MODELS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "models"))
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}

options = ort.SessionOptions()
options.intra_op_num_threads = 1
sessions = {
    name: ort.InferenceSession(os.path.join(MODELS, name, "1", "model.onnx"), options, providers=["CPUExecutionProvider"])
    for name in sorted(os.listdir(MODELS)) if os.path.exists(os.path.join(MODELS, name, "1", "model.onnx"))
}
app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: dict):
    session = sessions.get(name)
    if session is None:
        raise HTTPException(status_code=404, detail=f"unknown model {name}")
    feeds = {i["name"]: np.asarray(i["data"], dtype=DTYPES[i["datatype"]]).reshape(i["shape"]) for i in request["inputs"]}
    names = [o.name for o in session.get_outputs()]
    results = session.run(None, feeds)
    return {
        "model_name": name,
        "outputs": [{"name": n, "datatype": NAMES[r.dtype], "shape": list(r.shape), "data": r.reshape(-1).tolist()}
                    for n, r in zip(names, results)],
    }
