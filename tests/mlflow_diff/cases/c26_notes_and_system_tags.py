# The run description (mlflow.note.content) and set_terminated with an end time.
import mlflow

mlflow.set_experiment("notes")
with mlflow.start_run(description="a **markdown** note"):
    mlflow.set_tag("mlflow.note.content", "replaced note")
