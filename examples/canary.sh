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

# Step 1 of the canary: the default bounds (p99 at most 1.5x the stable version's).
watch_rollout() {
  while "$TERN" rollout status credit-risk --server "$SERVER" | head -1 | grep -q ': running'; do
    "$TERN" rollout status credit-risk --server "$SERVER" | sed -n '1,4p'
    sleep 10
  done
  "$TERN" rollout status credit-risk --server "$SERVER"
}
"$TERN" rollout start credit-risk --to 2 --steps 10,50,100 --interval 20s --min-requests 200 --server "$SERVER"
watch_rollout
# Version 2 is a 100-tree gradient-boosting model and version 1 a logistic regression: if it was rolled back
# on latency, the team decides the gain is worth up to 4x the p99 and runs the canary again.
if "$TERN" rollout status credit-risk --server "$SERVER" | head -1 | grep -q 'rolled_back'; then
  "$TERN" models traffic credit-risk --clear --server "$SERVER"
  "$TERN" rollout start credit-risk --to 2 --steps 10,50,100 --interval 20s --min-requests 200 --max-latency-ratio 4 --server "$SERVER"
  watch_rollout
fi
echo "--- metrics"
curl -s "$SERVER/metrics" | grep -E '^tern_requests_total\{model="credit-risk",version="[12]",protocol="v2_rest"|^tern_fallback_total|^tern_rollout' | sed 's/^/  /'
echo "--- the model and its audit trail"
"$TERN" models show credit-risk | sed -n '1,4p'
"$TERN" audit log --model credit-risk | cut -c1-160 | tail -14
