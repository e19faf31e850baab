"""The documentation site covers the public API, and the package ships what it promises.

The site itself is built by ``.ci/run`` with ``sphinx-build -W`` (warnings are errors);
these checks need no Sphinx.
"""

import re
from pathlib import Path

import gmmjax

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_is_in_the_api_reference():
    api = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto(?:function|class):: (\w+)\s*$", api, re.M))
    missing = sorted(set(gmmjax.__all__) - {"__version__"} - documented)
    assert not missing, f"add these to docs/api.md: {missing}"
    extra = sorted(documented - set(gmmjax.__all__))
    assert not extra, f"docs/api.md documents names gmmjax does not export: {extra}"


def test_package_metadata_files():
    assert (REPO / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    assert (Path(gmmjax.__file__).parent / "py.typed").is_file()
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert gmmjax.__version__.split(".dev")[0] in changelog


def test_one_version_source():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), "the version lives in gmmjax/__init__.py"
    assert 'dynamic = ["version"]' in project
    assert 'attr = "gmmjax.__version__"' in pyproject
