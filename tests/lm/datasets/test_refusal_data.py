"""Knowing what it doesn't know: the TriviaQA split, the grader, the abstention detector,
GENERATED refusal conversations, SFT mixing and the hallucination eval's rates (real TriviaQA data)."""
from __future__ import annotations

import json

import pytest

from lm.datasets import triviaqa
from lm.evals.honesty import score
from lm.datasets.refusal import REFUSALS, SOURCE, probe_conversations
from lm.posttrain.sft_data import SkipStats, load_sources, mix_in


def test_split_is_deterministic_and_disjoint():
    shots, probe, held = triviaqa.split()
    again = triviaqa.split()
    assert [q["id"] for q in probe] == [q["id"] for q in again[1]]
    assert len(held) == triviaqa.HELDOUT and len(shots) == triviaqa.SHOT_POOL
    ids = [{q["id"] for q in part} for part in (shots, probe, held)]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]
    assert sum(map(len, ids)) == 7993  # every validation question lands in exactly one part
    assert [q["id"] for q in triviaqa.probe_questions(5)] == [q["id"] for q in probe[:5]]
    # every TriviaQA score (the chat suite, the hallucination eval) reads the held-out part only
    assert {q["id"] for q in triviaqa.heldout_questions(50)} <= ids[2]
    assert all(q["answer"] and q["answer"] in q["aliases"] for q in held[:50])


def test_grader_matches_any_alias_after_normalisation():
    aliases = ["Sunset Boulevard", "Sunset Blvd.", "St. Pancras"]
    for reply in ["sunset boulevard", "  The Sunset Boulevard!", "Sunset Blvd. It premiered in 1993.",
                  "The answer is Sunset Boulevard.", "Sunset Boulevard\nQuestion: next", "St. Pancras"]:
        assert triviaqa.grade(reply, aliases) == "right", reply
    # exact match, not containment: a guess that names the answer among others is wrong
    assert triviaqa.grade("Maybe Sunset Boulevard or Cats", aliases) == "wrong"
    assert triviaqa.grade("Cats", aliases) == "wrong"
    assert triviaqa.grade("I don't know.", aliases) == "abstain"
    assert triviaqa.grade("", aliases) == "abstain"
    assert triviaqa.grade("The the the", aliases) == "wrong"  # normalises to nothing, but it is an attempt
    q = triviaqa.heldout_questions(1)[0]  # a real question: its canonical answer is right
    assert triviaqa.grade(q["answer"].upper() + ".", q["aliases"]) == "right"


REFUSAL_WORDINGS = REFUSALS + [
    "I do not know.", "Sorry, I don’t know that.", "dunno", "I have no idea, sorry.", "No idea.",
    "I'm not certain.", "I am unsure about this one.", "I can't say for sure.", "I cannot answer that.",
    "I don't have enough information to answer.", "I'm afraid I can't answer that.",
    "That's not something I know.", "I'd rather not guess.", "Hmm, I really don't know who that was.",
    "I'm not going to guess.",
]
NOT_REFUSALS = ["Paris", "The Unknown Soldier", "Knowing Me, Knowing You", "I know this one: Mount Everest.",
                "It is certainly Jupiter.", "No doubt about it: 1066.", "Sure! The answer is Mariner 4.",
                "The Battle of Hastings", "Unsure Of Nothing is not a band."]


@pytest.mark.parametrize("reply", REFUSAL_WORDINGS)
def test_abstention_detector_catches_varied_refusals(reply):
    assert triviaqa.is_abstention(reply)


@pytest.mark.parametrize("reply", NOT_REFUSALS)
def test_abstention_detector_leaves_answers_alone(reply):
    assert not triviaqa.is_abstention(reply)


def _results(n_rights: list[int], k: int = 4) -> list[dict]:
    qs = triviaqa.probe_questions(len(n_rights))
    return [{**q, "k": k, "n_right": n} for q, n in zip(qs, n_rights)]


def test_never_correct_gets_a_refusal_correct_keeps_its_answer():
    results = _results([0, 3, 1, 0])
    recs = probe_conversations(results)
    assert [r["kind"] for r in recs] == ["refusal", "answer", "answer", "refusal"]
    for res, rec in zip(results, recs):
        user, assistant = rec["messages"]
        assert user == {"role": "user", "content": res["question"]}
        if rec["kind"] == "refusal":
            assert triviaqa.is_abstention(assistant["content"])
        else:  # the known answer, in words the grader accepts
            assert triviaqa.grade(assistant["content"], res["aliases"]) == "right"
    # min_correct=2: right once of four is neither known nor unknown, left out
    assert [r["kind"] for r in probe_conversations(results, min_correct=2)] == ["refusal", "answer", "refusal"]
    # the wording varies across questions and is the same on a re-run
    many = probe_conversations(_results([0] * 60))
    wordings = [r["messages"][1]["content"] for r in many]
    assert len(set(wordings)) >= 8 and wordings == [r["messages"][1]["content"]
                                                    for r in probe_conversations(_results([0] * 60))]


def test_sft_mixing_ratio_is_honoured(tmp_path):
    recs = probe_conversations(_results([0, 2, 0, 0, 1]))
    path = tmp_path / "refusal_sft.GENERATED.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + "not json\n")
    base = dict(n_identity=30, n_arithmetic=60, seed=0)
    stats = SkipStats()
    convs = load_sources({}, stats, **base, refusal_path=str(path), refusal_ratio=0.25)
    n_mixed = sum(src == SOURCE for src, _ in convs)
    assert n_mixed == 30 and n_mixed / len(convs) == pytest.approx(0.25)  # 5 repeated to 30 of 120
    assert stats.skipped[f"{SOURCE}/malformed_json"] == 1
    assert {json.dumps(c) for s, c in convs if s == SOURCE} == {json.dumps(r["messages"]) for r in recs}
    assert not any(s == SOURCE for s, _ in load_sources({}, SkipStats(), **base, refusal_path=str(path),
                                                        refusal_ratio=0.0))
    sub = mix_in([("a", [])] * 90, [("x", [i]) for i in range(100)], 0.1)  # a large extra is subsampled
    assert sum(s == "x" for s, _ in sub) == 10 and len({json.dumps(c) for s, c in sub if s == "x"}) == 10
    with pytest.raises(ValueError, match="mixing ratio"):
        mix_in([], [("x", [])], 1.0)


def test_hallucination_eval_rates_on_a_known_case():
    qs = triviaqa.heldout_questions(5)
    replies = [qs[0]["answer"], "I don't know.", "Napoleon Bonaparte the Third", "", qs[4]["answer"] + "."]
    r = score(qs, replies)
    assert (r["right"], r["wrong"], r["abstain"]) == (0.4, 0.2, 0.4)
    assert r["n"] == 5 and r["n_empty"] == 1
    assert [row["verdict"] for row in r["rows"]] == ["right", "abstain", "wrong", "abstain", "right"]
    assert triviaqa.rates([]) == {"right": 0.0, "wrong": 0.0, "abstain": 0.0}
