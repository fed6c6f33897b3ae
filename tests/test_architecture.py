"""The package's shape: stages in pipeline order, each documented, none importing a higher one."""
from __future__ import annotations

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "destination"
PIPELINE = ["intake", "mapping", "payload", "queue", "worker"]  # receive ... queue, then claim ... retry
BESIDE = {"admin", "ops", "sandbox"}


def subpackages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def test_a_listing_shows_the_pipeline_stages_in_the_order_events_flow():
    """`ls destination/*/` sorts by name, so the stage names are chosen to sort in pipeline order."""
    listed = subpackages()
    assert [name for name in listed if name in PIPELINE] == PIPELINE
    assert set(listed) - set(PIPELINE) <= BESIDE | {"billing"}, "a new subpackage needs a place in this test"


def test_every_subpackage_opens_with_what_it_does_and_what_it_may_import():
    for name in subpackages():
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"destination/{name}/__init__.py needs a docstring saying what it may import"


def test_no_stage_imports_a_higher_one_and_no_package_has_an_import_circle():
    """The contracts live in pyproject.toml's [tool.importlinter]; `lint-imports` runs them by hand too."""
    run = subprocess.run([sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 kept, 0 broken" in run.stdout
