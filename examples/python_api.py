# %% [markdown]
# # torchyard from Python
#
# The same run as `torchyard run examples/digits.yaml`, from a notebook or a
# script: train a config, look at what it wrote, load the run and predict.
# Run it as a script (`python examples/python_api.py`) or cell by cell in
# Jupyter (the `# %%` markers are cells in VS Code and Jupytext).

# %%
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits

import torchyard

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path("examples").resolve()
OUT = Path(tempfile.mkdtemp(prefix="torchyard-api-"))

# %% [markdown]
# ## Train
#
# `train` takes a config file (or a dict) and `--set`-style overrides, and
# returns where the run went and how it did. Config mistakes raise
# `torchyard.ConfigError` with the CLI's one-line messages.

# %%
result = torchyard.train(
    HERE / "digits.yaml",
    out=OUT / "digits",
    overrides=["trainer.max_epochs=4", "trainer.progress=false"],
)
print(f"{result.monitor}: {result.best_value:.3f} at epoch {result.best_epoch}")
print("run directory:", result.run_dir)
print("submission:", result.submission)
for row in result.rows:
    print(row["epoch"], round(row["train/loss"], 4), round(row["val/accuracy"], 4))

# %% [markdown]
# ## Load the run and predict
#
# `load` rebuilds the model from the run's `config.yaml` and best checkpoint:
# no training data needed. `predict` takes a tensor batch, a Dataset or (for
# image datasets) a list of files.

# %%
predictor = torchyard.load(result.run_dir)
digits = load_digits()
images = torch.tensor(digits.images[:8], dtype=torch.float32).div(16).unsqueeze(1)  # as the dataset scales them
predictions = predictor.predict(images)
print("predicted:", predictions.label_names())
print("true:     ", digits.target[:8].tolist())
print("probabilities:", predictions.probabilities.shape)

# %%
correct = sum(int(p) == int(t) for p, t in zip(predictions.label_names(), digits.target[:8], strict=True))
print(f"{correct}/8 correct")
