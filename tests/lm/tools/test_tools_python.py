"""The one tool registry with the python tool: GENERATED python data (right outputs, masked, held out),
persona-driven identity/system messages in the SFT mixture, and the engine forcing sandbox output."""
import pytest

from lm.chat import ChatRenderer, Persona, render_prompt
from lm.datasets.python_tool import KINDS, python_conversation, python_eval, python_problems
from lm.tools.sandbox import run_python
from lm.datasets.identity import generate_identity
from lm.posttrain.sft_data import SkipStats, load_sources
from lm.tokenizer import Tokenizer
from lm.tools import ToolRegistry, calculator, default_tools


@pytest.fixture(scope="module")
def tok():
    texts = [p["question"] + " " + p["text"] + " " + p["code"] for p in python_problems(200)]
    return Tokenizer.train(texts, vocab_size=400)


def test_registry_switches_tools_by_config_and_per_request():
    reg = default_tools(calculator=True, python=True)
    assert reg.names == ["calculator", "python"]
    assert reg.run("python: print(6 * 7)") == "42"
    assert reg.run("6 * 7") == "42"  # bare expression: the calculator
    calc_only = reg.only(["calculator"])
    assert calc_only.run("python: print(1)").startswith("error: tool python is not enabled")
    assert reg.only(["python"]).run("6 * 7").startswith("error: no tool")
    with pytest.raises(ValueError, match="not enabled here"):
        default_tools().only(["python"])
    assert default_tools(calculator=False).names == []


def test_generated_outputs_are_what_the_sandbox_prints():
    probs = python_problems(40, seed=1)
    assert probs == python_problems(40, seed=1) and {p["kind"] for p in probs} == set(KINDS)
    for p in probs[:4]:  # one of each kind, through the real sandbox
        assert run_python(p["code"]) == p["output"], p
    held = python_problems(40, seed=1, heldout=True)
    assert not {p["key"] for p in held} & {p["key"] for p in python_problems(400, seed=2)}
    assert all(p["answer"] in p["text"] for p in probs)


def test_tool_output_is_masked_and_the_call_is_learned(tok):
    conv = python_conversation(python_problems(1)[0], system=Persona().system_message())
    r = ChatRenderer(tok).render(conv)
    out_start, out_end = tok.encode_special("<|output_start|>"), tok.encode_special("<|output_end|>")
    a, b = r.ids.index(out_start), r.ids.index(out_end)
    assert set(r.mask[a:b + 1]) == {0}  # forced by the engine: never a target
    assert r.mask[a - 1] == 1 and r.ids[a - 1] == tok.encode_special("<|tool_end|>")  # the call is learned
    assert r.mask[b + 1] == 1  # the answer after the output is learned
    sys_end = r.ids.index(tok.encode_special("<|system_end|>"))
    assert set(r.mask[:sys_end + 1]) == {0}


def test_persona_drives_identity_and_system_messages():
    p = Persona(name="Wren", maker="Example Labs", tools=("calculator", "python"))
    assert p.system_message() == "You are Wren, an assistant made by Example Labs. Tools: calculator, python."
    ids = generate_identity(30, seed=0, persona=p)
    texts = [c[1]["content"] for c in ids]
    assert all("Wren" in t for t in texts) and any("Example Labs" in t for t in texts)
    assert all("Python" in t for q, t in zip(ids, texts) if "can you do" in q[0]["content"])
    with pytest.raises(ValueError, match="unknown tool"):
        Persona(tools=("shell",))
    convs = load_sources({}, SkipStats(), n_identity=40, n_arithmetic=40, n_python=40, persona=p,
                         persona_system_fraction=0.5)
    assert sum(s == "generated_python" for s, _ in convs) == 40
    with_sys = [c for _, c in convs if c[0]["role"] == "system"]
    assert 0.3 < len(with_sys) / len(convs) < 0.7
    assert all(c[0]["content"] == p.system_message() for c in with_sys)


