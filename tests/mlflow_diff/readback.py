"""Reads back everything a tracking server holds through MlflowClient and prints it as one
JSON document with server-specific values normalised: ids become <exp:N>, <run:N>, <model:N>
in a canonical order, timestamps become "<t>" (or stay null/0), generated run names become
"<generated>", and text artifacts are compared with their own ids masked.

Usage: python readback.py OBSERVATIONS_FILE  (the case's stdout; lines "OBS <json>" kept)"""
import hashlib
import json
import os
import re
import sys
import tempfile

from mlflow import MlflowClient
from mlflow.entities import ViewType

client = MlflowClient()
TIME_KEYS = re.compile(r"(^|_)(time|timestamp|created|updated)$|_time$|_timestamp$|^timestamp$")
GENERATED = re.compile(r"^[a-z]+-[a-z]+-\d{1,4}$")
# Values that differ run to run on any server: uuids inside artifact files, creation times.
MASKS = [
    (re.compile(r"utc_time_created: '[^']*'"), "utc_time_created: <t>"),
    (re.compile(r"model_uuid: [0-9a-f]{32}"), "model_uuid: <uuid>"),
    (re.compile(r"\"utc_time_created\": \"[^\"]*\""), "\"utc_time_created\": <t>"),
    (re.compile(r"mlflow_version: [0-9.a-z]+"), "mlflow_version: <v>"),
    # Python object addresses in reprs (sklearn's estimator.html).
    (re.compile(r"(0|\.\.\.)x[0-9a-f]{6,}"), "<address>"),
]


def section(f):
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - an error is part of what is compared
        code = getattr(e, "error_code", None)
        return {"error": code or type(e).__name__}


def plain(x):
    """An entity (or anything) as JSON-able data."""
    if hasattr(x, "to_dictionary"):
        x = x.to_dictionary()
    elif hasattr(x, "__dict__") and not isinstance(x, (dict, list, str, int, float, bool)):
        x = {k.lstrip("_"): v for k, v in vars(x).items()}
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, float) and x != x:
        return "NaN"
    if isinstance(x, float) and x in (float("inf"), float("-inf")):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def artifacts(list_fn, download_fn):
    """Every file under a root: path → size and content (text, ids masked) or sha256."""
    out = {}

    def walk(path):
        for f in list_fn(path):
            if f.is_dir:
                out[f.path + "/"] = "dir"
                walk(f.path)
            else:
                out[f.path] = {"size": f.file_size}
    walk(None)
    with tempfile.TemporaryDirectory() as d:
        for p, v in list(out.items()):
            if v == "dir":
                continue
            local = download_fn(p, d)
            data = open(local, "rb").read()
            try:
                text = data.decode()
                for rx, rep in MASKS:
                    text = rx.sub(rep, text)
                v["text"] = text if len(text) < 4000 else hashlib.sha256(text.encode()).hexdigest()
                if any(rx.search(data.decode()) for rx, _ in MASKS):
                    v.pop("size")  # masked fields change the length
            except UnicodeDecodeError:
                v["sha256"] = hashlib.sha256(data).hexdigest()
    return out


