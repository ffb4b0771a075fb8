# What errors the client sees: missing run, duplicate experiment, changed param, bad metric.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

c = MlflowClient()
obs = {}
def code(f):
    try:
        f()
        return "ok"
    except MlflowException as e:
        return e.error_code
e = c.create_experiment("errors")
r = c.create_run(e)
c.log_param(r.info.run_id, "p", "1")
obs["missing_run"] = code(lambda: c.get_run("0123456789abcdef0123456789abcdef"))
obs["duplicate_exp"] = code(lambda: c.create_experiment("errors"))
obs["changed_param"] = code(lambda: c.log_param(r.info.run_id, "p", "2"))
obs["same_param"] = code(lambda: c.log_param(r.info.run_id, "p", "1"))
obs["missing_exp"] = code(lambda: c.get_experiment("987654"))
obs["missing_by_name"] = c.get_experiment_by_name("nope") is None
obs["bad_filter"] = code(lambda: c.search_runs([e], filter_string="metrics.x >>> 1"))
obs["missing_model"] = code(lambda: c.get_registered_model("no-such-model"))
print("OBS", json.dumps(obs))
