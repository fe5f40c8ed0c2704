#!/usr/bin/env bash
# A worked canary of the credit-risk example from version 1 to 2 (docs/rollouts.md): packs both versions
# with their reference and holdout data, pushes them to a fresh registry, gates production on ROC AUC,
# serves, rolls version 2 out in three steps under a steady load, and prints what the rollout, the
# audit trail and the metrics showed. Run from the repository root after the README's first command:
#   examples/canary.sh [path/to/tern]
set -euo pipefail
TERN=${1:-.build/release/tern}
[ -x "$TERN" ] || TERN=.build/debug/tern
WORK=$(mktemp -d)
PORT=${PORT:-18080}
export TERN_DATA=$WORK/data
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT

for version in 1 2; do
  "$TERN" pack "examples/models/credit-risk/$version/model.onnx" --name credit-risk --version "$version" \
    --reference examples/data/credit-reference.csv --holdout examples/data/credit-holdout.csv \
    --label-column default -o "$WORK/credit-risk-$version.tern"
done
"$TERN" push "$WORK/credit-risk-1.tern" --alias production
"$TERN" push "$WORK/credit-risk-2.tern"
"$TERN" models gate credit-risk --require roc_auc=0.70 --max-regression roc_auc=0.02

"$TERN" serve --http-port "$PORT" --no-grpc > "$WORK/serve.log" 2>&1 &
until curl -sf "localhost:$PORT/v2/health/ready" > /dev/null; do sleep 0.2; done
SERVER=http://localhost:$PORT

# A steady load: 4 clients posting the example request (two applicants) in a loop.
for _ in 1 2 3 4; do
  (while :; do curl -s -o /dev/null -X POST "$SERVER/v2/models/credit-risk/infer" \
     -H 'Content-Type: application/json' -d @examples/requests/credit-risk.json; done) &
done

"$TERN" rollout start credit-risk --to 2 --steps 10,50,100 --interval 20s --min-requests 200 --server "$SERVER"
while "$TERN" rollout status credit-risk --server "$SERVER" | head -1 | grep -q ': running'; do
  "$TERN" rollout status credit-risk --server "$SERVER" | sed -n '1,4p'
  curl -s "$SERVER/metrics" | grep -E '^tern_requests_total\{.*model="credit-risk".*outcome="success"' | sed 's/^/  /'
  sleep 10
done
"$TERN" rollout status credit-risk --server "$SERVER"
"$TERN" models show credit-risk | sed -n '1,4p'
"$TERN" audit log --model credit-risk | tail -8
