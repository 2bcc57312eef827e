"""Cut the parts of OpenAI's OpenAPI description that the fake server checks against.

    python tests/specs/extract_openai_spec.py ../shared/specs/openai-openapi.yaml

writes tests/specs/openai-openapi-fine-tuning.json: the paths below with every component they
reference, unchanged (the full file is 3 MB; this keeps the repo small and loads fast).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

PATHS = (
    "/files",
    "/files/{file_id}",
    "/fine_tuning/jobs",
    "/fine_tuning/jobs/{fine_tuning_job_id}",
    "/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    "/fine_tuning/jobs/{fine_tuning_job_id}/events",
    "/chat/completions",
)
OUT = Path(__file__).with_name("openai-openapi-fine-tuning.json")


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    paths = {p: spec["paths"][p] for p in PATHS}
    components: dict[str, dict[str, Any]] = {}
    todo, seen = refs(paths), set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)  # "#/components/<kind>/<name>"
        node = spec["components"][kind][name]
        components.setdefault(kind, {})[name] = node
        todo |= refs(node)
    info = {**spec["info"], "x-extracted-paths": list(PATHS)}
    return {"openapi": spec["openapi"], "info": info, "paths": paths, "components": components}


if __name__ == "__main__":
    source = Path(sys.argv[1])
    spec = yaml.load(source.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    OUT.write_text(json.dumps(extract(spec), indent=1, sort_keys=True) + "\n")
    print(f"{OUT}: {OUT.stat().st_size} bytes")
