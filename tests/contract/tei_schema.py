"""This server's TEI routes against TEI's own OpenAPI document (tests/contract/tei/openapi.json).

Writes the part of TEI's document this server implements: the TEI routes it serves, each with
TEI's request schema and TEI's 200 response schema. It leaves out the error responses, because
this server's error bodies are its own ({"error", "error_type"} with its own error types,
documented in its /openapi.json and checked there). `run.sh` then runs schemathesis with that
document against the live server: requests generated from TEI's request schemas must never
get a 5xx, and every 200 body must validate against TEI's response schema.

Usage: python tests/contract/tei_schema.py OUT.json
"""
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
# TEI's routes this server answers; /rerank, /similarity and /embed_sparse need models it does
# not serve, and /metrics is Prometheus text.
ROUTES = {
    "/predict": "post",
    "/embed": "post",
    "/embed_all": "post",
    "/tokenize": "post",
    "/decode": "post",
    "/v1/embeddings": "post",
    "/info": "get",
    "/health": "get",
}


def main(out):
    doc = json.loads((HERE / "tei/openapi.json").read_text())
    missing = [p for p in ROUTES if p not in doc["paths"]]
    if missing:
        sys.exit(f"tests/contract/tei/openapi.json: expected the routes {missing}, found none")
    paths = {}
    for path, method in ROUTES.items():
        op = doc["paths"][path][method]
        op["responses"] = {"200": op["responses"]["200"]}
        paths[path] = {method: op}
    doc["paths"] = paths
    pathlib.Path(out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}: TEI's {len(paths)} routes this server serves, 200 responses only")


if __name__ == "__main__":
    main(sys.argv[1])
