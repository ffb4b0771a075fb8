# Metrics linked to a dataset and a model (MLflow 3), read back from the model.
import json
import pandas as pd
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("linked-metrics")
ds = mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2]}), name="holdout")
with mlflow.start_run():
    m = mlflow.initialize_logged_model(name="scored")
    mlflow.log_metric("auc", 0.75, model_id=m.model_id, dataset=ds)
    mlflow.log_metrics({"loss": 0.3}, model_id=m.model_id)
got = MlflowClient().get_logged_model(m.model_id)
print("OBS", json.dumps(sorted([(x.key, x.value, x.dataset_name) for x in got.metrics])))
