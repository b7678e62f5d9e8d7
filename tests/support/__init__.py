"""Helpers shared between test files (and by benchmarks/ for their fresh-clone data).

Plain modules, imported as `from tests.support.x import y`; pytest fixtures stay in
conftest.py. Only torch/numpy/pyarrow/tokenizers here where benchmarks use a module
on the GPU box (toy.py), which has no pydantic/Prefect/Ray/MLflow.
"""