def test_render_prompt_prepends_system_only_when_missing(tok):
    sys_start = tok.encode_special("<|system_start|>")
    plain = render_prompt([{"role": "user", "content": "hi"}], tok)
    assert sys_start not in plain
    ids = render_prompt([{"role": "user", "content": "hi"}], tok, system="Be brief.")
    assert ids.count(sys_start) == 1 and ids[-len(plain) + 1:] == plain[1:]
    own = render_prompt([{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}], tok,
                        system="Be brief.")
    assert own.count(sys_start) == 1 and tok.encode("Mine.")[0] in own


def test_engine_forces_sandbox_output_and_eval_runs(tmp_path_factory):
    from lm.engine import Engine
    from lm.checkpoint import load_model
    from tests.support.shared import shared_root
    from tests.support.toy import make_toy_checkpoint

    model, tk, _ = load_model(str(make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)))
    # The toy model calls its tool with "12+7"; route bare calls to the sandbox to see its output forced.
    reg = ToolRegistry(tools={"python": lambda c: run_python(f"print({c})")}, default="python")
    eng = Engine(model, tk, tools=reg)
    c = eng.generate([render_prompt([{"role": "user", "content": "What is 12+7?"}], tk)], 40, temperature=0)[0]
    assert c.tool_calls >= 1
    ts, te = c.tokens.index(tk.encode_special("<|tool_start|>")), c.tokens.index(tk.encode_special("<|tool_end|>"))
    call = tk.decode(c.tokens[ts + 1:te])
    forced = tk.decode([t for t, f in zip(c.tokens, c.forced_mask) if f], skip_special=True)
    assert forced == calculator(call) != "", (call, forced)  # the sandbox's stdout, forced into the context
    r = python_eval(model, tk, python_problems(4, heldout=True), max_new_tokens=24)
    assert r["n"] == 4 and set(r) >= {"with_tool", "no_tool"}
    assert 0 <= r["with_tool"]["accuracy"] <= 1 and 0 <= r["no_tool"]["accuracy"] <= 1


def test_report_card_line():
    from tasks.report import python_findings

    lines = python_findings({"sft": {"python_n": 20, "python_acc_tool": 0.25, "python_acc_no_tool": 0.05,
                                     "python_tool_calls": 9}, "pretrain": {"val_bpb": 2.0}})
    # issue 25's card: what was measured first, the figure, then a footnote mark for the interval
    assert len(lines) == 1 and "20 held-out items" in lines[0] and "sft 0.25 / 0.05 (9 calls)¹" in lines[0]
    assert python_findings({"pretrain": {}}) == []


def test_tools_from_names_and_recorded_persona():
    from lm.chat import Persona
    from lm.tools import tools_from_names

    assert tools_from_names(["python"]).names == ["python"]
    with pytest.raises(ValueError, match="unknown tool"):
        tools_from_names(["shell"])
    with pytest.raises(ValueError, match="index directory"):
        tools_from_names(["search"])
    assert Persona.from_meta({}, ["python"]).system_message().endswith("Tools: python.")
    # who the model is comes from the checkpoint; the tools named are the ones enabled now, in one order
    recorded = {"persona": {"name": "Wren", "maker": "Example Labs", "tools": ["calculator", "python"]}}
    assert Persona.from_meta(recorded, ["python", "calculator"]).system_message() == (
        "You are Wren, an assistant made by Example Labs. Tools: calculator, python.")
    assert Persona.from_meta(recorded, []).system_message().endswith("No tools.")
    assert Persona.from_meta(recorded).tools == ("calculator", "python")  # None: what SFT trained
    with pytest.raises(ValueError, match="unknown tool"):
        Persona.from_meta(recorded, ["shell"])


def test_sft_persona_names_every_tool_its_data_trains():
    from conf.posttrain import SFTConfig
    from tasks.posttrain import sft_persona

    cfg = SFTConfig(n_python=0, n_arithmetic=0)
    assert sft_persona(cfg).tools == ("calculator",)  # conf's persona alone
    cfg = SFTConfig(n_python=5, n_arithmetic=5, arithmetic_tool=True, search_index="/idx", search_ratio=0.1,
                    persona={"name": "Wren", "maker": "Example Labs", "tools": []})
    p = sft_persona(cfg)
    assert (p.name, p.tools) == ("Wren", ("calculator", "python", "search"))
    assert sft_persona(cfg.model_copy(update={"search_ratio": 0.0, "n_python": 0})).tools == ("calculator",)
