#!/usr/bin/env python3
"""Tern against FastAPI + uvicorn + onnxruntime, side by side in one run, with wrk.

  python3 bench/run.py [--duration 5] [--quick] [--output docs/performance.md]

For each model (bench/models: logreg, gbc, mlp), rows per request (1, 32) and concurrency (1, 8, 64) it
loads Tern, FastAPI with one and FastAPI with two uvicorn workers back to back (all three started before
the first load), on loopback, for a fixed duration each.
Before every load it checks one answer against in-process onnxruntime, and wrk then counts every response
that is not 200 or whose body differs from that checked answer: any such response fails the run.
Reports requests/s, rows/s, p50/p99 latency, server CPU per request, RSS, start-to-ready time, and
in-process onnxruntime (one thread) as the compute floor. Writes the table to --output.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
VENV = os.path.join(ROOT, ".venv-bench")


def ensure_venv():
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(python):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                           os.path.join(BENCH, "requirements.txt")])
    os.execv(python, [python, os.path.abspath(__file__), *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import requests  # noqa: E402

MODELS = ["gbc", "mlp", "logreg"]
NOTES_MARKER = "<!-- Notes below this line are kept by bench/run.py. -->"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid):
    """pid and all its descendants (uvicorn's workers are children of its supervisor)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, ValueError):
                pass
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def cpu_seconds(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICKS


def rss_mb(pid):
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total / 1024


class Server:
    def __init__(self, name, command, port, env=None):
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        env={**os.environ, **(env or {})}, cwd=BENCH, start_new_session=True)
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{name} exited during start-up")
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.perf_counter() - started > 60:
                raise SystemExit(f"{name} did not become ready")
            time.sleep(0.002)
        self.ready_ms = (time.perf_counter() - started) * 1000

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def request_body(model, rows):
    with open(os.path.join(BENCH, "models", model, "sample.json")) as f:
        sample = np.array(json.load(f)["rows"], dtype=np.float32)[:rows]
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(sample.shape), "data": sample.tolist()}]}
    return sample, json.dumps(body)


def check_answer(server, model, sample, body, session, auth=None):
    """One request, compared with in-process onnxruntime; returns the exact response body."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {auth}"} if auth else {})}
    response = requests.post(f"{server.url}/v2/models/{model}/infer", data=body, timeout=10, headers=headers)
    if response.status_code != 200:
        raise SystemExit(f"FAIL {server.name} {model}: HTTP {response.status_code}: {response.text[:300]}")
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response.json()["outputs"]}
    label, probabilities = session.run(None, {"features": sample})
    if not np.array_equal(outputs["label"], label) or not np.allclose(outputs["probabilities"], probabilities, atol=1e-5):
        raise SystemExit(f"FAIL {server.name} {model}: prediction differs from onnxruntime")
    return response.content


def load(server, model, rows, concurrency, duration, body, expected, workdir, auth=None):
    body_path = os.path.join(workdir, "body.json")
    expected_path = os.path.join(workdir, "expected.json")
    with open(body_path, "w") as f:
        f.write(body)
    with open(expected_path, "wb") as f:
        f.write(expected)
    cpu_before = cpu_seconds(server.process.pid)
    out = subprocess.run(
        ["wrk", f"-t{min(2, concurrency)}", f"-c{concurrency}", f"-d{duration}s", "-s", os.path.join(BENCH, "check.lua"),
         f"{server.url}/v2/models/{model}/infer"],
        capture_output=True, text=True,
        env={**os.environ, "BENCH_BODY": body_path, "BENCH_EXPECTED": expected_path, "BENCH_AUTH": auth or ""})
    cpu = cpu_seconds(server.process.pid) - cpu_before
    text = out.stdout
    total = int(re.search(r"(\d+) requests in", text).group(1))
    bad = int(re.search(r"BAD_RESPONSES (\d+)", text).group(1))
    errors = re.search(r"Socket errors: (.*)", text)
    if bad or errors or out.returncode:
        raise SystemExit(f"FAIL {server.name} {model} rows={rows} c={concurrency}: {bad} bad responses, "
                         f"{errors.group(1) if errors else 'no socket errors'}\n{text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    return {
        "server": server.name, "model": model, "rows": rows, "concurrency": concurrency, "requests": total,
        "rps": rps, "rows_per_s": rps * rows,
        "p50_us": int(re.search(r"LATENCY_P50_US (\d+)", text).group(1)),
        "p99_us": int(re.search(r"LATENCY_P99_US (\d+)", text).group(1)),
        "cpu_us_per_request": cpu / max(total, 1) * 1e6,
    }


def nginx_ceiling(duration, workdir):
    """nginx returning a fixed 200-byte JSON body to the same wrk: what HTTP alone costs on this machine, at
    c=64 (requests/s) and c=8 (requests/s and the latency tail of a server that does no work at all)."""
    if not shutil.which("nginx"):
        return None
    port = free_port()
    config = os.path.join(workdir, "nginx.conf")
    with open(config, "w") as f:
        f.write(f"""worker_processes 2; daemon off; pid {workdir}/nginx.pid; error_log {workdir}/nginx.err;
