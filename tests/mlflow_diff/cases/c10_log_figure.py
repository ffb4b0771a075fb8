# log_figure with matplotlib (PNG and SVG).
import matplotlib
matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "labhost"  # the same SVG ids on every run
import matplotlib.pyplot as plt
import mlflow

mlflow.set_experiment("figures")
fig, ax = plt.subplots()
ax.plot([0, 1, 2], [2, 1, 3])
with mlflow.start_run():
    mlflow.log_figure(fig, "plots/line.png")
    mlflow.log_figure(fig, "plots/line.svg")
