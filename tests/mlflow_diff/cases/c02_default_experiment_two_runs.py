# No experiment set: runs go to experiment 0 "Default"; two runs, one after the other.
import mlflow

with mlflow.start_run():
    mlflow.log_metric("x", 1)
with mlflow.start_run(run_name="second"):
    mlflow.log_metric("x", 2)
print("OBS", '{"active": %s}' % ("true" if mlflow.active_run() else "false"))
