# Paging through search_runs as a list with max_results and page tokens.
import json
import mlflow
from mlflow import MlflowClient

c = MlflowClient()
e = c.create_experiment("pages")
for i in range(7):
    r = c.create_run(e, run_name=f"p{i}")
    c.log_metric(r.info.run_id, "i", i)
names, token, pages = [], None, 0
while True:
    page = c.search_runs([e], max_results=3, page_token=token, order_by=["metrics.i ASC"])
    names += [r.info.run_name for r in page]
    pages += 1
    token = page.token
    if not token:
        break
print("OBS", json.dumps({"names": names, "pages": pages}))
