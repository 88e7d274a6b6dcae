"""The package layout is the architecture: each package of `vibe` says in its docstring what lives there, imports go
only to its own layer or below, and the serving path never loads training code."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import REPO

# lowest first; a module may import its own package and any package of a lower layer, nothing else
LAYERS = [["errors"], ["config", "util"], ["catalog"], ["locate"], ["models"], ["store"], ["search"], ["eval"],
          ["build"], ["qa", "explore", "train", "serve"], ["bench"], ["cli"], ["__main__"]]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _edges():
    """(importing module, its top-level unit, the imported module) for every relative import in vibe/, at the top of
    a file or inside a function."""
    for path in (REPO / "vibe").rglob("*.py"):
        rel = path.relative_to(REPO / "vibe").with_suffix("")
        package = list(rel.parts[:-1])
        unit = rel.parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module.split(".") if node.module else [])]
                targets = [target] if node.module else [[*target, a.name] for a in node.names]
                for t in targets:
                    yield ".".join(rel.parts), unit, ".".join(t)


def test_every_package_says_what_lives_there():
    packages = [p for p in (REPO / "vibe").iterdir() if p.is_dir() and not p.name.startswith("__")]
    assert {p.name for p in packages} == {n for names in LAYERS for n in names if (REPO / "vibe" / n).is_dir()}
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"vibe/{package.name}/__init__.py needs a docstring saying what lives there"
        for module in package.glob("*.py"):
            assert ast.get_docstring(ast.parse(module.read_text())), f"{module} has no module docstring"


def test_nothing_imports_upward():
    upward = []
    for module, unit, target in _edges():
        src, dst = unit, target.split(".")[0]
        if src == "__init__" or dst == "__version__" or src == dst:  # vibe/__init__: the public API's lazy names
            continue
        if LAYER[dst] >= LAYER[src]:
            upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_module_import_cycles():
    graph: dict[str, set[str]] = {}
    for module, _, target in _edges():
        graph.setdefault(module.removesuffix(".__init__"), set()).add(target)

    def visit(node, stack):
        assert node not in stack, " -> ".join([*stack, node])
        for dep in graph.get(node, ()):
            visit(dep, [*stack, node])

    for module in list(graph):
        visit(module, [])


def test_the_serving_path_never_loads_training_or_build_code():
    code = ("import sys\nfrom vibe import Encoder\nimport vibe.search.bundle, vibe.search.matcher, vibe.search.batch\n"
            "import vibe.serve.app, vibe.serve.state\n"
            "enc = Encoder('vibe-mini')\nenc.encode_query('data/sample/images/10148.jpg')\n"
            "print(sorted(m for m in sys.modules if m.startswith(('vibe.train', 'vibe.build', 'vibe.eval', 'vibe.qa'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
