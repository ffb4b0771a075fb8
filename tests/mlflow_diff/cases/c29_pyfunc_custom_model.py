# A custom pyfunc model with an artifact, logged and loaded back through runs:/.
import json
import os
import tempfile
import mlflow
import pandas as pd


class AddN(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.n = int(open(context.artifacts["n"]).read())

    def predict(self, context, model_input, params=None):
        return model_input.apply(lambda c: c + self.n)


mlflow.set_experiment("pyfunc")
f = os.path.join(tempfile.mkdtemp(), "n.txt")
open(f, "w").write("5")
with mlflow.start_run() as run:
    mlflow.pyfunc.log_model(name="adder", python_model=AddN(), artifacts={"n": f})
m = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/adder")
print("OBS", json.dumps({"pred": m.predict(pd.DataFrame({"x": [1, 2]}))["x"].tolist()}))
