"""The layers stay where STYLE.md puts them: core/ and raft/ are pure, roles are independent."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2] / "blobstore"
IO_MODULES = {"asyncio", "aiohttp", "lmdb", "socket", "threading", "subprocess", "time", "os",
              "shutil", "select", "selectors", "random", "uuid"}
ROLES = {"gateway", "meta", "storage"}


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def test_pure_layers_import_no_io():
    bad = [f"{p.relative_to(ROOT)} imports {m}" for pkg in ("core", "raft")
           for p in _modules(pkg) for m in _imports(p) if m.split(".")[0] in IO_MODULES]
    assert bad == []


def test_roles_never_import_each_other():
    bad = []
    for role in ROLES:
        for path in _modules(role):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] == "blobstore" and len(parts) > 1 and parts[1] in ROLES - {role}:
                    bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert bad == []


def test_nothing_outside_testing_imports_testing():
    bad = [f"{p.relative_to(ROOT)}" for p in ROOT.rglob("*.py")
           if "testing" not in p.relative_to(ROOT).parts
           and any(m.startswith("blobstore.testing") for m in _imports(p))]
    assert bad == []
