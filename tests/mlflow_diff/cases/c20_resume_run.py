# Resume a finished run by id, log more, end it again; a killed run; status while active.
import json
import mlflow

mlflow.set_experiment("resume")
with mlflow.start_run(run_name="resumable") as r:
    mlflow.log_metric("loss", 1.0, step=0)
with mlflow.start_run(run_id=r.info.run_id):
    mlflow.log_metric("loss", 0.5, step=1)
    status_inside = mlflow.get_run(r.info.run_id).info.status
with mlflow.start_run(run_name="killed"):
    mlflow.end_run(status="KILLED")
print("OBS", json.dumps({"inside": status_inside,
                         "after": mlflow.get_run(r.info.run_id).info.status}))
