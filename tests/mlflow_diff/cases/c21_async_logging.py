# Asynchronous logging: synchronous=False calls and enable_async_logging, flushed at the end.
import mlflow

mlflow.set_experiment("async")
mlflow.config.enable_async_logging(True)
with mlflow.start_run():
    for i in range(50):
        mlflow.log_metric("m", i * 0.5, step=i)
    mlflow.log_param("p", "v")
    mlflow.set_tag("t", "u")
mlflow.config.enable_async_logging(False)
with mlflow.start_run():
    op = mlflow.log_metric("q", 1.0, synchronous=False)
    op.wait()
    mlflow.log_params({"a": 1, "b": 2}, synchronous=False).wait()
