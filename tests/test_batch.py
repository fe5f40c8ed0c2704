"""`tern batch`: a generated table scored equal to in-process onnxruntime on every row (a tree model and an
MLP, CSV and JSON Lines), rejects with line numbers, SIGKILL at random points then --resume giving the same
bytes, shards merged equal to one run, and the refusals that come before anything is written."""
import csv
import json
import os
import random
import signal
import subprocess
import time

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from conftest import BINARY, FIXTURES, ROOT
from registry_support import pack, tern

CREDIT = os.path.join(ROOT, "examples", "models", "credit-risk", "2", "model.onnx")
FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount", "employment_years",
            "open_accounts", "utilization"]


def table(path, rows, width, names=None, seed=0, id_column=True):
    """A CSV of `rows` random rows (4 decimals), with an id column first; written fast in blocks."""
    generator = np.random.default_rng(seed)
    names = names or [f"f{i}" for i in range(width)]
    with open(path, "w") as f:
        f.write(",".join((["id"] if id_column else []) + names) + "\n")
        for start in range(0, rows, 100_000):
            count = min(100_000, rows - start)
            block = np.round(generator.normal(size=(count, width)) * 3, 4)
            ids = np.arange(start, start + count).reshape(-1, 1)
            frame = pd.DataFrame(np.hstack([ids, block]) if id_column else block)
            if id_column:
                frame[0] = frame[0].astype(np.int64)
            frame.to_csv(f, header=False, index=False, float_format="%.4f")
    return str(path)


def onnxruntime_outputs(model, features):
    # One thread, as each of tern's runs: a tree ensemble's sums then add in the same order.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()],
                    session.run(None, {session.get_inputs()[0].name: features.astype(np.float32)})))


@pytest.mark.parametrize("model,width,names,fmt", [
    (CREDIT, 10, FEATURES, "csv"),  # 100-tree gradient boosting, features matched by name
    (os.path.join(FIXTURES, "mlp", "model.onnx"), 20, None, "jsonl"),  # an MLP, columns in order
])
def test_a_million_rows_equal_onnxruntime_on_every_row(tmp_path, model, width, names, fmt):
    rows = 1_000_000
    source = table(tmp_path / "in.csv", rows, width, names)
    out = str(tmp_path / f"out.{fmt}")
    result = tern("batch", model, "--input", source, "--output", out, "--id-column", "id", "--quiet")
    assert f"scored {rows} rows" in result.stderr, result.stderr
    features = pd.read_csv(source, float_precision="round_trip").drop(columns=["id"]).to_numpy()
    expected = onnxruntime_outputs(model, features)
    if fmt == "csv":
        written = pd.read_csv(out, float_precision="round_trip")
        assert list(written.columns) == ["id", "label", "probabilities_0", "probabilities_1"]
        np.testing.assert_array_equal(written["id"].to_numpy(), np.arange(rows))
        np.testing.assert_array_equal(written["label"].to_numpy(), expected["label"])
        # Written in the shortest form that reads back as the same float32.
        np.testing.assert_array_equal(written[["probabilities_0", "probabilities_1"]].to_numpy(np.float32), expected["probabilities"])
    else:
        written = pd.read_json(out, lines=True, dtype=False)
        np.testing.assert_array_equal(written["id"].to_numpy(), np.arange(rows))
        np.testing.assert_array_equal(written["label"].to_numpy(), expected["label"])
        np.testing.assert_array_equal(np.array(written["probabilities"].tolist(), dtype=np.float32), expected["probabilities"])
    assert not os.path.exists(out + ".checkpoint") and not os.path.exists(out + ".rejects.csv")


