"""The package's layout stays what README.md's "Architecture" section says: every module is named
there, the inference path does not depend on the evaluation and command-line tooling, constants
have one source, and nothing shipped looks for ../shared."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from _paths import REPO_ROOT

REPO = REPO_ROOT
PACKAGE = REPO / "python" / "ssd_resnet34"
INFERENCE_PATH = ["image", "engines", "postprocess", "model", "output", "detector.py", "pipeline.py", "layout.py",
                  "anchors.py", "coco.py", "types.py", "_files.py", "_extension.py"]


def _architecture() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Architecture")
    end = text.index("\n## ", start + 1) if "\n## " in text[start + 1:] else len(text)
    return text[start:end]


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_named_in_the_architecture_section():
    section = _architecture()
    for path in _modules():
        if path.name in ("__init__.py", "__main__.py"):
            folder = path.parent.relative_to(PACKAGE)
            assert path.parent == PACKAGE or f"{folder}/" in section, folder
            continue
        assert path.name in section, f"{path.relative_to(PACKAGE)} is not in README.md's Architecture section"
    for folder in sorted({p.parent for p in _modules()} - {PACKAGE}):
        assert f"{folder.relative_to(PACKAGE)}/" in section


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module or ""
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


def test_the_inference_path_does_not_import_tooling():
    for entry in INFERENCE_PATH:
        target = PACKAGE / entry
        for path in ([target] if target.is_file() else sorted(target.rglob("*.py"))):
            for module in _imports(path):
                assert not re.match(r"ssd_resnet34\.(evaluation|cli)\b", module), f"{path.name} imports {module}"


def test_nothing_shipped_looks_for_shared_data():
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and '"shared"' not in text, path


def test_the_input_size_and_class_count_have_one_source():
    for path in _modules():
        if path.name == "layout.py":
            continue
        code = "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                         if not line.lstrip().startswith("#"))
        tree = ast.parse(code)
        numbers = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and type(node.value) is int]
        assert 1200 not in numbers, f"{path.relative_to(PACKAGE)} writes 1200: use layout.INPUT_SIZE"
        assert 15130 not in numbers, f"{path.relative_to(PACKAGE)} writes 15130: use layout.NUM_ANCHORS"


def test_the_tests_mirror_the_package():
    """tests/<folder>/ holds the tests of ssd_resnet34/<folder>/ (as pydantic-core's tests mirror its src/),
    at every depth: tests/evaluation/accuracy/ holds those of ssd_resnet34/evaluation/accuracy/."""
    tests = REPO / "tests"
    folders = sorted(p for p in tests.rglob("*") if p.is_dir()
                     and not any(part.startswith((".", "_")) for part in p.relative_to(tests).parts))
    assert folders, "the tests are not split by subpackage"
    for folder in folders:
        relative = folder.relative_to(tests)
        assert (PACKAGE / relative / "__init__.py").is_file(), f"tests/{relative}/ mirrors no subpackage"
        assert list(folder.rglob("test_*.py")), f"tests/{relative}/ holds no test module"
    assert (tests / "evaluation" / "accuracy").is_dir() and (tests / "evaluation" / "performance").is_dir()
