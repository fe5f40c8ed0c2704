"""Writes examples/data/credit-{reference,holdout}.csv: synthetic credit-risk rows drawn as the example
models' training data was (tools/make-fixtures.py), with the `default` label, for `tern pack`."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from registry_support import CREDIT_FEATURES, credit_table, write_csv  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples", "data")

for name, rows, seed in (("credit-reference.csv", 1000, 101), ("credit-holdout.csv", 500, 102)):
    x, y = credit_table(rows, seed)
    data = [[f"{v:.6g}" for v in row] + [int(t)] for row, t in zip(x, y)]
    os.makedirs(OUT, exist_ok=True)
    write_csv(os.path.join(OUT, name), CREDIT_FEATURES + ["default"], data)
    print("wrote", os.path.join(OUT, name))
