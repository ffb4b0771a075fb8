# log_model then load it through runs:/ and models:/<model_id>; predictions must agree.
import json
import mlflow
import numpy as np
from sklearn.linear_model import LinearRegression

mlflow.set_experiment("models")
X = np.array([[0.0], [1.0], [2.0]])
m = LinearRegression().fit(X, [1.0, 3.0, 5.0])
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(m, name="model", input_example=X[:1])
    mlflow.log_metric("r2", 1.0)
a = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model").predict([[3.0]])
b = mlflow.pyfunc.load_model(f"models:/{info.model_id}").predict(np.array([[4.0]]))
print("OBS", json.dumps({"runs": [round(float(v), 6) for v in a], "models": [round(float(v), 6) for v in b],
                         "model_uri": info.model_uri.replace(info.model_id, "<id>"),
                         "name": info.name}))
