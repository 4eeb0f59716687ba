"""
============================================
Pipeline and grid search over ``latent_dim``
============================================

:class:`~sklearn_walloc.WallocTransformer` is a scikit-learn transformer: it goes
into a :class:`~sklearn.pipeline.Pipeline`, and its parameters are searched like
any other. Here it reduces the 8x8 digits of
:func:`~sklearn.datasets.load_digits` before a logistic regression, and
:class:`~sklearn.model_selection.GridSearchCV` picks how many latent channels to
keep.

The digits come as flat rows of 64 values; ``signal_shape=(8, 8)`` says how to
read a row. With ``levels=1`` each 2x2 block becomes 4 wavelet packet
coefficients, and ``latent_dim`` of them are kept, so the reduction is
``4 / latent_dim``. ``max_iter=0`` keeps the closed form (a PCA of the wavelet
packet coefficients, fitted in a fraction of a second), which is what a grid
search over many folds can afford on a CPU.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_walloc import WallocTransformer

X, y = load_digits(return_X_y=True)
walloc = WallocTransformer(signal_shape=(8, 8), levels=1, max_iter=0, random_state=0)
pipe = make_pipeline(walloc, StandardScaler(), LogisticRegression(max_iter=2000))
grid = {"walloctransformer__latent_dim": [1, 2, 3, 4]}
search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
print("best:", search.best_params_, f"accuracy {search.best_score_:.3f}")

# %%
# The accuracy against the number of values the classifier sees. With
# ``latent_dim=4`` nothing is dropped (the transform is only rotated and
# quantised); every channel less is a coarser summary of each 2x2 block.
dims = np.array(grid["walloctransformer__latent_dim"])
mean = search.cv_results_["mean_test_score"]
std = search.cv_results_["std_test_score"]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.errorbar(dims * 16, mean, yerr=std, marker="o", capsize=3)
ax.set_xlabel("values per image (16 positions x latent_dim)")
ax.set_ylabel("3-fold accuracy")
ax.set_title("Digits: WaLLoC + logistic regression")
fig.tight_layout()

# %%
# The transformer works on its own as well: the latents of a digit are a 4x4
# grid of ``latent_dim`` integer channels (flattened in the flat form), and
# ``inverse_transform`` reconstructs. Here are the first digits through models
# that keep 1, 2 and 3 of the 4 values of each 2x2 block.
best = search.best_estimator_[0]
rows = {"original": X[:6]}
for d in (1, 2, 3):
    model = clone(best).set_params(latent_dim=d).fit(X)
    Z = model.transform(X[:6])
    rows[f"latent_dim={d} ({Z.shape[1]} values)"] = model.inverse_transform(Z)
fig, axes = plt.subplots(len(rows), 6, figsize=(7, 1.3 * len(rows) + 0.3))
for (title, images), ax_row in zip(rows.items(), axes):
    for x, ax in zip(images, ax_row):
        ax.imshow(x.reshape(8, 8), cmap="gray_r")
        ax.set_axis_off()
    ax_row[0].set_title(title, loc="left", fontsize=9)
fig.tight_layout()
