"""The README's two set-up commands exist, and CI runs the test command verbatim."""

from conftest import REPO


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    cmd = 'pip install -e ".[test]" && python -m pytest'
    assert f"    {cmd}\n" in readme
    assert f"\n{cmd}\n" in ci
    assert "    pip install -e . && python scripts/invert.py\n" in readme
