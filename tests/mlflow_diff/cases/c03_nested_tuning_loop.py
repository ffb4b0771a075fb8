# The tutorial's tuning loop: a parent run with nested child runs, best child logged on the parent.
import mlflow

mlflow.set_experiment("tuning")
with mlflow.start_run(run_name="search") as parent:
    best = None
    for lr in [0.1, 0.01, 0.001]:
        with mlflow.start_run(run_name=f"lr={lr}", nested=True) as child:
            mlflow.log_param("lr", lr)
            score = 1 - abs(lr - 0.01)
            mlflow.log_metric("score", score)
            if best is None or score > best[0]:
                best = (score, lr)
    mlflow.log_metric("best_score", best[0])
    mlflow.log_param("best_lr", best[1])
