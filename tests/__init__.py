"""The test suite as a package, so shared helpers import as `tests.support.…`.

pyproject's [tool.pytest.ini_options] `pythonpath = ["."]` puts the repository
root on the import path; no test file edits the import path.
"""
