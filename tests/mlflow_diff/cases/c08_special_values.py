# NaN, ±Inf, huge and tiny floats, negative steps, unicode params and tags.
import math
import mlflow

mlflow.set_experiment("values")
with mlflow.start_run(run_name="values"):
    mlflow.log_metric("nan", math.nan)
    mlflow.log_metric("pinf", math.inf)
    mlflow.log_metric("ninf", -math.inf)
    mlflow.log_metric("huge", 1.5e308)
    mlflow.log_metric("tiny", 5e-324)
    mlflow.log_metric("neg_step", 1.0, step=-3)
    mlflow.log_metric("big_step", 2.0, step=2**40)
    mlflow.log_param("名前", "値 ✓")
    mlflow.log_param("empty", "")
    mlflow.set_tag("emoji", "🚀 launch")
    mlflow.log_param("long", "x" * 5000)