events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {workdir}; proxy_temp_path {workdir}; fastcgi_temp_path {workdir};
  uwsgi_temp_path {workdir}; scgi_temp_path {workdir};
  server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json; return 200 '{"x" * 200}'; }} }} }}
""")
    process = subprocess.Popen(["nginx", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        body = os.path.join(workdir, "ceiling.json")
        with open(body, "w") as f:
            f.write(request_body("gbc", 1)[1])
        ceiling = {}
        for concurrency in (64, 8):
            out = subprocess.run(["wrk", "-t2", f"-c{concurrency}", f"-d{duration}s", "-s",
                                  os.path.join(BENCH, "check.lua"), f"http://127.0.0.1:{port}/"],
                                 capture_output=True, text=True,
                                 env={**os.environ, "BENCH_BODY": body, "BENCH_EXPECTED": body})
            ceiling[concurrency] = {
                "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1)),
                "p50_us": int(re.search(r"LATENCY_P50_US (\d+)", out.stdout).group(1)),
                "p99_us": int(re.search(r"LATENCY_P99_US (\d+)", out.stdout).group(1)),
            }
        return ceiling
    finally:
        process.terminate()
        process.wait()


def in_process_floor(model, batch, seconds=1.0):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(BENCH, "models", model, "1", "model.onnx"), options)
    sample, _ = request_body(model, 64)
    x = np.resize(sample, (batch, sample.shape[1])).astype(np.float32)
    for _ in range(50):
        session.run(None, {"features": x})
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {"features": x})
        count += 1
    return count * batch / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load (default 5)")
    parser.add_argument("--quick", action="store_true", help="gbc and mlp only, concurrency 1 and 64")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "performance.md"))
    parser.add_argument("--tern", default=os.path.join(ROOT, ".build", "release", "tern"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install wrk")
    if not os.path.exists(os.path.join(BENCH, "models", "mlp", "1", "model.onnx")):
        subprocess.check_call(["python3",
                               os.path.join(BENCH, "make_models.py")])
    if not os.path.exists(args.tern):
        subprocess.check_call(["swift", "build", "-c", "release", "--product", "tern"], cwd=ROOT)
    subprocess.check_call([os.path.join(ROOT, "scripts", "install-onnxruntime.sh")])

    models = ["gbc", "mlp"] if args.quick else MODELS
    concurrencies = [1, 64] if args.quick else [1, 8, 64]
    floors = {(m, b): in_process_floor(m, b) for m in models for b in (1, 32)}
    sessions = {m: ort.InferenceSession(os.path.join(BENCH, "models", m, "1", "model.onnx")) for m in models}
    servers = [
        ("tern", [args.tern, "serve", "--models", os.path.join(BENCH, "models"), "--host", "127.0.0.1",
                  "--log-level", "warning", "--http-port"], {}),
        ("fastapi-1w", [os.path.join(VENV, "bin", "uvicorn"), "fastapi_server:app", "--log-level", "warning",
                        "--no-access-log", "--workers", "1", "--port"], {}),
        ("fastapi-2w", [os.path.join(VENV, "bin", "uvicorn"), "fastapi_server:app", "--log-level", "warning",
                        "--no-access-log", "--workers", "2", "--port"], {}),
    ]
    results, startup, memory = [], {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        ceiling = nginx_ceiling(args.duration, workdir)
        # All servers run side by side; each cell loads them back to back, so the machine's drift over the
        # run (large on shared VMs) falls on every server alike.
        running = []
        try:
            for name, command, env in servers:
                port = free_port()
                server = Server(name, command + [str(port)], port, env)
                startup[name] = server.ready_ms
                running.append(server)
            for model in models:
                for rows in (1, 32):
                    sample, body = request_body(model, rows)
                    expected = {s.name: check_answer(s, model, sample, body, sessions[model]) for s in running}
                    for concurrency in concurrencies:
                        for server in running:
                            result = load(server, model, rows, concurrency, args.duration, body,
                                          expected[server.name], workdir)
                            results.append(result)
                            print(f"{server.name:11} {model:7} rows={rows:<3} c={concurrency:<3} "
                                  f"{result['rps']:>9.0f} req/s {result['rows_per_s']:>10.0f} rows/s "
                                  f"p50 {result['p50_us']:>6} us p99 {result['p99_us']:>6} us "
                                  f"cpu {result['cpu_us_per_request']:.0f} us/req", flush=True)
            for server in running:
                memory[server.name] = rss_mb(server.process.pid)
        finally:
            for server in running:
                server.stop()
    write_report(args, results, startup, memory, floors, models, concurrencies, ceiling)


def targets(by, floors, startup, memory, ceiling):
    """Issue 4's targets, as this run measured them (cells a --quick run skips are left out)."""
    rows = []

    def cell(model, n, c, server="tern"):
        return by.get((server, model, n, c))

    t, f1, f2 = cell("gbc", 1, 64), cell("gbc", 1, 64, "fastapi-1w"), cell("gbc", 1, 64, "fastapi-2w")
    if t:
        rows.append(("gbc, 1 row, c=64: requests/s vs FastAPI 1 worker", "10x", f"{t['rps'] / f1['rps']:.1f}x"))
        rows.append(("gbc, 1 row, c=64: requests/s vs FastAPI 2 workers", "5x", f"{t['rps'] / f2['rps']:.1f}x"))
    t, f1 = cell("gbc", 32, 8), cell("gbc", 32, 8, "fastapi-1w")
    if t:
        rows.append(("gbc, 32 rows, c=8: rows/s vs FastAPI 1 worker", "8x", f"{t['rows_per_s'] / f1['rows_per_s']:.1f}x"))
    t = cell("gbc", 1, 8)
    if t:
        nginx = f" (nginx, fixed body: {ceiling[8]['p99_us']} µs)" if ceiling else ""
        rows.append(("gbc, 1 row, c=8: p99 latency", "< 1000 µs", f"{t['p99_us']} µs{nginx}"))
    t = cell("mlp", 1, 64)
    if t and ("mlp", 32) in floors:
        share = t["rows_per_s"] / floors[("mlp", 32)]
        rows.append(("mlp, 1 row, c=64: rows/s vs in-process batch 32", "60%", f"{share:.0%}"))
    rows.append(("start to ready", "< 200 ms", f"{startup['tern']:.0f} ms"))
    rows.append(("RSS with the models loaded", "< 80 MB", f"{memory.get('tern', 0):.0f} MB"))
    return ["", "Issue 4's targets in this run:", "", "| target | wanted | measured |", "|---|---|---|"] + [
        f"| {name} | {wanted} | {measured} |" for name, wanted, measured in rows]