def main():
    doc = {}
    exps = client.search_experiments(view_type=ViewType.ALL, max_results=1000)
    exps.sort(key=lambda e: (e.creation_time or 0, e.name))
    doc["experiments"] = [plain(e) for e in exps]
    ids = [e.experiment_id for e in exps]
    runs = client.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000,
                              order_by=["attributes.start_time ASC"])
    runs = sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_name or ""))
    doc["runs"] = []
    for r in runs:
        rid = r.info.run_id
        one = {"info": plain(r.info), "params": r.data.params, "tags": r.data.tags,
               "metrics": plain(r.data.metrics),
               "inputs": section(lambda: plain(r.inputs)),
               "outputs": section(lambda: plain(r.outputs))}
        one["history"] = {k: section(lambda k=k: [(m.step, plain(m.value)) for m in sorted(
            client.get_metric_history(rid, k), key=lambda m: (m.step, m.timestamp))])
            for k in sorted(r.data.metrics)}
        one["artifacts"] = section(lambda: artifacts(
            lambda p: client.list_artifacts(rid, p),
            lambda p, d: client.download_artifacts(rid, p, d)))
        doc["runs"].append(one)
    import mlflow
    models = section(lambda: client.search_logged_models(experiment_ids=ids, max_results=1000))
    if isinstance(models, dict):
        doc["logged_models"] = models
    else:
        models = sorted(models, key=lambda m: (m.creation_timestamp or 0, m.name))
        doc["logged_models"] = []
        for m in models:
            one = plain(m)
            one["artifacts"] = section(lambda m=m: artifacts(
                lambda p: mlflow.artifacts.list_artifacts(
                    artifact_uri=m.artifact_location + ("/" + p if p else "")),
                lambda p, d: mlflow.artifacts.download_artifacts(
                    artifact_uri=m.artifact_location + "/" + p, dst_path=d)))
            doc["logged_models"].append(one)
    regs = section(lambda: client.search_registered_models(max_results=1000))
    doc["registered_models"] = regs if isinstance(regs, dict) else sorted(
        (plain(m) for m in regs), key=lambda m: m["name"])
    vers = section(lambda: client.search_model_versions(max_results=1000))
    doc["model_versions"] = vers if isinstance(vers, dict) else sorted(
        (plain(v) for v in vers), key=lambda v: (v["name"], int(v["version"])))
    doc["observations"] = [json.loads(l[4:]) for l in open(sys.argv[1]) if l.startswith("OBS ")]
    # Ids in a canonical order of appearance, then everything normalised.
    order = []
    for e in exps:
        order.append(("exp", e.experiment_id))
    for r in runs:
        order.append(("run", r.info.run_id))
    if isinstance(models, list):
        for m in models:
            order.append(("model", m.model_id))
    names = {}
    counts = {}
    for kind, v in order:
        if v and (kind, v) not in names:
            counts[kind] = counts.get(kind, 0) + 1
            names[(kind, v)] = f"<{kind}:{counts[kind]}>"
    by_id = {v: n for (k, v), n in names.items()}
    long_ids = sorted((v for (k, v) in names if len(v) >= 8), key=len, reverse=True)
    rx = re.compile("|".join(re.escape(k) for k in long_ids)) if long_ids else None
    KEYED = {"experiment_id": "exp", "run_id": "run", "run_uuid": "run", "model_id": "model",
             "source_run_id": "run", "mlflow.parentRunId": "run", "parent_run_id": "run"}

    def ident(kind, v):
        return names.get((kind, v), v)

    def uri(x):
        x = re.sub(r"mlflow-artifacts:/([^/]+)/models/([^/]+)",
                   lambda m: f"mlflow-artifacts:/{ident('exp', m.group(1))}/models/{ident('model', m.group(2))}", x)
        x = re.sub(r"mlflow-artifacts:/([^/]+)/([^/]+)/artifacts",
                   lambda m: f"mlflow-artifacts:/{ident('exp', m.group(1))}/{ident('run', m.group(2))}/artifacts", x)
        x = re.sub(r"runs:/([^/]+)", lambda m: f"runs:/{ident('run', m.group(1))}", x)
        x = re.sub(r"models:/(m-[0-9a-f]+)", lambda m: f"models:/{ident('model', m.group(1))}", x)
        return x

    def norm(x, key=""):
        if isinstance(x, dict):
            return {norm_key(k): norm(v, k) for k, v in sorted(x.items())}
        if isinstance(x, list):
            return [norm(v, key) for v in x]
        if TIME_KEYS.search(key) and isinstance(x, (int, float, str)) and x not in (0, None, ""):
            return "<t>"
        if key in KEYED and isinstance(x, str) and (KEYED[key], x) in names:
            return names[(KEYED[key], x)]
        if key in ("run_name", "mlflow.runName", "name") and isinstance(x, str) and GENERATED.match(x):
            return "<generated>"
        if isinstance(x, str):
            x = uri(x)
            if rx:
                x = rx.sub(lambda m: by_id[m.group(0)], x)
            x = re.sub(r"m-[0-9a-f]{32}", "<model-id>", x)
            x = re.sub(r"/[^ ]*/mlflow_diff_work/[^/ ]*", "<workdir>", x)
        return x

    def norm_key(k):
        return rx.sub(lambda m: by_id[m.group(0)], k) if rx and isinstance(k, str) else k

    print(json.dumps(norm(doc), indent=1, sort_keys=True, default=str))


main()
