# search_runs over several experiments by name, with max_results and run_view_type.
import json
import mlflow
from mlflow.entities import ViewType

for name in ("left", "right"):
    mlflow.set_experiment(name)
    for i in range(2):
        with mlflow.start_run(run_name=f"{name}{i}"):
            mlflow.log_metric("v", i)
df = mlflow.search_runs(experiment_names=["left", "right"], order_by=["metrics.v DESC", "attributes.run_name ASC"])
runs = mlflow.search_runs(experiment_names=["left", "right"], output_format="list", max_results=3,
                          run_view_type=ViewType.ACTIVE_ONLY, order_by=["attributes.run_name DESC"])
print("OBS", json.dumps({"df": list(df["tags.mlflow.runName"]), "list": [r.info.run_name for r in runs]}))
