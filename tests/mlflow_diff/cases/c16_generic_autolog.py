# mlflow.autolog() with no run started: the fit starts and ends a run by itself.
import mlflow
from sklearn.datasets import load_diabetes
from sklearn.tree import DecisionTreeRegressor

mlflow.set_experiment("autolog-any")
mlflow.autolog()
X, y = load_diabetes(return_X_y=True)
DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y)
