# The model registry: register from a run, versions, aliases, tags, descriptions, search,
# get_latest_versions, stages, loading by version and alias, deleting a version.
import json
import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LinearRegression

mlflow.set_experiment("registry")
c = MlflowClient()
X = np.array([[0.0], [1.0]])
uris = []
for k in (1, 2):
    with mlflow.start_run(run_name=f"fit{k}"):
        info = mlflow.sklearn.log_model(LinearRegression().fit(X, [0.0, k]), name="model")
        uris.append(info.model_uri)
v1 = mlflow.register_model(uris[0], "iris-model", tags={"t": "1"})
v2 = mlflow.register_model(uris[1], "iris-model")
c.update_registered_model("iris-model", description="a line")
c.set_registered_model_tag("iris-model", "task", "regression")
c.set_registered_model_alias("iris-model", "champion", v2.version)
c.set_model_version_tag("iris-model", v1.version, "validated", "yes")
c.update_model_version("iris-model", v1.version, description="first")
c.transition_model_version_stage("iris-model", v1.version, "Staging")
c.create_registered_model("empty-model", tags={"k": "v"}, description="nothing yet")
obs = {
    "versions": [v1.version, v2.version],
    "by_alias": c.get_model_version_by_alias("iris-model", "champion").version,
    "latest": sorted((v.version, v.current_stage) for v in c.get_latest_versions("iris-model")),
    "search": [m.name for m in c.search_registered_models(filter_string="name LIKE 'iris%'")],
    "search_versions": [v.version for v in c.search_model_versions("name='iris-model'")],
    "pred_v1": float(mlflow.pyfunc.load_model("models:/iris-model/1").predict(np.array([[1.0]]))[0]),
    "pred_alias": float(mlflow.pyfunc.load_model("models:/iris-model@champion").predict(np.array([[1.0]]))[0]),
    "download_uri": c.get_model_version_download_uri("iris-model", "1").split("/")[-1],
}
c.delete_registered_model_alias("iris-model", "champion")
c.delete_model_version_tag("iris-model", v1.version, "validated")
c.delete_model_version("iris-model", v2.version)
c.rename_registered_model("empty-model", "renamed-model")
c.delete_registered_model_tag("renamed-model", "k")
print("OBS", json.dumps(obs))
