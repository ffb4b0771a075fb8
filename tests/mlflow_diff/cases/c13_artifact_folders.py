# log_artifact, log_artifacts of a folder tree, list_artifacts at depth, download_artifacts.
import json
import os
import tempfile
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("artifacts")
d = tempfile.mkdtemp()
os.makedirs(os.path.join(d, "a", "b"))
for p, t in [("top.txt", "top"), ("a/one.txt", "one"), ("a/b/two.txt", "two")]:
    open(os.path.join(d, p), "w").write(t)
with mlflow.start_run() as run:
    mlflow.log_artifacts(d, artifact_path="tree")
    mlflow.log_artifact(os.path.join(d, "top.txt"))
    mlflow.log_artifact(os.path.join(d, "a", "one.txt"), artifact_path="x/y")
c = MlflowClient()
rid = run.info.run_id
out = tempfile.mkdtemp()
local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="tree/a", dst_path=out)
files = sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs)
print("OBS", json.dumps({
    "root": [(f.path, f.is_dir) for f in c.list_artifacts(rid)],
    "tree": [(f.path, f.is_dir, f.file_size) for f in c.list_artifacts(rid, "tree")],
    "deep": [(f.path, f.is_dir, f.file_size) for f in c.list_artifacts(rid, "tree/a/b")],
    "missing": [f.path for f in c.list_artifacts(rid, "nope")],
    "downloaded": files,
}))