def test_bad_lines_go_to_the_rejects_file_with_their_line_number_and_the_run_goes_on(tmp_path):
    source = tmp_path / "in.csv"
    good = [[1.5] * 10, [2.5] * 10]
    with open(source, "w") as f:
        f.write("id," + ",".join(FEATURES) + "\n")
        f.write("a," + ",".join(map(str, good[0])) + "\n")
        f.write("b," + ",".join(["x"] + ["1"] * 9) + "\n")  # line 3: not a number
        f.write("c,1,2\n")  # line 4: too few values
        f.write("d," + ",".join(map(str, good[1])) + "\n")
        f.write("e," + ",".join(["1"] * 9 + ["1e999"]) + "\n")  # line 6: not finite
    out = str(tmp_path / "out.csv")
    result = tern("batch", CREDIT, "--input", str(source), "--output", out, "--id-column", "id", "--passthrough", "age")
    assert "scored 2 rows, rejected 3" in result.stderr, result.stderr
    written = pd.read_csv(out, float_precision="round_trip")
    assert list(written["id"]) == ["a", "d"] and list(written["age"]) == [1.5, 2.5]
    expected = onnxruntime_outputs(CREDIT, np.array(good))
    np.testing.assert_array_equal(written[["probabilities_0", "probabilities_1"]].to_numpy(np.float32), expected["probabilities"])
    with open(out + ".rejects.csv") as f:
        rejects = list(csv.reader(f))
    assert rejects[0] == ["line", "reason", "text"]
    assert [r[0] for r in rejects[1:]] == ["3", "4", "6"]
    assert "column 'age': 'x' is not a number" in rejects[1][1] and "has 3 values; the header has 11" in rejects[2][1]
    assert rejects[2][2] == "c,1,2"
    # --max-rejects stops the run, saying why.
    stopped = tern("batch", CREDIT, "--input", str(source), "--output", str(tmp_path / "o2.csv"), "--max-rejects", "1", check=False)
    assert stopped.returncode != 0 and "more than 1 rejected lines (--max-rejects)" in stopped.stderr, stopped.stderr


