# mlflow.sklearn.autolog(): params, training metrics, score(), model and datasets.
import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlflow.set_experiment("autolog")
mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=True)
X, y = load_iris(return_X_y=True)
with mlflow.start_run(run_name="logreg"):
    m = LogisticRegression(max_iter=200, C=0.5).fit(X, y)
    m.score(X, y)
