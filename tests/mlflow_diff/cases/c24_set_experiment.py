# set_experiment by name creates it once; by id; an experiment with its own tags set later.
import json
import mlflow

e1 = mlflow.set_experiment("made-by-name")
e2 = mlflow.set_experiment("made-by-name")
e3 = mlflow.set_experiment(experiment_id=e1.experiment_id)
mlflow.set_experiment_tag("purpose", "test")
mlflow.set_experiment_tags({"a": "1", "b": "2"})
with mlflow.start_run():
    mlflow.log_metric("m", 1)
print("OBS", json.dumps({"same": e1.experiment_id == e2.experiment_id == e3.experiment_id,
                         "tags": mlflow.get_experiment(e1.experiment_id).tags}))
