"""Plot the tiny-demo recipe experiments: imgs/recipes.png from imgs/recipes.json.

    python imgs/plot_recipes.py [--data imgs/recipes.json] [--out imgs/recipes.png]

Each entry of recipes.json is one recipe tried for the tiny demo (issue 7): its name, what changed, the training
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
    figure, ax = plt.subplots(figsize=(7.5, 4.2))
    for recipe in recipes:
        minutes = recipe["train_seconds"] / 60
        final = recipe.get("final", False)
        ax.scatter(minutes, recipe["sen_acc"], s=70 if final else 40, color="tab:green" if final else "tab:blue",
                   zorder=3)
        ax.annotate(recipe["name"], (minutes, recipe["sen_acc"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.axhline(0.30, color="tab:red", linestyle="--", linewidth=1)
    ax.text(0.2, 0.31, "issue 7 target: Sen.ACC ≥ 0.30", color="tab:red", fontsize=8)
    ax.set_xlabel("training time of the three stages on 2 CPU cores (min)")
    ax.set_ylabel("Sen.ACC of PP-OCRv4 on synthesized bench crops")
    ax.set_ylim(-0.03, 1.0)
    ax.set_xlim(0, max(r["train_seconds"] for r in recipes) / 60 * 1.25)
    ax.grid(alpha=0.3)
    ax.set_title("Tiny-demo recipes (81 bench words, unseen in training)")
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