def write_report(args, results, startup, memory, floors, models, concurrencies, ceiling):
    by = {(r["server"], r["model"], r["rows"], r["concurrency"]): r for r in results}
    lines = [
        "# Performance", "",
        "Written by `python3 bench/run.py` (see bench/README.md): Tern against FastAPI + uvicorn + onnxruntime",
        "speaking the same V2 JSON, loaded by wrk on loopback in one run on one machine, the servers back to",
        "back within each cell (all running side by side, idle while another is loaded). Every response was",
        "checked (status 200 and the body of an answer verified against in-process onnxruntime).", "",
        f"Machine: {os.cpu_count()} cores; {args.duration} s per cell; {time.strftime('%Y-%m-%d')}.", "",
        "| model | rows/req | conc | Tern req/s | FastAPI 1w req/s | FastAPI 2w req/s | Tern / 1w | Tern / 2w | Tern rows/s | Tern p50 / p99 µs | 1w p50 / p99 µs | Tern CPU µs/req | 1w CPU µs/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        for rows in (1, 32):
            for c in concurrencies:
                t, f1, f2 = (by.get((s, model, rows, c)) for s in ("tern", "fastapi-1w", "fastapi-2w"))
                if not t:
                    continue
                lines.append(
                    f"| {model} | {rows} | {c} | {t['rps']:,.0f} | {f1['rps']:,.0f} | {f2['rps']:,.0f} | "
                    f"{t['rps'] / f1['rps']:.1f}x | {t['rps'] / f2['rps']:.1f}x | {t['rows_per_s']:,.0f} | "
                    f"{t['p50_us']} / {t['p99_us']} | {f1['p50_us']} / {f1['p99_us']} | "
                    f"{t['cpu_us_per_request']:.0f} | {f1['cpu_us_per_request']:.0f} |")
    lines += ["", "| server | start to ready | RSS after the run |", "|---|---|---|"]
    for name in startup:
        lines.append(f"| {name} | {startup[name]:.0f} ms | {memory.get(name, 0):.0f} MB |")
    if ceiling:
        lines += ["", f"HTTP ceiling: nginx returning a fixed body to the same wrk: {ceiling[64]['rps']:,.0f} requests/s "
                  f"at c=64; {ceiling[8]['rps']:,.0f} requests/s at c=8 with p50 / p99 of {ceiling[8]['p50_us']} / "
                  f"{ceiling[8]['p99_us']} µs (the latency tail of this machine when wrk keeps both cores busy)."]
    lines += targets(by, floors, startup, memory, ceiling)
    lines += ["", "In-process onnxruntime (Python, one thread), the compute floor:", "",
              "| model | batch 1 rows/s | batch 32 rows/s |", "|---|---|---|"]
    for model in models:
        lines.append(f"| {model} | {floors[(model, 1)]:,.0f} | {floors[(model, 32)]:,.0f} |")
    # Hand-written analysis after the marker line survives a new run.
    kept = ""
    if os.path.exists(args.output):
        with open(args.output) as f:
            previous = f.read()
        if NOTES_MARKER in previous:
            kept = "\n" + previous[previous.index(NOTES_MARKER):]
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n" + kept)
    with open(os.path.splitext(args.output)[0] + ".json", "w") as f:
        json.dump({"results": results, "startup_ms": startup, "rss_mb": memory, "nginx": ceiling,
                   "floor_rows_per_s": {f"{m}/{b}": v for (m, b), v in floors.items()}}, f, indent=1)
    print("written", args.output)


if __name__ == "__main__":
    main()
