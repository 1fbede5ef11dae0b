"""The package layout docs/architecture.md draws, checked on the imports themselves (ast): every sub-package imports
only the layers below it, the data layer knows nothing of configs, models, training or accelerate, and textssr's
top level holds sub-packages only."""
import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "textssr"

# Each sub-package and what it may import (besides itself). Bottom to top: utils; config and data; models, runtime
# and eval; generation; the four users (train, infer, synth, edit: it reads infer's config, so its settings); demo,
# which only runs the scripts.
ALLOWED = {
    "utils": set(),
    "config": {"utils"},
    "data": {"utils"},
    "models": {"utils", "config"},
    "runtime": {"utils", "config"},
    "eval": {"utils", "config", "data"},
    "generation": {"utils", "config", "data", "models", "runtime"},
    "train": {"utils", "config", "data", "models", "runtime"},
    "infer": {"utils", "config", "data", "models", "runtime", "eval", "generation"},
    "synth": {"utils", "config", "data", "models", "runtime", "eval", "generation"},
    "edit": {"utils", "config", "data", "models", "runtime", "eval", "generation", "infer"},  # infer's settings
    "str": {"utils", "config", "data", "models", "runtime", "eval", "generation", "synth"},  # reads STR LMDBs
    "demo": {"utils", "config", "data", "models", "str"},  # runs the scripts; the recogniser check reads their outputs
}
NO_ACCELERATE = {"utils", "config", "data", "models", "eval"}  # process groups belong to runtime and its users


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "textssr":
                yield from (f"textssr.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def package_imports():
    found = defaultdict(set)  # (importing package, imported package or "accelerate") -> files
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE:
            continue
        own = path.relative_to(PACKAGE).parts[0]
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "textssr" and len(parts) > 1 and parts[1] != own:
                found[own, parts[1]].add(path.relative_to(REPO).as_posix())
            elif parts[0] == "accelerate":
                found[own, "accelerate"].add(path.relative_to(REPO).as_posix())
    return found


def test_the_top_level_holds_sub_packages_only():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(packages) == set(ALLOWED)


def test_every_package_imports_only_the_layers_below_it():
    wrong = {f"{own} -> {other}": sorted(files) for (own, other), files in package_imports().items()
             if other != "accelerate" and other not in ALLOWED[own]}
    assert wrong == {}


def test_the_lower_layers_do_not_form_process_groups():
    wrong = {own: sorted(files) for (own, other), files in package_imports().items()
             if other == "accelerate" and own in NO_ACCELERATE}
    assert wrong == {}


def test_the_layers_form_no_cycle():
    graph = defaultdict(set)
    for own, other in package_imports():
        if other in ALLOWED:
            graph[own].add(other)

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, seen + (n,))) for n in graph[start])
    assert [p for p in ALLOWED if reaches(p, p)] == []


def test_the_diffusers_extension_knows_nothing_of_textssr():
    extension = REPO / "diffusers" / "src" / "diffusers_textssr"
    users = [p.name for p in extension.rglob("*.py") if any(m.split(".")[0] == "textssr" for m in imported_modules(p))]
    assert users == []
