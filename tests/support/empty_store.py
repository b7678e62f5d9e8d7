"""Preloaded by the kill tests' forkserver (tests/support/kill_resume.py): the process-wide empty
MLflow store (flows/runtime._empty_store) is made there once, so each forked stage creates its
store by copying it instead of running MLflow's migrations again."""
from flows import runtime

runtime._empty_store()
