"""Plot the tiny-demo recipe experiments: imgs/recipes.png from imgs/recipes.json.

    python imgs/plot_recipes.py [--data imgs/recipes.json] [--out imgs/recipes.png]

Each entry of recipes.json is one recipe tried for the tiny demo : its name, what changed, the training
time of its three stages on the 2-core CI machine (seconds, as if run alone) and the PP-OCRv4 Sen.ACC / NED of its
synthesized bench crops. The README's results table lists the same entries.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def draw(recipes: list, out: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, key, label in ((axes[0], "sen_acc", "Sen.ACC"), (axes[1], "ned", "NED")):
        curve_colours = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan",
                              "tab:gray", "tab:red"] * 4)  # blue and green mark single runs
        for k, recipe in enumerate(recipes):
            if "curve" in recipe:  # a learning curve: [[seconds, sen_acc, ned], ...]
                points = recipe["curve"]
                ax.plot([p[0] / 60 for p in points], [p[1 if key == "sen_acc" else 2] for p in points], "o-",
                        color=next(curve_colours), markersize=4, label=recipe["name"], zorder=2)
                continue
            final = recipe.get("final", False)
            x, y = recipe["train_seconds"] / 60, recipe[key]
            ax.scatter(x, y, s=60 if final else 30, color="tab:green" if final else "tab:blue", zorder=3)
            ax.annotate(recipe["name"].split()[0], (x, y), textcoords="offset points",
                        xytext=(5, 6 if k % 2 else -11), fontsize=8)
        ax.set_xlabel("training time of the three stages on 2 CPU cores (min)")
        ax.set_ylabel(f"{label} of PP-OCRv4 on synthesized bench crops")
        ax.set_ylim(-0.03, 1.0)
        ax.grid(alpha=0.3)
        if any("curve" in r for r in recipes):
            ax.legend(fontsize=8, loc="upper left")
    axes[0].axhline(0.30, color="tab:red", linestyle="--", linewidth=1)
    axes[0].text(0.2, 0.32, "target: Sen.ACC ≥ 0.30", color="tab:red", fontsize=8)
    axes[0].set_xlim(0, max(max([r.get("train_seconds", 0)] + [p[0] for p in r.get("curve", [])])
                            for r in recipes) / 60 * 1.1)
    figure.suptitle("Tiny-demo recipes (81 bench words unseen in training; README, Results)")
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "imgs" / "recipes.json")
    parser.add_argument("--out", type=Path, default=REPO / "imgs" / "recipes.png")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"error: {args.data} not found: pass --data")
    draw(json.loads(args.data.read_text(encoding="utf-8")), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
