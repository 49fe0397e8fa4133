"""Imports go one way: nodes -> pipeline -> stages -> arch / runtime, and training beside nodes.

Read from the source with ``ast`` (nothing is imported), relative imports resolved, imports
inside functions included: a lazy import still couples two layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the layers under oldphoto_core that nothing above them may be imported by
RUNTIME = ("runtime", "io", "errors")
UPPER = ("pipeline", "models", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[tuple[str, bool]]:
    """``(absolute module, at module level)`` for every import in ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    top_level = {id(node) for node in tree.body}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, id(node) in top_level) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            found.add((name, id(node) in top_level))
    return found


def _modules(folder: str) -> dict[str, set[tuple[str, bool]]]:
    return {_module_name(p): _imports(p) for p in (REPO / folder).rglob("*.py")}


def _violations(modules, forbidden) -> list[str]:
    return sorted(f"{mod} imports {name}" for mod, names in modules.items()
                  for name, _ in names if any(name == f or name.startswith(f + ".")
                                              for f in forbidden(mod)))


def test_the_engine_never_imports_nodes_training_or_comfyui():
    core = _modules("oldphoto_core")
    assert not _violations(core, lambda m: ("nodes", "training", "comfy", "folder_paths",
                                            "server", "execution"))
    # Ray only in the Ray engine, and only inside functions (``import oldphoto_core`` stays
    # free of it)
    assert not sorted(f"{m} imports ray" for m, names in core.items() for n, top in names
                      if (n == "ray" or n.startswith("ray.")) and
                      (top or m != "oldphoto_core.cli.ray_engine"))


def test_networks_and_runtime_import_nothing_above_them():
    core = _modules("oldphoto_core")
    above_arch = [f"oldphoto_core.{m}" for m in (*UPPER, "stages", "faces", "loading",
                                                 "registry", "degrade", "io")]
    assert not _violations({m: n for m, n in core.items() if m.startswith("oldphoto_core.arch")},
                           lambda m: above_arch)
    runtime = {m: n for m, n in core.items()
               if m.removeprefix("oldphoto_core.").split(".")[0] in RUNTIME}
    assert not _violations(runtime, lambda m: [f"oldphoto_core.{u}" for u in
                                               (*UPPER, "stages", "faces", "arch")])
    stages = {m: n for m, n in core.items() if m.startswith("oldphoto_core.stages")}
    assert not _violations(stages, lambda m: [f"oldphoto_core.{u}" for u in UPPER])


def test_nodes_and_training_do_not_import_each_other():
    assert not _violations(_modules("nodes"), lambda m: ("training",))
    assert not _violations(_modules("training"), lambda m: ("nodes", "comfy", "folder_paths"))


def test_the_reader_resolves_relative_and_lazy_imports():
    blocks = _imports(REPO / "oldphoto_core" / "arch" / "blocks.py")
    assert ("oldphoto_core.runtime.numerics", True) in blocks  # from ..runtime.numerics import ...
    cli = _imports(REPO / "oldphoto_core" / "cli" / "commands.py")
    assert ("oldphoto_core.cli.restore", False) in cli         # imported inside a function
    assert _violations({"x": {("oldphoto_core.pipeline.sub", True)}},
                       lambda m: ("oldphoto_core.pipeline",)) == [
        "x imports oldphoto_core.pipeline.sub"]
