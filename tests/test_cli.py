"""The console script: one command per row of the stage table, one exit contract, no traceback.

Issue 23's findings 1, 2, 3, 5 and 6, each as a test that failed on the code before it.
(Finding 4, garbage inputs, is in tests/flows/test_curate_flow.py and tests/tasks/curation/test_warc.py.)
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conf.stages import STAGE_NAMES, STAGES
from crawl2chat.cli import build_parser, main


def test_help_lists_registered_stages():
    help_text = build_parser().format_help()
    for name in STAGE_NAMES:
        assert name in help_text
    assert "eval" in help_text  # the old name of evaluate, kept as an alias


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "crawl2chat" in out.stdout


# ---------------------------------------------------------------- one row, one command (findings 5, 6)
@pytest.mark.parametrize("st", STAGES, ids=lambda s: s.name)
def test_every_stage_command_takes_the_common_flags(st):
    """--preset, --set STAGE.KEY=VALUE, --out and the row's inputs, on every stage command."""
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices[st.name]
    flags = {o for a in parser._actions for o in a.option_strings}
    assert {"--preset", "--set", "--out"} <= flags
    assert {i.flag for i in st.inputs} <= flags
    assert "(default: None)" not in parser.format_help()


def test_one_name_per_stage_everywhere():
    """The table is the only list: pipeline, deployments, report card and CLI read it."""
    from flows import deployments, pipeline
    from tasks import report

    assert [s.name for s in pipeline.STAGES] == list(STAGE_NAMES)
    assert pipeline.MODELS == {s.name: s.registers for s in STAGES if s.registers}
    assert set(report.TRAIN_STAGES) == set(pipeline.MODELS)
    # the models evaluate scores and the card compares: the table's `evaluated` rows, base first
    assert pipeline.EVALUATED == tuple(s.name for s in STAGES if s.evaluated)
    assert pipeline.EVALUATED[0] == "pretrain" and {"sft", "rl", "dpo"} <= set(pipeline.EVALUATED)
    assert "reward" not in pipeline.EVALUATED  # a reward model is scored by its own stage, not chatted with
    assert pipeline.stage("eval").name == "evaluate"  # the old name resolves to the one name
    import conf

    for p in conf.preset_names():
        assert "eval" not in conf.read_preset(p), f"preset {p}: section `eval` is `evaluate` now"
    assert not hasattr(deployments, "DATA_STAGES") and not hasattr(deployments, "CONFIG_SECTION")


def test_a_new_row_is_a_new_command(monkeypatch):
    """Adding a stage = one row (plus its config, logic and flow): the CLI grows by itself."""
    from conf import stages
    from crawl2chat import cli

    extra = stages.StageRow("distill", "distil a model", "conf.posttrain:SFTConfig", "manifest.json",
                            inputs=(stages.Input("model", "checkpoint:sft", "teacher"),), after=("sft",))
    monkeypatch.setattr(cli, "STAGES", (*stages.STAGES, extra))
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert "distill" in sub.choices and "--model" in sub.choices["distill"].format_help()