def test_refusals_come_before_anything_is_written(tmp_path):
    source = table(tmp_path / "in.csv", 10, 10, FEATURES)
    out = tmp_path / "out.csv"
    for args, message in [
        (("--input", str(tmp_path / "missing.csv")), "cannot read the input"),
        (("--input", table(tmp_path / "narrow.csv", 3, 4)), "the model takes 10 features"),
        (("--input", source, "--id-column", "nope"), "no column 'nope'"),
        (("--input", source, "--outputs", "scores"), "no output 'scores'"),
        (("--input", source, "--resume"), "nothing to resume"),
    ]:
        result = tern("batch", CREDIT, *args, "--output", str(out), check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()
    tern("batch", CREDIT, "--input", source, "--output", str(out))
    first = out.read_bytes()
    again = tern("batch", CREDIT, "--input", source, "--output", str(out), check=False)
    assert again.returncode != 0 and "not overwritten without --force" in again.stderr
    assert out.read_bytes() == first
    tern("batch", CREDIT, "--input", source, "--output", str(out), "--force", "--format", "jsonl")
    assert out.read_bytes() != first


def test_killed_at_random_points_and_resumed_gives_the_same_bytes(tmp_path):
    source = table(tmp_path / "in.csv", 300_000, 10, FEATURES, seed=4)
    reference = str(tmp_path / "reference.csv")
    tern("batch", CREDIT, "--input", source, "--output", reference, "--id-column", "id", "--chunk-rows", "2000")
    out = str(tmp_path / "out.csv")
    command = [BINARY, "batch", CREDIT, "--input", source, "--output", out, "--id-column", "id", "--chunk-rows", "2000", "--quiet"]
    rng = random.Random(11)
    kills = 0
    for attempt in range(6):
        process = subprocess.Popen(command + (["--resume"] if attempt else []), stderr=subprocess.PIPE, cwd=ROOT)
        time.sleep(rng.uniform(0.05, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
        if not os.path.exists(out + ".checkpoint"):
            break
    assert kills >= 2
    if os.path.exists(out + ".checkpoint"):
        finished = tern("batch", *command[2:-1], "--resume")
        assert "resumed after" in finished.stderr or "scored" in finished.stderr
    with open(out, "rb") as a, open(reference, "rb") as b:
        assert a.read() == b.read()
    assert not os.path.exists(out + ".checkpoint")


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_merged_equal_one_run_byte_for_byte(tmp_path, shards):
    source = table(tmp_path / "in.csv", 50_001, 10, FEATURES, seed=5)
    whole = str(tmp_path / "whole.csv")
    tern("batch", CREDIT, "--input", source, "--output", whole, "--id-column", "id")
    parts = []
    for index in range(shards):
        part = str(tmp_path / f"part-{index}.csv")
        tern("batch", CREDIT, "--input", source, "--output", part, "--id-column", "id", "--shard", f"{index}/{shards}")
        parts.append(part)
    merged = str(tmp_path / "merged.csv")
    tern("batch", "merge", *parts, "--output", merged)
    with open(merged, "rb") as a, open(whole, "rb") as b:
        assert a.read() == b.read()
    sizes = [sum(1 for _ in open(p)) - 1 for p in parts]
    assert sum(sizes) == 50_001 and min(sizes) > 50_001 // shards // 2, sizes


def test_a_bundle_names_probability_columns_after_its_class_labels(tmp_path):
    bundle = pack(str(tmp_path), "gbc", "credit", 1, "--class-labels", "good,bad")
    source = table(tmp_path / "in.csv", 5, 10, id_column=False)
    out = str(tmp_path / "out.csv")
    tern("batch", bundle, "--input", source, "--output", out)
    assert open(out).readline().strip() == "label,probabilities_good,probabilities_bad"


def test_gzip_in_and_out_by_extension_resume_and_merge(tmp_path):
    """A .gz input is read compressed; a .gz output is written as one gzip member per chunk, so it resumes
    after a kill and merges like a plain one, and decompresses to the plain run's bytes."""
    import gzip
    import shutil
    source = table(tmp_path / "in.csv", 120_000, 10, FEATURES, seed=8)
    with open(source, "rb") as plain, gzip.open(str(tmp_path / "in.csv.gz"), "wb") as packed:
        shutil.copyfileobj(plain, packed)
    reference = str(tmp_path / "reference.csv")
    tern("batch", CREDIT, "--input", source, "--output", reference, "--id-column", "id")
    expected = open(reference, "rb").read()
    out = str(tmp_path / "out.csv.gz")
    command = [BINARY, "batch", CREDIT, "--input", str(tmp_path / "in.csv.gz"), "--output", out, "--id-column", "id",
               "--chunk-rows", "1000", "--quiet"]
    process = subprocess.Popen(command, cwd=ROOT)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    if os.path.exists(out + ".checkpoint"):
        tern(*command[1:], "--resume")
    assert gzip.open(out).read() == expected
    # Shards of the plain input, written compressed, merged compressed.
    parts = []
    for index in range(2):
        part = str(tmp_path / f"part-{index}.csv.gz")
        tern("batch", CREDIT, "--input", source, "--output", part, "--id-column", "id", "--shard", f"{index}/2")
        parts.append(part)
    tern("batch", "merge", *parts, "--output", str(tmp_path / "merged.csv.gz"))
    assert gzip.open(str(tmp_path / "merged.csv.gz")).read() == expected
    refused = tern("batch", CREDIT, "--input", str(tmp_path / "in.csv.gz"), "--output", str(tmp_path / "x.csv"), "--shard", "0/2", check=False)
    assert refused.returncode != 0 and "cannot be split into shards" in refused.stderr


def test_a_registry_model_by_alias_scores_as_its_bundle_does(tmp_path):
    from registry_support import Registry
    reg = Registry("sqlite", tmp_path)
    bundle = pack(reg.tmp, "gbc", "credit", 1)
    reg.cli("push", bundle, "--alias", "production")
    source = table(tmp_path / "in.csv", 1000, 10, id_column=False)
    tern("batch", bundle, "--input", source, "--output", str(tmp_path / "file.csv"))
    tern("batch", "credit@production", "--input", source, "--output", str(tmp_path / "alias.csv"), *reg.args)
    tern("batch", "credit", "--input", source, "--output", str(tmp_path / "default.csv"), *reg.args)
    expected = (tmp_path / "file.csv").read_bytes()
    assert (tmp_path / "alias.csv").read_bytes() == expected and (tmp_path / "default.csv").read_bytes() == expected
    missing = tern("batch", "credit@canary", "--input", source, "--output", str(tmp_path / "x.csv"), *reg.args, check=False)
    assert missing.returncode != 0 and "no alias 'canary'" in missing.stderr, missing.stderr


def test_the_kubernetes_indexed_job_validates_and_its_pods_command_scores_the_shards(tmp_path):
    """deploy/batch/indexed-job.yaml passes kubernetes-validate (strict, Kubernetes 1.33); its pod command,
    run for every completion index with the real binary on a local /data, gives parts that merge into the
    unsharded output."""
    import shutil
    import kubernetes_validate
    import yaml
    path = os.path.join(ROOT, "deploy", "batch", "indexed-job.yaml")
    with open(path) as f:
        job = yaml.safe_load(f)
    kubernetes_validate.validate(job, "1.33.0", strict=True)
    completions = job["spec"]["completions"]
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    data = tmp_path / "data"
    for folder in ("in", "out", "models"):
        (data / folder).mkdir(parents=True)
    shutil.copy(pack(str(tmp_path), "gbc", "credit", 1), data / "models" / "credit-risk.tern")
    source = table(data / "in" / "customers.csv", 20_000, 10, FEATURES, seed=9)
    with open(source) as f:
        text = f.read().replace("id,", "customer_id,", 1)
    with open(source, "w") as f:
        f.write(text)
    script = script.replace("/data/", str(data) + "/")
    environment = dict(os.environ, PATH=os.path.dirname(BINARY) + os.pathsep + os.environ["PATH"])
    for index in range(completions):
        subprocess.run(["/bin/sh", "-c", script], env=dict(environment, JOB_COMPLETION_INDEX=str(index)), check=True,
                       capture_output=True, cwd=ROOT)
    parts = [str(data / "out" / f"part-{i}.csv") for i in range(completions)]
    tern("batch", "merge", *parts, "--output", str(data / "out" / "scores.csv"))
    tern("batch", str(data / "models" / "credit-risk.tern"), "--input", source, "--output", str(tmp_path / "whole.csv"),
         "--id-column", "customer_id")
    assert (data / "out" / "scores.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()


def test_explain_adds_each_rows_top_attributions_equal_to_tern_explains(tmp_path):
    reference = os.path.join(ROOT, "examples", "data", "credit-reference.csv")
    bundle = pack(str(tmp_path), "gbc", "credit", 1, "--reference", reference, "--label-column", "default")
    source = table(tmp_path / "in.csv", 300, 10, FEATURES, seed=6)
    out = str(tmp_path / "out.csv")
    tern("batch", bundle, "--input", source, "--output", out, "--id-column", "id", "--explain", "3")
    written = pd.read_csv(out, float_precision="round_trip")
    assert list(written.columns)[-6:] == ["why_1", "why_1_value", "why_2", "why_2_value", "why_3", "why_3_value"]
    rows_csv = str(tmp_path / "rows.csv")
    pd.read_csv(source).drop(columns=["id"]).head(20).to_csv(rows_csv, index=False)
    explained = json.loads(tern("explain", bundle, "--input", rows_csv, "--json").stdout)
    for r, row in enumerate(explained["rows"]):
        values = dict(zip(explained["features"], row["attributions"]["class 1"]))
        top = sorted(values, key=lambda f: -abs(values[f]))[:3]
        assert [written[f"why_{j}"][r] for j in (1, 2, 3)] == top
        np.testing.assert_allclose([written[f"why_{j}_value"][r] for j in (1, 2, 3)], [values[f] for f in top], rtol=0, atol=1e-12)
    jsonl = str(tmp_path / "out.jsonl")
    tern("batch", bundle, "--input", source, "--output", jsonl, "--explain", "2")
    first = json.loads(open(jsonl).readline())
    assert [item["feature"] for item in first["explanation"]] == [written["why_1"][0], written["why_2"][0]]
    missing = tern("batch", CREDIT, "--input", source, "--output", str(tmp_path / "x.csv"), "--explain", "3", check=False)
    assert missing.returncode != 0 and "--explain needs background rows" in missing.stderr, missing.stderr


def test_json_lines_input_scores_as_its_csv_does(tmp_path):
    bundle = pack(str(tmp_path), "gbc", "credit", 1)
    source = table(tmp_path / "in.csv", 2000, 10, FEATURES, seed=12)
    frame = pd.read_csv(source, float_precision="round_trip")
    records = frame.to_dict(orient="records")
    records[5]["age"] = "old"  # line 6: not a number
    del records[9]["income"]  # line 10: a key missing
    with open(tmp_path / "in.jsonl", "w") as f:
        for i, record in enumerate(records):
            f.write(json.dumps({k: (int(v) if k == "id" else v) for k, v in record.items()}) + "\n")
            if i == 20:
                f.write("not json\n")  # line 22
    expected = str(tmp_path / "csv.csv")
    tern("batch", bundle, "--input", source, "--output", expected, "--id-column", "id")
    out = str(tmp_path / "jsonl.csv")
    result = tern("batch", bundle, "--input", str(tmp_path / "in.jsonl"), "--output", out, "--id-column", "id")
    assert "rejected 3" in result.stderr, result.stderr
    kept = pd.read_csv(out, float_precision="round_trip")
    whole = pd.read_csv(expected, float_precision="round_trip")
    whole = whole[~whole["id"].isin([5, 9])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, whole)
    with open(out + ".rejects.csv") as f:
        rejects = list(csv.reader(f))[1:]
    assert [(r[0], r[1]) for r in rejects] == [("6", "column 'age': 'old' is not a number"), ("10", "has no 'income'"),
                                                ("22", "is not a JSON object")]
    unnamed = tern("batch", os.path.join(ROOT, "Tests", "Fixtures", "explain", "sklearn_gbc", "model.onnx"), "--input", str(tmp_path / "in.jsonl"),
                   "--output", str(tmp_path / "x.csv"), "--id-column", "id", check=False)
    assert unnamed.returncode != 0 and "matched to the model by feature name" in unnamed.stderr, unnamed.stderr
