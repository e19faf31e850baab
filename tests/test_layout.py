"""The package layout: folders that read as the data path, small modules, the public API.

These are structural contracts (issue "Layout first"): they fail when a module grows past
the size we keep, when flat modules pile up again, or when a name of the README's API tour
stops importing from ``gmmjax``.
"""

import importlib
import re
from pathlib import Path

import pytest

import gmmjax

ROOT = Path(gmmjax.__file__).parent
README = Path(__file__).resolve().parents[1] / "README.md"


def _api_tour_names() -> set[str]:
    text = README.read_text(encoding="utf-8")
    tour = text.split("## API tour", 1)[1].split("\n## ", 1)[0]
    names = set()
    for cell in re.findall(r"`([^`]+)`", tour):
        for part in cell.split("/"):
            part = part.strip()
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) and not part.endswith("_"):
                names.add(part)
    return names


def test_api_tour_names_import_from_gmmjax():
    names = _api_tour_names()
    assert len(names) > 30, names  # the parser found the table
    missing = sorted(n for n in names if not hasattr(gmmjax, n) and n != "gmmjax")
    assert not missing, f"README API tour names missing from gmmjax: {missing}"
    assert set(gmmjax.__all__) <= set(dir(gmmjax))


def test_at_most_14_modules_at_the_top():
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(flat) <= 14, flat


@pytest.mark.parametrize("sub", ["cli", "montecarlo", "deterministic", "fit"])
def test_subpackages(sub):
    assert (ROOT / sub / "__init__.py").is_file()
    importlib.import_module(f"gmmjax.{sub}")


def test_no_module_over_450_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long, long


def test_command_entry_point():
    from gmmjax.cli import main

    assert callable(main)
    assert "gmmjax.cli:main" in (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
