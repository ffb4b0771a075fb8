# Runs: delete, restore, search by view type, delete a tag, end with a status.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

c = MlflowClient()
e = c.create_experiment("lifecycle")
runs = [c.create_run(e, run_name=f"r{i}", tags={"i": str(i)}) for i in range(3)]
c.set_terminated(runs[0].info.run_id, "FINISHED")
c.set_terminated(runs[1].info.run_id, "FAILED")
c.delete_run(runs[2].info.run_id)
c.set_tag(runs[0].info.run_id, "temp", "1")
c.delete_tag(runs[0].info.run_id, "temp")
obs = {
    "active": sorted(r.info.run_name for r in c.search_runs([e])),
    "deleted": [r.info.run_name for r in c.search_runs([e], run_view_type=ViewType.DELETED_ONLY)],
    "stage": c.get_run(runs[2].info.run_id).info.lifecycle_stage,
}
c.restore_run(runs[2].info.run_id)
obs["restored"] = c.get_run(runs[2].info.run_id).info.lifecycle_stage
obs["all"] = sorted(r.info.run_name for r in c.search_runs([e], run_view_type=ViewType.ALL))
print("OBS", json.dumps(obs))
