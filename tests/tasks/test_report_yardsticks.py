"""Report-card tables of the core and chat suites: every reference number carries its source."""
import re

from tasks.report_yardsticks import CHAT_REFERENCES, CORE_REFERENCES, SOURCES, yardstick_tables


def _core(score):
    tasks = {"hellaswag_zeroshot": {"score": score, "chance": 0.25}, "copa": {"score": 0.5, "chance": 0.5}}
    return {"tasks": tasks, "core": 0.01, "centered_mean": 0.02, "core_tasks": 2, "limit": 20,
            "not_covered": ["winograd"]}


def _chat():
    return {"tasks": {"arc_easy": {"score": 0.3, "chance": 0.25},
                      "triviaqa": {"score": 0.1, "chance": 0.0, "wrong_rate": 0.6, "abstain_rate": 0.3}}}


def test_tables_hold_each_model_chance_and_cited_references():
    md = "\n".join(yardstick_tables({"pretrain": {"core": _core(0.27)}, "sft": {"chat": _chat()},
                                     "dpo": {"chat": _chat()}}))
    assert "### base-model suite (core)" in md and "### chat-model suite (chat)" in md
    row = next(line for line in md.splitlines() if line.startswith("| hellaswag_zeroshot |"))
    assert "0.270" in row and "0.250" in row and "0.309 [a]" in row  # ours, chance, GPT-2 124M [source a]
    assert "| task | sft | dpo | chance |" in md  # chat models side by side in one table
    assert "| **triviaqa wrong (not abstained)** | 0.600 | 0.600 |" in md
    for key in set(re.findall(r"\d\.\d{3} \[([a-z])\]", md)):
        assert f"[{key}] [" in md  # every cited key has its source line
    assert "winograd" in md  # uncovered CORE tasks are named


def test_every_reference_has_a_source():
    for refs in (CORE_REFERENCES, CHAT_REFERENCES):
        for cols in refs.values():
            for value, key in cols.values():
                assert 0 <= value <= 1 and key in SOURCES and SOURCES[key].startswith("[")


def test_nothing_when_no_suite_ran():
    assert yardstick_tables({"model": {"val_bpb": 2.0}}) == []


def test_inloop_core_curves_get_their_own_panel():
    from tasks.report import curve_panels

    pts = [(50, 0.01), (100, 0.03)]
    panels = curve_panels({"pretrain": {"train_loss": [(1, 5.0), (2, 4.0)], "eval/core_inloop/centered_mean": pts,
                                        "eval/core_inloop/piqa": pts}})
    core = [p for p in panels if "in-loop CORE" in p[0]]
    assert len(core) == 1 and set(core[0][2]) == {"eval/core_inloop/centered_mean", "eval/core_inloop/piqa"}
    assert any(p[1] == "loss" and "train_loss" in p[2] for p in panels)
