#!/usr/bin/env python3
"""A/B: the same load on several Tern variants, interleaved, to measure what a feature costs.

    python3 bench/ab.py before=/tmp/tern-old new=.build/release/tern "no-metrics=.build/release/tern --no-metrics"

Each variant is `NAME=[VAR=VALUE ...] BINARY [FLAGS...]` (variables set for that server, such as TERN_DATA).
`--api-key KEY` sends `Authorization: Bearer KEY` to every variant (a server without keys ignores it). All variants run side by side (bench/models, as bench/run.py
serves them); every round loads each in turn, starting one variant later than the round before (wrk, gbc, 1 row,
c=64 unless told otherwise), so the machine's drift falls on all alike. Reports the median requests/s and server CPU per request of each, and the ratio to
the first variant. Every answer is checked as bench/run.py checks it.
"""
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402

bench_venv.enter(__file__)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

import run  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="NAME=BINARY [FLAGS...]")
    parser.add_argument("--model", default="gbc")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--api-key", help="sent as a Bearer token with every request")
    args = parser.parse_args()
    if not os.path.exists(os.path.join(run.BENCH, "models", "mlp", "1", "model.onnx")):
        subprocess.check_call(["python3", os.path.join(run.BENCH, "make_models.py")])
    subprocess.check_call([os.path.join(ROOT, "scripts", "install-onnxruntime.sh")])
    session = run.ort.InferenceSession(os.path.join(run.BENCH, "models", args.model, "1", "model.onnx"))
    sample, body = run.request_body(args.model, args.rows)
    servers, results = [], {}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for spec in args.variants:
                name, command = spec.split("=", 1)
                words = shlex.split(command)
                env = {}
                while "=" in words[0] and not words[0].startswith("/"):
                    key, value = words.pop(0).split("=", 1)
                    env[key] = value
                binary, *flags = words
                port = run.free_port()
                # A variant serving a registry (--data/--database) names it instead of the bench's model folder.
                source = [] if {"--data", "--database"} & set(flags) else ["--models", os.path.join(run.BENCH, "models")]
                server = run.Server(name, [binary, "serve", *source, "--host",
                                           "127.0.0.1", "--log-level", "warning", "--no-grpc", *flags, "--http-port"]
                                    + [str(port)], port, env=env)
                servers.append(server)
                results[name] = []
            expected = {s.name: run.check_answer(s, args.model, sample, body, session, args.api_key) for s in servers}
            for round_number in range(args.rounds):
                # Each round starts with the next variant: a variant loaded right after another (whose
                # writer may still be busy) would otherwise always pay for the same neighbour.
                shift = round_number % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    result = run.load(server, args.model, args.rows, args.concurrency, args.duration, body,
                                      expected[server.name], workdir, args.api_key)
                    results[server.name].append(result)
                    print(f"round {round_number + 1} {server.name:14} {result['rps']:>9.0f} req/s "
                          f"cpu {result['cpu_us_per_request']:.1f} us/req p99 {result['p99_us']} us", flush=True)
            # Each server's resident memory after the whole run (what the last load left it holding).
            rss = {}
            for server in servers:
                with open(f"/proc/{server.process.pid}/status") as status:
                    rss[server.name] = next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:"))
            # What each server's prediction log kept up with (when it has one).
            logged = {}
            for server in servers:
                text = run.requests.get(server.url + "/metrics", timeout=10).text
                values = {}
                for line in text.splitlines():
                    for name in ("tern_prediction_log_rows_total", "tern_prediction_log_dropped_total"):
                        if line.startswith(name + "{"):
                            values[name] = values.get(name, 0) + float(line.rsplit(" ", 1)[1])
                if values:
                    logged[server.name] = values
        finally:
            for server in servers:
                server.stop()
    base = None
    print(f"\n{args.model}, {args.rows} row(s), c={args.concurrency}, {args.rounds} interleaved rounds of {args.duration} s\n")
    print("| variant | requests/s (median) | ratio | CPU µs/request (median) | ratio | p99 µs (median) | ratio | RSS after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        cpu = statistics.median(r["cpu_us_per_request"] for r in runs)
        p99 = statistics.median(r["p99_us"] for r in runs)
        base = base or (rps, cpu, p99)
        print(f"| {name} | {rps:.0f} | {rps / base[0]:.3f} | {cpu:.1f} | {cpu / base[1]:.3f} | {p99:.0f} | {p99 / base[2]:.2f} "
              f"| {rss[name]} MB |")
    if logged:
        print("\n| variant | predictions logged | dropped | logged per second of load |")
        print("|---|---:|---:|---:|")
        for name, values in logged.items():
            written = values.get("tern_prediction_log_rows_total", 0)
            dropped = values.get("tern_prediction_log_dropped_total", 0)
            seconds = args.rounds * args.duration
            print(f"| {name} | {written:.0f} | {dropped:.0f} | {written / seconds:.0f} |")


if __name__ == "__main__":
    main()
