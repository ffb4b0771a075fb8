# search_runs as a DataFrame: filters on metrics, params, tags and attributes; order_by.
import json
import mlflow

mlflow.set_experiment("search")
for i, (lr, opt) in enumerate([(0.1, "sgd"), (0.01, "adam"), (0.001, "adam"), (0.05, "sgd")]):
    with mlflow.start_run(run_name=f"run-{i}"):
        mlflow.log_params({"lr": lr, "opt": opt})
        mlflow.log_metric("acc", 0.5 + i / 10)
        mlflow.set_tag("parity", "even" if i % 2 == 0 else "odd")
q = {
    "acc_gt": "metrics.acc > 0.65",
    "adam": "params.opt = 'adam'",
    "even": "tags.parity = 'even'",
    "name": "attributes.run_name = 'run-2'",
    "name_like": "attributes.run_name LIKE 'run-%' and metrics.acc <= 0.6",
    "status": "attributes.status = 'FINISHED' and params.lr != '0.1'",
}
obs = {}
for k, f in q.items():
    df = mlflow.search_runs(filter_string=f, order_by=["metrics.acc DESC"])
    obs[k] = list(df["tags.mlflow.runName"])
df = mlflow.search_runs(order_by=["params.lr ASC"])
obs["by_lr"] = list(df["params.lr"])
obs["columns"] = sorted(c for c in df.columns if not c.startswith("tags.mlflow.source") and c != "tags.mlflow.user")
print("OBS", json.dumps(obs))
