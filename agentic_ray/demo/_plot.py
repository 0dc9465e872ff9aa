"""Latency CDF plots of live runs (needs matplotlib, the ``bench`` extra)."""

from __future__ import annotations

__all__ = ["plot_cdfs"]


def plot_cdfs(latencies: dict[str, dict[str, list[float]]], out_path: str, title: str = "") -> None:
    """Draw one empirical CDF per (path, class) of completed-request latency (log x axis) to ``out_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"agentic": "-", "default": "--"}
    for path, classes in latencies.items():
        for qos, values in sorted(classes.items()):
            if not values:
                continue
            xs = sorted(values)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", linestyle=styles.get(path, ":"), label=f"{path} / {qos}")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, completed requests)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
