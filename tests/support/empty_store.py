"""Preloaded by the kill tests' forkserver (tests/support/kill_resume.py): the empty MLflow store
(flows/runtime._empty_store, once per machine) is found there once, so each forked stage creates
its store by copying it, MLflow's migrations and the cache lookup already done."""
from flows import runtime

runtime._empty_store()
