"""The package's layout rules (docs/ARCHITECTURE.md): a light task graph, no import cycles, and a
function-local import only where it keeps a heavy library out of the graph's load."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "catalogue"
HEAVY = ("PIL", "numpy", "scipy", "skimage", "google.genai", "psycopg", "requests", "pillow_heif", "tomlkit")
# Subpackages the task graph loads: standard library, doit and python-dotenv only at their top.
LIGHT = ("core", "tasks")
# Modules of the other subpackages that the graph reads too (text and TOML only).
LIGHT_MODULES = ("catalogue.generation.prompts", "catalogue.generation.retouch_steps")
# Service clients, imported where the service is called so that a local-renderer build never
# loads them: google-genai (0.5 s, through the SDK's modules) when a call is paid, psycopg (0.1 s)
# when the shop's database is read.
LAZY_CLIENTS = {"catalogue.generation.paid_call": ("catalogue.generation.gemini", "catalogue.generation.batch_jobs"),
                "catalogue.publishing.lookup": ("psycopg", "psycopg.conninfo")}

PROBE = r"""
import contextlib, io, json, sys
from doit.doit_cmd import DoitMain
heavy = {heavy!r}
with contextlib.redirect_stdout(io.StringIO()):
    code = DoitMain().run({args!r})
assert code == 0, code
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _loaded_heavy(project, args: list[str]) -> list[str]:
    """The heavy modules a `doit <args>` run (in one process) has loaded when it ends."""
    heavy_roots = sorted({h.split(".")[0] for h in HEAVY})
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=heavy_roots, args=args)], cwd=project.root,
                          env=project.env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_the_task_graph_and_a_noop_run_load_no_heavy_library(samples_project):
    samples_project.env["OUTPUT_SIZE"] = "216x296"   # small views: what is loaded does not depend on size
    assert _loaded_heavy(samples_project, ["list", "--all"]) == []
    built = _loaded_heavy(samples_project, [])     # everything made by the local renderer...
    assert "PIL" in built and not [m for m in built if m.startswith(("google", "psycopg"))]  # ...without any client
    assert _loaded_heavy(samples_project, []) == []   # a no-op run


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


def _target(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    package = base[:-1] if not (PACKAGE / Path(*base[1:]) / "__init__.py").exists() else base
    parent = package[: len(package) - node.level + 1]
    return ".".join(parent + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.Module, *, top: bool) -> list[tuple[str, ast.AST]]:
    """(imported module, node) for the imports at module level (top) or inside functions."""
    out = []
    nodes = tree.body if top else [n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                                   for n in ast.walk(f)]
    if top:  # module level, including try/if blocks
        nodes = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 for n in ast.walk(stmt)]
        nodes += [n for cls in tree.body if isinstance(cls, ast.ClassDef) for n in cls.body]
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _target(module, node)
            if node.module is None:  # from . import x
                out += [(f"{target}.{a.name}", node) for a in node.names]
            else:
                out.append((target, node))
    return out


def test_no_import_cycles_between_the_package_modules():
    mods = _modules()
    graph = {m: {t for t, _ in _imports(m, tree, top=True) if t in mods and t != m} for m, tree in mods.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if not state.get(t):
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])


def _is_light(module: str) -> bool:
    return module in LIGHT_MODULES or (module.split(".")[1:2] != [] and module.split(".")[1] in LIGHT)


def _is_heavy(target: str) -> bool:
    if target in LIGHT_MODULES:
        return False
    if any(target == h or target.startswith(h + ".") for h in HEAVY):
        return True
    parts = target.split(".")
    return parts[0] == "catalogue" and len(parts) > 1 and parts[1] not in LIGHT


def test_light_subpackages_import_no_heavy_module_at_their_top():
    for module, tree in _modules().items():
        if _is_light(module):
            heavy = [t for t, _ in _imports(module, tree, top=True) if _is_heavy(t)]
            assert not heavy, f"{module} imports {heavy} when the task graph loads"


def test_a_function_local_import_is_only_a_heavy_module_imported_by_a_light_one():
    for module, tree in _modules().items():
        light = _is_light(module)
        for target, node in _imports(module, tree, top=False):
            if target in LAZY_CLIENTS.get(module, ()):
                continue
            assert light and _is_heavy(target), (
                f"{module}:{node.lineno} imports {target} inside a function: import it at the top")
