# log_image from numpy arrays and PIL, at a path and as a stepped image series.
import numpy as np
from PIL import Image
import mlflow

mlflow.set_experiment("images")
img = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
with mlflow.start_run():
    mlflow.log_image(img, "images/grid.png")
    mlflow.log_image(Image.fromarray(img), "images/pil.png")
