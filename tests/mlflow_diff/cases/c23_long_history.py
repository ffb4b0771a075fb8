# A metric of 3,000 points read back whole with get_metric_history; several values per step.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric

mlflow.set_experiment("history")
with mlflow.start_run() as run:
    for i in range(0, 3000, 300):
        mlflow.log_metrics({"long": i}, step=i)
    MlflowClient().log_batch(run.info.run_id, metrics=[
        Metric("dense", float(i), 1000 + i, i) for i in range(3000)])
    mlflow.log_metric("same_step", 1.0, step=5)
    mlflow.log_metric("same_step", 2.0, step=5)
h = MlflowClient().get_metric_history(run.info.run_id, "dense")
print("OBS", json.dumps({"n": len(h), "last": h[-1].value, "steps_sorted": [m.step for m in h] == sorted(m.step for m in h)}))
