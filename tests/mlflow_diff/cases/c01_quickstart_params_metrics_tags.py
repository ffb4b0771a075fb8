# MLflow's quickstart shape: a run with params, stepped metrics and tags.
import mlflow

mlflow.set_experiment("quickstart")
with mlflow.start_run(run_name="first"):
    mlflow.log_param("lr", 0.01)
    mlflow.log_params({"epochs": 3, "optimizer": "adam", "layers": [64, 32]})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
    mlflow.set_tag("team", "vision")
    mlflow.set_tags({"stage": "dev", "owner": "ana"})
