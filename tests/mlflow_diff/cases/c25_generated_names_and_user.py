# Runs created without a name get a generated one; set_tag('mlflow.runName') renames.
import json
import re
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("names")
with mlflow.start_run() as r:
    name = r.info.run_name
c = MlflowClient()
r2 = c.create_run(mlflow.get_experiment_by_name("names").experiment_id)
c.set_tag(r2.info.run_id, "mlflow.runName", "renamed")
c.update_run(r2.info.run_id, status="FINISHED", name="renamed-again")
print("OBS", json.dumps({"generated": bool(re.match(r"^[a-z]+-[a-z]+-\d+$", name)),
                         "renamed": c.get_run(r2.info.run_id).info.run_name}))
