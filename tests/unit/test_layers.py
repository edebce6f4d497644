"""Module dependencies run one way (README "Layers"): no import goes upward.

Every import counts: module level, inside functions, and `if TYPE_CHECKING:`
blocks.  A module may import its own layer or a lower one; the package's
import graph has no cycle; the other packages and the tools take shared
pieces only from the shared layers and the client library.
"""
from __future__ import annotations

import ast
import importlib
import os
from typing import Dict, List, Set

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("nsqd_sync", "nsqlookupd_sync", "nsqadmin_sync")

# lowest first; README's "Layers" list names the same groups
LAYERS: List[List[str]] = [
    # 0 shared building blocks: bytes, names, time, addresses, logs, signals
    ["nsqd_sync", "nsqd_sync.wire", "nsqd_sync.errors", "nsqd_sync.durations", "nsqd_sync.addresses",
     "nsqd_sync.gojson", "nsqd_sync.logs", "nsqd_sync.signals", "nsqd_sync.guid", "nsqd_sync.e2e",
     "nsqd_sync.metadata", "nsqd_sync.transport"],
    # 1 shared plumbing: flags, HTTP client and server base, debugging pages
    ["nsqd_sync.flags", "nsqd_sync.http_client", "nsqd_sync.http_base", "nsqd_sync.debug"],
    # 2 queues
    ["nsqd_sync.memqueue", "nsqd_sync.timerwheel", "nsqd_sync.diskqueue", "nsqd_sync.backend"],
    # 3 the node's options and auth client
    ["nsqd_sync.options", "nsqd_sync.auth"],
    # 4 topic and channel
    ["nsqd_sync.channel", "nsqd_sync.topic"],
    # 5 client state and protocol
    ["nsqd_sync.client_v2", "nsqd_sync.protocol_v2"],
    # 6 servers and the node's views: TCP, HTTP(S), /stats, statsd, lookupd registration
    ["nsqd_sync.stats", "nsqd_sync.statsd", "nsqd_sync.lookup", "nsqd_sync.tcp", "nsqd_sync.http_api",
     "nsqd_sync.tls"],
    # 7 the node
    ["nsqd_sync.nsqd"],
    # 8 the command
    ["nsqd_sync.cli", "nsqd_sync.__main__"],
]
SHARED_LAYERS = 2  # layers 0 and 1 are the shared place other packages and tools import from
CLIENT = "nsqd_sync.client"  # the client library: on the shared layers only
TOOLS = ("nsqd_sync.bench", "nsqd_sync.apps", "nsqd_sync.testing", "nsqlookupd_sync", "nsqadmin_sync")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _is_module(name: str) -> bool:
    base = os.path.join(ROOT, *name.split("."))
    return os.path.exists(base + ".py") or os.path.exists(os.path.join(base, "__init__.py"))


def import_graph() -> Dict[str, Set[str]]:
    """{module: the package modules it imports}, from the source (every import statement)."""
    graph: Dict[str, Set[str]] = {}
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, package)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for filename in filenames:
                if not filename.endswith(".py"):
                    continue
                path = os.path.join(dirpath, filename)
                name = _module_name(path)
                pkg = name if filename == "__init__.py" else name.rpartition(".")[0]
                deps: Set[str] = set()
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        if node.level:
                            parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                            base = ".".join(parts + ([node.module] if node.module else []))
                        else:
                            base = node.module or ""
                        for alias in node.names:
                            sub = base + "." + alias.name
                            deps.add(sub if _is_module(sub) else base)
                    elif isinstance(node, ast.Import):
                        deps.update(alias.name for alias in node.names)
                graph[name] = {d for d in deps if d.split(".")[0] in PACKAGES and d != name}
    return graph


GRAPH = import_graph()
LAYER_OF = {m: i for i, group in enumerate(LAYERS) for m in group}


def _in_client(module: str) -> bool:
    return module == CLIENT or module.startswith(CLIENT + ".")


def _layer(module: str) -> int:
    if _in_client(module):
        return SHARED_LAYERS  # just above the shared layers
    return LAYER_OF[module]


def test_every_module_imports():
    for name in GRAPH:
        if name.endswith("__main__") or name == "nsqd_sync.testing.pytest_plugin":
            continue
        importlib.import_module(name)


def test_every_node_module_has_a_layer():
    node_modules = {m for m in GRAPH if m.startswith("nsqd_sync") and not _in_client(m)
                    and not m.startswith(TOOLS)}
    assert node_modules == set(LAYER_OF), "add new modules to LAYERS (and README's Layers list)"


def test_no_import_goes_to_a_higher_layer():
    upward = []
    for module, deps in GRAPH.items():
        if module.startswith(TOOLS):
            continue
        for dep in deps:
            if _layer(dep) > _layer(module):
                upward.append("%s (layer %d) imports %s (layer %d)" % (module, _layer(module), dep, _layer(dep)))
    assert upward == []


def test_other_packages_and_tools_use_only_shared_pieces():
    wrong = []
    for module, deps in GRAPH.items():
        if not module.startswith(TOOLS):
            continue
        own = module.split(".")[0] if not module.startswith("nsqd_sync") else ".".join(module.split(".")[:2])
        for dep in deps:
            if dep.startswith(own) or _in_client(dep) or dep.startswith(TOOLS):
                continue
            if LAYER_OF.get(dep, len(LAYERS)) >= SHARED_LAYERS:
                wrong.append("%s imports %s" % (module, dep))
    assert wrong == []


def test_client_library_uses_only_shared_pieces():
    wrong = ["%s imports %s" % (m, d) for m, deps in GRAPH.items() if _in_client(m)
             for d in deps if not _in_client(d) and LAYER_OF.get(d, len(LAYERS)) >= SHARED_LAYERS]
    assert wrong == []


def test_the_graph_covers_every_package():
    covered = {m.split(".")[0] if not m.startswith("nsqd_sync.") else ".".join(m.split(".")[:2]) for m in GRAPH}
    assert {"nsqd_sync.bench", "nsqd_sync.apps", CLIENT, "nsqd_sync.testing", "nsqd_sync.wire",
            "nsqlookupd_sync", "nsqadmin_sync"} <= covered


def test_no_import_cycles():
    """Over every module of every package (tools, client library, nsqlookupd and nsqadmin too)."""
    state: Dict[str, int] = {}
    cycles: List[str] = []

    def visit(module: str, path: List[str]) -> None:
        state[module] = 1
        for dep in sorted(GRAPH.get(module, ())):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(path[path.index(dep):] + [dep]) if dep in path else dep)
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == [], "\n".join(cycles)


@pytest.mark.parametrize("module,dep", [("nsqd_sync.channel", "nsqd_sync.client_v2"),
                                        ("nsqd_sync.timerwheel", "nsqd_sync.channel"),
                                        ("nsqd_sync.topic", "nsqd_sync.nsqd"),
                                        ("nsqd_sync.http_base", "nsqd_sync.stats")])
def test_the_old_upward_imports_are_gone(module, dep):
    assert dep not in GRAPH[module]