@pytest.mark.parametrize("argv, needle", [
    (["sft", "--model", "M", "--out", "O", "--set", "sft.nope=1"], "valid keys: steps, lr"),
    (["rl", "--model", "M", "--out", "O", "--set", "sft.steps=1"], "sets only rl.KEY=VALUE"),
    (["dpo", "--model", "M", "--out", "O", "--set", "dpo.steps"], "expected STAGE.KEY=VALUE"),
    (["pipeline", "--set", "evaluate.nope=1"], "evaluate has no setting 'nope'"),
    (["pipeline", "--set", "pretrian.max_steps=1"], "unknown stage 'pretrian'"),
    (["sft", "--model", "M", "--out", "O", "--preset", "huge"], "unknown preset 'huge'"),
    # one GSM8K held-out count (lm/datasets/gsm8k.HELDOUT): a stage's own would leak eval items into training
    (["sft", "--model", "M", "--out", "O", "--set", "sft.gsm8k_heldout=100"], "sft.gsm8k_heldout was removed"),
    (["pipeline", "--set", "rl.gsm8k_heldout=100"], "rl.gsm8k_heldout was removed: GSM8K's held-out count"),
    (["pipeline", "--set", "evaluate.arithmetic_max_operand=99"], "set evaluate.arithmetic_difficulty instead"),
])
def test_bad_settings_are_refused_in_one_line(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- refusals before any work (findings 2, 3)
def test_refusals_write_nothing_into_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "empty").mkdir()
    cases = [
        (["sft", "--model", "models:/crawl2chat-sft@current", "--out", "o1"], "set MLFLOW_TRACKING_URI"),
        (["evaluate", "--model", "empty", "--out", "o2"], "holds no final/ checkpoint"),
        (["eval", "--model", "empty", "--out", "o2"], "holds no final/ checkpoint"),
        (["pretrain", "--tokens", "empty", "--out", "o3"], "no token shards at empty"),
        (["rlhf", "--policy", "empty", "--reward", "empty", "--out", "o4"], "holds no final/ checkpoint"),
        (["index", "--data", "empty", "--out", "o5"], "no Parquet files in empty"),  # before any Prefect flow
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no mlflow.db, mlartifacts/, o*/


def test_listing_deployments_writes_nothing(tmp_path, capsys, monkeypatch):
    """`crawl2chat deploy` lists names; it used to build the curate deployments' GENERATED WARC
    (800 pages) under ./runs/llm-pipeline-tiny/inputs/ just to print them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRAWL2CHAT_RUNS_DIR", raising=False)
    assert main(["deploy"]) == 0
    out = capsys.readouterr().out
    assert "llm-pipeline/tiny" in out and "curate/default" in out
    assert list(tmp_path.iterdir()) == []


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`crawl2chat deploy | head -3` printed "failed: BrokenPipeError … full log: …" and exited 1.
    Now it stops as a command SIGPIPE ends (128 + 13), saying nothing."""
    proc = subprocess.Popen([sys.executable, "-m", "crawl2chat.cli", "deploy"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "failed" not in err and "Traceback" not in err and "Exception ignored" not in err, err


# ---------------------------------------------------------------- failures are exit 1, summaries never crash
def test_a_failed_evaluation_is_exit_1():
    from core.errors import StageFailedError
    from flows.evaluate import failed_models

    doc = {"models": {"sft": {"model": "x", "error": "CheckpointError: gone"}, "rl": {"gsm8k_pass@1": 0.5}}}
    with pytest.raises(StageFailedError, match=r"1 of 2 model\(s\) \(sft: CheckpointError: gone\)"):
        failed_models(doc, "card.md")
    failed_models({"models": {"rl": {"gsm8k_pass@1": 0.5}}}, "card.md")  # all scored: no error


@pytest.mark.parametrize("stage", ["pretrain", "probe", "sft", "rl", "reward", "rlhf", "dpo", "index"])
def test_summaries_survive_missing_figures(stage):
    """Finding 1: a resumed SFT's manifest had val_loss_start None and the command died formatting it."""
    import importlib

    summary = importlib.import_module(f"flows.{stage}").summary
    lines = summary({"model_uri": "models:/x/1", "val_loss_start": None, "val_loss": 1.5})
    assert lines and all(isinstance(x, str) for x in lines)
    assert importlib.import_module("flows.sft").summary({"val_loss_start": None, "val_loss": 1.5})[0].endswith(
        "val loss n/a → 1.5000")


def test_an_unexpected_failure_is_one_line_and_a_log(prefect_api, tmp_path, capsys, monkeypatch):
    """Exit 1: one line naming the error and the file that holds the traceback."""
    import flows.sft

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"step": 0}))

    def boom(**_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(flows.sft, "sft", boom)
    assert main(["sft", "--model", str(ckpt), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed: RuntimeError: disk on fire; full log: " in err[0]
    log = err[0].rsplit("full log: ", 1)[1]
    assert "Traceback" in open(log).read() and log.startswith(str(tmp_path / "out" / "logs"))


def test_a_refused_registration_is_exit_1_in_one_line(prefect_api, tmp_path, capsys, monkeypatch):
    """Issue 24: the store refusing a model version ends the command with one line, exit 1, no traceback."""
    import flows.sft
    from core.errors import StageFailedError

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"step": 0}))

    def refused(**_):
        raise StageFailedError("registering crawl2chat-sft failed: the MLflow store refused the model version")

    monkeypatch.setattr(flows.sft, "sft", refused)
    assert main(["sft", "--model", str(ckpt), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["crawl2chat sft: failed: registering crawl2chat-sft failed: the MLflow store refused the "
                   "model version"]
