"""Report plots: confusion matrix, training curves and reliability diagram, as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fashion_classifier.config import CLASS_NAMES  # noqa: E402
from fashion_classifier.training.calibration import ece_of_bins  # noqa: E402


def plot_confusion(confusion: list[list[int]], path: Path, title: str) -> None:
    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(7.5, 6.5), dpi=100)
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > threshold else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_history(history: dict[str, list[float]], path: Path, title: str) -> None:
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    epochs = range(1, len(history.get("loss", [])) + 1)
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, history.get(key, []), marker="o", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label="test (monitoring only)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(before: list[dict], after: list[dict], path: Path, title: str) -> None:
    """Reliability diagram before and after temperature scaling, from ``reliability_bins`` rows.

    Bars are each bin's accuracy, the diagonal is perfect calibration, and the ECE of each side
    is in its panel's title.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), dpi=100, sharey=True)
    for ax, rows, name in ((axes[0], before, "before"), (axes[1], after, "after temperature scaling")):
        filled = [row for row in rows if row["count"]]
        ece = ece_of_bins(rows)
        lowers = [row["lower"] for row in filled]
        widths = [row["upper"] - row["lower"] for row in filled]
        ax.bar(
            lowers,
            [row["accuracy"] for row in filled],
            width=widths,
            align="edge",
            color="tab:blue",
            edgecolor="white",
            label="accuracy",
        )
        ax.bar(
            lowers,
            [row["confidence"] - row["accuracy"] for row in filled],
            width=widths,
            align="edge",
            bottom=[row["accuracy"] for row in filled],
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)")
        ax.set_title(f"{name} (ECE {ece:.4f})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
