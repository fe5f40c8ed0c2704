#!/usr/bin/env python3
"""Renders deploy/helm/tern without Helm (no Helm binary installs from this project's package sources): the
chart's templates use only this subset of Helm's template language, which this renderer implements:
`{{ .Values.a.b }}`, `.Release.Name`, `.Chart.AppVersion`, `.` inside range; pipelines to `quote` and
`nindent N`; `toYaml X`, `default A B`, `not X`; `if` / `else if` / `else` / `end`, `range` / `end`; and the
`{{-` / `-}}` whitespace trimming. A template using anything else fails here rather than render wrongly.

    tools/render-chart.py deploy/helm/tern [-f values.yaml] [--name RELEASE]   (prints the manifests)
"""
import argparse
import copy
import json
import os
import re
import sys

import yaml

TOKEN = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def tokenize(text):
    parts, position = [], 0
    for match in TOKEN.finditer(text):
        before = text[position:match.start()]
        if match.group(1):
            before = before.rstrip(" \t\n")
        parts.append(("text", before))
        parts.append(("action", match.group(2)))
        position = match.end()
        if match.group(3):
            rest = text[position:]
            position += len(rest) - len(rest.lstrip(" \t\n"))
    parts.append(("text", text[position:]))
    return parts


def parse(parts, index=0, stop=("end",)):
    """A list of nodes until one of `stop`; returns (nodes, index of the stopping action, its text)."""
    nodes = []
    while index < len(parts):
        kind, value = parts[index]
        if kind == "text":
            nodes.append(("text", value))
            index += 1
            continue
        word = value.split()[0] if value else ""
        if word in stop or value in stop:
            return nodes, index, value
        if word == "if":
            branches, index = parse_if(parts, index)
            nodes.append(("if", branches))
        elif word == "range":
            body, index, _ = parse(parts, index + 1)
            nodes.append(("range", value[len("range"):].strip(), body))
            index += 1
        elif word in ("end", "else"):
            raise SystemExit(f"unexpected {{{{ {value} }}}}")
        else:
            nodes.append(("expr", value))
            index += 1
    return nodes, index, None


def parse_if(parts, index):
    branches = []
    condition = parts[index][1][len("if"):].strip()
    index += 1
    while True:
        body, index, stopper = parse(parts, index, stop=("end", "else"))
        branches.append((condition, body))
        if stopper is None:
            raise SystemExit("an if without end")
        if stopper == "end":
            return branches, index + 1
        condition = stopper[len("else"):].strip()
        condition = condition[len("if"):].strip() if condition.startswith("if") else None
        index += 1


def lookup(path, scope):
    if path == ".":
        return scope["."]
    value = scope
    for key in path.lstrip(".").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def to_yaml(value):
    if value in ({}, [], None):
        return json.dumps(value if value is not None else {})
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def evaluate(expression, scope):
    stages = [stage.strip() for stage in expression.split("|")]
    value = call(stages[0].split(), scope)
    for stage in stages[1:]:
        words = stage.split()
        if words[0] == "quote":
            value = json.dumps("" if value is None else str(value))
        elif words[0] == "nindent":
            pad = " " * int(words[1])
            value = "\n" + "\n".join(pad + line for line in str(value).split("\n"))
        else:
            raise SystemExit(f"unsupported pipeline function: {words[0]}")
    return value


def call(words, scope):
    if words[0] == "toYaml":
        return to_yaml(lookup(words[1], scope))
    if words[0] == "default":
        chosen = lookup(words[2], scope)
        return chosen if chosen not in (None, "", [], {}) else lookup(words[1], scope)
    if words[0] == "not":
        return not truthy(lookup(words[1], scope))
    if len(words) == 1 and words[0].startswith("."):
        return lookup(words[0], scope)
    raise SystemExit(f"unsupported expression: {' '.join(words)}")


def truthy(value):
    return value not in (None, False, 0, "", [], {})


def render(nodes, scope):
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "expr":
            value = evaluate(node[1], scope)
            out.append("" if value is None else (json.dumps(value) if isinstance(value, bool) else str(value)))
        elif node[0] == "if":
            for condition, body in node[1]:
                if condition is None or truthy(evaluate(condition, scope)):
                    out.append(render(body, scope))
                    break
        elif node[0] == "range":
            for item in lookup(node[1], scope) or []:
                out.append(render(node[2], dict(scope, **{".": item})))
    return "".join(out)


def merge(base, override):
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def render_chart(chart, values_files=(), release="tern"):
    with open(os.path.join(chart, "Chart.yaml")) as f:
        meta = yaml.safe_load(f)
    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    for path in values_files:
        with open(path) as f:
            merge(values, yaml.safe_load(f) or {})
    scope = {"Values": copy.deepcopy(values), "Release": {"Name": release, "Namespace": "default"},
             "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]}}
    documents = []
    folder = os.path.join(chart, "templates")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(folder, name)) as f:
            nodes, _, _ = parse(tokenize(f.read()))
        text = render(nodes, scope)
        if text.strip():
            documents.append(f"---\n# Source: {meta['name']}/templates/{name}\n{text.strip()}\n")
    return "".join(documents)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("chart")
    parser.add_argument("-f", "--values", action="append", default=[])
    parser.add_argument("--name", default="tern")
    args = parser.parse_args()
    sys.stdout.write(render_chart(args.chart, args.values, args.name))


if __name__ == "__main__":
    main()
