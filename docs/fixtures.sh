#!/usr/bin/env bash
# The input files the guides in docs/ read, made in the current folder, which must hold (or link) the
# project's examples/. tests/test_docs.py runs this in a fresh folder before each guide's commands; to follow
# a guide by hand, run it in a scratch folder:
#   mkdir try && cd try && ln -s ../examples . && bash ../docs/fixtures.sh
# Everything is derived from examples/data (synthetic rows drawn like the example model's training data)
# or drawn with a fixed seed, so the outputs the guides show are the outputs you get.
set -euo pipefail
DATA=examples/data
[ -f "$DATA/credit-reference.csv" ] || { echo "run this where examples/ is (see the comment at the top)" >&2; exit 1; }

# The example model and its labelled holdout under the names the guides use.
cp examples/models/credit-risk/2/model.onnx model.onnx
cp "$DATA/credit-holdout.csv" holdout.csv

# Customers to score (docs/batch.md): the reference rows' ten features, with an id first.
awk -F, -v OFS=, '{ id = NR == 1 ? "customer_id" : sprintf("c%05d", NR - 1); $11 = ""; NF = 10; print id, $0 }' \
  "$DATA/credit-reference.csv" > customers.csv
mkdir -p batch/in batch/out
cp customers.csv batch/in/customers.csv
cat > schedules.yaml <<'YAML'
schedules:
  - name: nightly-scores
    cron: "30 2 * * *"
    model: credit-risk@production
    input: in/customers.csv
    output: out/scores.csv
    id_column: customer_id
YAML

# An applicant to explain (docs/explanations.md): the example model's features.
printf '%s\n' "$(head -1 "$DATA/credit-holdout.csv" | cut -d, -f1-10)" "35,52000,0.3,4,0,0,12000,6,7,0.4" > applicant.csv

# The German credit pipeline's applicants (README, docs/explanations.md): the test set's first three rows
# without the label, and its first as KServe v1 instances.
PIPELINES="$(dirname "${BASH_SOURCE[0]}")/../Tests/Fixtures/pipelines"
python3 - "$PIPELINES/german-test.csv" <<'PYTHON'
import csv, json, sys

with open(sys.argv[1], newline="") as f:
    rows = list(csv.DictReader(f))[:3]
with open("applicants.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([name for name in rows[0] if name != "bad"])
    writer.writerows([[value for name, value in row.items() if name != "bad"] for row in rows])
first = {name: int(value) if value.isdigit() else value for name, value in rows[0].items() if name != "bad"}
with open("applicant.json", "w") as f:
    json.dump({"instances": [first]}, f)
PYTHON
# The pipeline's 700 training applicants without their label (README: drift against its own training data).
python3 - "$PIPELINES/german-train.csv" <<'PYTHON'
import csv, sys

with open(sys.argv[1], newline="") as f, open("applications.csv", "w", newline="") as out:
    writer = csv.writer(out)
    for row in csv.reader(f):
        writer.writerow(row[:-1])
PYTHON

# Drift (docs/drift.md): training data, and a week whose applicants are older and earn more.
cp "$DATA/credit-reference.csv" training.csv
awk -F, -v OFS=, 'NR == 1 { print; next } { $1 = $1 + 6; $2 = sprintf("%.1f", $2 * 1.25); print }' \
  "$DATA/credit-holdout.csv" > last-week.csv

# Two samples of an application form (docs/drift.md, `tern drift compare`): purpose (a category), age (with
# some missing) and income; the current one is older, richer, and has a new purpose and a vanished one.
python3 - <<'PYTHON'
import random

def sample(path, rows, seed, purposes, age_mean, income_mean, missing):
    draw = random.Random(seed)
    with open(path, "w") as f:
        f.write("purpose,age,income\n")
        for _ in range(rows):
            age = "" if draw.random() < missing else str(round(draw.gauss(age_mean, 9)))
            income = round(draw.lognormvariate(0, 0.35) * income_mean, 2)
            f.write(f"{draw.choices(*zip(*purposes))[0]},{age},{income}\n")

sample("reference.csv", 3000, 7, [("car", 40), ("home", 35), ("edu", 25)], 38, 52000, 0.02)
sample("current.csv", 800, 8, [("car", 45), ("home", 30), ("biz", 25)], 42, 60000, 0.025)
PYTHON

# Outcomes known later (docs/drift.md): request id and label, as a lender's system exports them.
printf 'request_id,label\nloan-8,1\n' > outcomes.csv

# TLS (docs/security.md): a private CA, a server certificate for localhost, and a client certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Docs CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext \
  -out server.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=scoring-app" -keyout client.key -out client.csr 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out client.pem 2>/dev/null
cp ca.pem clients-ca.pem
rm -f server.csr client.csr server.ext ca.srl
