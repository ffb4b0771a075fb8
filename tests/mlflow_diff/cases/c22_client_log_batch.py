# MlflowClient.log_batch with metrics, params and tags at once; large batches.
import time
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

c = MlflowClient()
e = c.create_experiment("batch")
r = c.create_run(e, run_name="batched")
now = int(time.time() * 1000)
c.log_batch(r.info.run_id,
            metrics=[Metric("m%d" % (i % 5), float(i), now, i) for i in range(900)],
            params=[Param("p%d" % i, str(i)) for i in range(90)],
            tags=[RunTag("t%d" % i, "v") for i in range(10)])
c.set_terminated(r.info.run_id)
