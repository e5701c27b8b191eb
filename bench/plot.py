"""Throughput vs N per implementation, one panel per kernel (float32)."""

from __future__ import annotations


def throughput_png(rows: list[dict], path: str, dtype: str = "float32") -> bool:
    """Writes the figure (float32 rows, or the dtype that was measured);
    returns False when matplotlib is not installed or there is nothing to draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not any(r["dtype"] == dtype for r in rows) and rows:
        dtype = rows[0]["dtype"]
    rows = [r for r in rows if r["dtype"] == dtype]
    kernels = list(dict.fromkeys(r["kernel"] for r in rows))
    if not kernels:
        return False
    cols = min(4, len(kernels))
    n_rows = (len(kernels) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.4 * n_rows + 0.8), squeeze=False, sharey=True)
    # One fixed style per implementation, so a panel without torch's fused
    # version does not shift the colours of the others.
    styles = {"fastopt": ("-o", "tab:blue"), "roofline": ("--", "black"), "reference": ("-s", "tab:orange"),
              "numpy_out": ("-^", "tab:green"), "torch_fused": ("-D", "tab:red"),
              "torch_foreach": ("-v", "tab:purple")}
    for ax, kernel in zip(axes.flat, kernels):
        krows = sorted((r for r in rows if r["kernel"] == kernel), key=lambda r: r["n"])
        for impl, (style, color) in styles.items():
            pts = [(r["n"], r["bytes"] / r["seconds"][impl] / 1e9) for r in krows if r["seconds"].get(impl)]
            if pts:
                ax.plot(*zip(*pts), style, color=color, label=impl, markersize=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(kernel)
        ax.set_xlabel("N (elements)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("GB/s of step traffic")
    for ax in list(axes.flat)[len(kernels):]:
        ax.axis("off")
    handles, labels = {}, {}
    for ax in axes.flat:  # the union of every panel's lines
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    handles, labels = list(handles.values()), list(handles.keys())
    fig.legend(handles, labels, loc="lower right", ncol=2, frameon=False)
    fig.suptitle(f"Optimizer step throughput ({dtype}; bytes a fused pass moves / median step time)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
