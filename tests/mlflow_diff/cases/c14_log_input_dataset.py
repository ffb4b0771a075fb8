# log_input: a pandas dataset with a context tag, returned in run.inputs; filter by dataset.
import json
import pandas as pd
import mlflow

mlflow.set_experiment("datasets")
df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
ds = mlflow.data.from_pandas(df, source="file:///data/train.csv", name="train", targets="y")
with mlflow.start_run(run_name="with-data") as run:
    mlflow.log_input(ds, context="training", tags={"split": "a"})
    ev = mlflow.data.from_pandas(df.head(2), name="eval")
    mlflow.log_input(ev, context="eval")
with mlflow.start_run(run_name="without"):
    pass
got = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
found = mlflow.search_runs(filter_string="dataset.name = 'train'")
print("OBS", json.dumps({
    "names": sorted(d.dataset.name for d in got),
    "found": list(found["tags.mlflow.runName"]),
}))
