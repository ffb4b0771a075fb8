# Runs of a deleted experiment: get_run still works, search in the experiment shows them as deleted.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

c = MlflowClient()
e = c.create_experiment("doomed")
r = c.create_run(e, run_name="inside")
c.delete_experiment(e)
obs = {"stage": c.get_run(r.info.run_id).info.lifecycle_stage,
       "exp": c.get_experiment(e).lifecycle_stage,
       "all": [x.name for x in c.search_experiments(view_type=ViewType.ALL, order_by=["name ASC"])]}
print("OBS", json.dumps(obs))
