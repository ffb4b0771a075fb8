# Experiments: create with tags, set a tag, rename, delete, restore, search with order_by.
import json
import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

c = MlflowClient()
a = c.create_experiment("alpha", tags={"project": "x", "version": "1"})
b = c.create_experiment("beta")
g = c.create_experiment("gamma")
c.set_experiment_tag(b, "note", "renamed soon")
c.rename_experiment(b, "beta-renamed")
c.delete_experiment(g)
obs = {
    "active": [e.name for e in c.search_experiments(order_by=["name DESC"])],
    "deleted": [e.name for e in c.search_experiments(view_type=ViewType.DELETED_ONLY)],
    "by_tag": [e.name for e in c.search_experiments(filter_string="tags.project = 'x'")],
    "like": [e.name for e in c.search_experiments(filter_string="name LIKE 'beta%'")],
    "gamma_stage": c.get_experiment(g).lifecycle_stage,
}
c.restore_experiment(g)
obs["restored"] = c.get_experiment_by_name("gamma").lifecycle_stage
obs["alpha_tags"] = c.get_experiment(a).tags
print("OBS", json.dumps(obs))
