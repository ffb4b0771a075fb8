# log_dict as JSON and YAML, log_text at a nested path, read back with load_dict / load_text.
import json
import mlflow

mlflow.set_experiment("files")
with mlflow.start_run() as run:
    mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")
    mlflow.log_dict({"name": "x", "n": 3}, "conf/config.yaml")
    mlflow.log_text("hello\nworld\n", "notes/readme.txt")
    u = run.info.artifact_uri
print("OBS", json.dumps({
    "json": mlflow.artifacts.load_dict(u + "/config.json"),
    "yaml": mlflow.artifacts.load_text(u + "/conf/config.yaml"),
    "text": mlflow.artifacts.load_text(u + "/notes/readme.txt"),
}))
