#!/usr/bin/env python3
"""Renders and lints deploy/helm/tern with Helm's own engine: the PyPI wheel `helm-python-sdk` bundles Helm
v4's Go SDK as a C library, so no helm binary (and no cluster) is needed. Values files merge in order, as
`helm template -f A -f B` merges them.

    tools/render-chart.py deploy/helm/tern [-f values.yaml ...] [--name RELEASE]   (prints the manifests)
    tools/render-chart.py deploy/helm/tern --lint [-f values.yaml ...]              (Helm's lint; exits 1 on errors)
"""
import argparse
import json
import sys

import yaml
from helm_python.chart import Chart
from helm_python.chart import lint as helm_lint


def merge(base, extra):
    """`extra` over `base`, maps merged key by key (Helm's coalescing of values files)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def values(values_files=()):
    merged = {}
    for path in values_files:
        with open(path) as f:
            merge(merged, yaml.safe_load(f) or {})
    return merged


def render_chart(chart, values_files=(), release="tern", namespace="default"):
    """The chart's manifests as `helm template` prints them (a `# Source:` line before each)."""
    with Chart.load(chart) as loaded:
        rendered = loaded.render(values=values(values_files), name=release, namespace=namespace, is_install=True)
    return "".join(f"---\n# Source: {path}\n{text.strip()}\n" for path, text in sorted(rendered.items())
                   if path.endswith(".yaml") and text.strip())


def lint_chart(chart, values_files=()):
    """Helm's lint: its messages, and its errors (empty when the chart is sound)."""
    return helm_lint(chart, values(values_files), strict=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="tern")
    parser.add_argument("--lint", action="store_true")
    args = parser.parse_args()
    if args.lint:
        result = lint_chart(args.chart, args.values)
        print(json.dumps(result, indent=2))
        sys.exit(1 if result.get("errors") else 0)
    sys.stdout.write(render_chart(args.chart, args.values, release=args.name))


if __name__ == "__main__":
    main()
