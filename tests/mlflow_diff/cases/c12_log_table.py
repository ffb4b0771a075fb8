# log_table from a dict and a DataFrame, appended to, then load_table.
import json
import pandas as pd
import mlflow

mlflow.set_experiment("tables")
with mlflow.start_run() as run:
    mlflow.log_table({"q": ["a", "b"], "score": [1, 2]}, artifact_file="eval.json")
    mlflow.log_table(pd.DataFrame({"q": ["c"], "score": [3]}), artifact_file="eval.json")
df = mlflow.load_table("eval.json", run_ids=[run.info.run_id])
print("OBS", json.dumps({"rows": df[["q", "score"]].to_dict("records")}))
