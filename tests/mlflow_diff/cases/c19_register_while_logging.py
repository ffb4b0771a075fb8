# log_model(registered_model_name=...) registers a version in one call, twice.
import mlflow
import numpy as np
from sklearn.linear_model import LinearRegression

mlflow.set_experiment("register-on-log")
for k in range(2):
    with mlflow.start_run():
        mlflow.sklearn.log_model(LinearRegression().fit(np.array([[0.0], [1.0]]), [0.0, k]),
                                 name="model", registered_model_name="auto-registered")
