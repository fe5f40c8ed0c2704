#!/usr/bin/env python3
"""Golden values for Tern's drift statistics (Tests/Fixtures/drift/golden.json), made with scipy and numpy on
seeded data sets: the same data, no drift, mild drift, strong drift, integer features (repeated decile
edges), equal sample sizes, missing values, and categorical features with a vanished and a new category.

Run with the test venv (scipy and numpy pinned in tests/requirements.txt):
    .venv/bin/python tools/make-drift-golden.py
"""
import json
import os

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, kstwo, wasserstein_distance

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Tests", "Fixtures", "drift",
                   "golden.json")


def bins(ref, live):
    edges = list(dict.fromkeys(np.quantile(ref, np.arange(1, 10) / 10).tolist()))
    def counts(values):
        # (-inf, e1], (e1, e2], ..., (em, inf): the index of the first edge at or above the value
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()
    return edges, counts(ref), counts(live)


def psi(expected_counts, actual_counts):
    e = np.asarray(expected_counts, float) / np.sum(expected_counts)
    a = np.asarray(actual_counts, float) / np.sum(actual_counts)
    e = np.where(e == 0, 1e-4, e)
    a = np.where(a == 0, 1e-4, a)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_case(name, ref, live, decimals=6):
    # Rounded (six decimals, or three for the large sets): the data as the JSON holds them, exactly.
    ref = np.round(np.asarray(ref, float), decimals)
    live = np.round(np.asarray(live, float), decimals)
    r, l = ref[~np.isnan(ref)], live[~np.isnan(live)]
    ks = ks_2samp(r, l)
    edges, ref_counts, live_counts = bins(r, l)
    return {
        "name": name,
        "reference": [None if np.isnan(x) else float(x) for x in ref],
        "live": [None if np.isnan(x) else float(x) for x in live],
        "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
        "wasserstein": float(wasserstein_distance(r, l)),
        "edges": edges, "reference_counts": ref_counts, "live_counts": live_counts,
        "psi": psi(ref_counts, live_counts),
        "jensen_shannon": float(jensenshannon(ref_counts, live_counts, base=2)),
        "reference_missing": int(np.isnan(ref).sum()), "live_missing": int(np.isnan(live).sum()),
    }


def categorical_case(name, ref, live):
    categories = sorted(set(ref) | set(live))
    ref_counts = [ref.count(c) for c in categories]
    live_counts = [live.count(c) for c in categories]
    result = chi2_contingency(np.array([ref_counts, live_counts]))
    return {
        "name": name, "reference": ref, "live": live, "categories": categories,
        "reference_counts": ref_counts, "live_counts": live_counts,
        "chi2": float(result.statistic), "chi2_pvalue": float(result.pvalue), "dof": int(result.dof),
        "psi": psi(ref_counts, live_counts),
        "jensen_shannon": float(jensenshannon(ref_counts, live_counts, base=2)),
        "new": sorted(set(live) - set(ref)), "vanished": sorted(set(ref) - set(live)),
    }


def main():
    rng = np.random.default_rng(20261130)
    ref = rng.normal(0, 1, 2000)
    with_missing = rng.normal(0, 1, 1500)
    with_missing[rng.random(1500) < 0.05] = np.nan
    live_missing = rng.normal(0.3, 1, 400)
    live_missing[rng.random(400) < 0.2] = np.nan
    numeric = [
        numeric_case("same data", ref, ref),
        numeric_case("no drift", ref, rng.normal(0, 1, 600)),
        numeric_case("mild drift", ref, rng.normal(0.2, 1.1, 700)),
        numeric_case("strong drift", ref, rng.normal(1.5, 2.0, 900)),
        numeric_case("integers, repeated edges", rng.poisson(3, 1500), rng.poisson(3.6, 800)),
        numeric_case("equal sizes", rng.normal(0, 1, 500), rng.normal(0.15, 1, 500)),
        numeric_case("missing values", with_missing, live_missing),
        numeric_case("largest exact sample", rng.lognormal(10, 0.5, 10000), rng.lognormal(10.05, 0.55, 1200)),
        numeric_case("tiny samples", rng.normal(0, 1, 7), rng.normal(1, 1, 5)),
        # Past 10,000 values a side: scipy's asymptotic p-value (kstwo.sf with n = round(n1*n2/(n1+n2))).
        numeric_case("large, no drift", rng.normal(0, 1, 12000), rng.normal(0, 1, 3000), decimals=3),
        numeric_case("large, mild drift", rng.normal(0, 1, 12000), rng.normal(0.06, 1, 2500), decimals=3),
        numeric_case("large, strong drift", rng.normal(0, 1, 12000), rng.normal(0.3, 1, 2000), decimals=3),
    ]
    # kstwo.sf itself across its methods: Ruben-Gambino, the Durbin matrix, Pelz-Good, Smirnov sums.
    kstwo_cases = []
    for n in [50, 150, 500, 2069, 20000, 150000]:
        for nx2 in [0.3, 0.7, 1.5, 2.0, 3.0, 10.0, 50.0]:
            x = (nx2 / n) ** 0.5
            if n <= 140 and 0.754693 < nx2 <= 4:
                continue  # the Pomeranz branch, not built
            kstwo_cases.append({"n": n, "x": x, "sf": float(kstwo.sf(x, n))})
        for x in [0.8 / n, 0.6, 1 - 0.5 / n]:
            kstwo_cases.append({"n": n, "x": x, "sf": float(kstwo.sf(x, n))})
    letters = ["a", "b", "c", "d"]
    reference = rng.choice(letters, 3000, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    categorical = [
        categorical_case("same data", reference, reference),
        categorical_case("no drift", reference, rng.choice(letters, 800, p=[0.4, 0.3, 0.2, 0.1]).tolist()),
        categorical_case("mild drift", reference, rng.choice(letters, 800, p=[0.35, 0.3, 0.22, 0.13]).tolist()),
        categorical_case("strong drift, a vanished and a new category", reference,
                         rng.choice(["a", "b", "c", "e"], 900, p=[0.2, 0.3, 0.3, 0.2]).tolist()),
        categorical_case("two categories (Yates)", rng.choice(["yes", "no"], 1000, p=[0.3, 0.7]).tolist(),
                         rng.choice(["yes", "no"], 400, p=[0.36, 0.64]).tolist()),
    ]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"numeric": numeric, "categorical": categorical, "kstwo": kstwo_cases}, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
