# MLflow 3 logged models by hand: initialize, params, tags, metrics linked, finalize, search, delete.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

mlflow.set_experiment("logged-models")
c = MlflowClient()
with mlflow.start_run() as run:
    m = mlflow.initialize_logged_model(name="hand-made", params={"depth": "3"}, tags={"kind": "tree"})
    mlflow.log_metric("accuracy", 0.91, model_id=m.model_id)
    mlflow.set_logged_model_tags(m.model_id, {"reviewed": "yes"})
    mlflow.log_model_params({"extra": "1"}, model_id=m.model_id)
    mlflow.finalize_logged_model(m.model_id, LoggedModelStatus.READY)
    other = mlflow.create_external_model(name="external", tags={"where": "s3"})
mlflow.delete_logged_model_tag(m.model_id, "kind")
got = c.get_logged_model(m.model_id)
found = mlflow.search_logged_models(filter_string="metrics.accuracy > 0.9", output_format="list")
c.delete_logged_model(other.model_id)
print("OBS", json.dumps({"status": str(got.status), "tags": got.tags, "params": got.params,
                         "metrics": [(x.key, x.value) for x in got.metrics or []],
                         "found": [x.name for x in found]}))
