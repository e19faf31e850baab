"""The README's quickstart runs as written and prints what it says it prints."""

import pathlib
import re

import jax
import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_block_runs(capsys):
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README-quickstart", "exec"), scope)
    out = capsys.readouterr().out
    # the printed value matches the comment in the README to its 4 printed decimals
    claimed = re.search(r"# (\d\.\d{4}) ± (\d\.\d{4})", block)
    printed = re.search(r"KL\(p\|\|q\) = (\d\.\d{4}) ± (\d\.\d{4})", out)
    assert printed is not None and claimed is not None
    # float32 vs float64 runs may differ in the last printed digit
    assert abs(float(printed.group(1)) - float(claimed.group(1))) <= 2e-4
    b, est = scope["bounds"], scope["est"]
    assert (
        float(b.lower) - 3 * float(est.stderr)
        <= float(est.value)
        <= float(b.upper) + 3 * float(est.stderr)
    )
    assert 0.0 <= float(scope["js"]) <= np.log(2.0)
    leaves = jax.tree_util.tree_leaves(scope["grads"])
    assert leaves and all(np.all(np.isfinite(leaf)) for leaf in leaves)


def test_readme_says_what_the_data_is_and_cites_only_what_exists():
    # issue 14, item 1: "the seeds" meant nothing to a new user, and DESIGN.md is not in
    # the repository; every file the README names in backticks must exist
    text = README.read_text()
    assert "seeds" not in text.lower()
    assert "DESIGN.md" not in text
    root = README.parent
    for path in re.findall(
        r"`((?:benchmarks|examples|tests|gmmjax|notes)/[\w./-]+\.(?:py|md))`", text
    ):
        assert (root / path).exists(), path
