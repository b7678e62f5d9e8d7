"""Export to Hugging Face transformers (lm/hf.py, `crawl2chat export`): the exported model computes our
logits, its chat template renders our token ids, and transformers' greedy generate replies as our engine.

The trained model is the toy chat model (tests/support/toy.py: default options, so it exports with its own
code, trust_remote_code=True); models with the stock-architecture options export as transformers' own
Qwen3ForCausalLM / LlamaForCausalLM, with no code in the directory.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")

from crawl2chat.cli import main  # noqa: E402
from lm.chat import ChatRenderer  # noqa: E402
from lm.checkpoint import load_model  # noqa: E402
from lm.engine import Engine  # noqa: E402
from lm.hf import export_hf, stock_architecture  # noqa: E402
from lm.model import GPT, GPTConfig  # noqa: E402
from tests.support.shared import shared_root
from tests.support.toy import SHAKESPEARE, make_toy_checkpoint  # noqa: E402

CONVERSATION = [
    {"role": "system", "content": "You are crawl2chat. Tools: calculator."},
    {"role": "user", "content": "What is 12+7? Say it  twice,\nplease."},
    {"role": "assistant", "content": [{"type": "text", "text": "Let me compute."},
                                      {"type": "tool_call", "text": "calculator: 12+7"}]},
    {"role": "tool", "content": "19"},
    {"role": "assistant", "content": "It is 19. 19!"},
    {"role": "user", "content": "Thanks."},
    {"role": "assistant", "content": "You're welcome."},
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(our model, tokenizer, export dir): the toy chat model, exported through the CLI."""
    torch.set_num_threads(1)
    ckpt = make_toy_checkpoint(shared_root(tmp_path_factory) / "toy-model", steps=150)  # shared with other tests
    out = tmp_path_factory.mktemp("hf") / "toy-hf"
    assert main(["export", "--model", str(ckpt), "--format", "hf", "--out", str(out)]) == 0
    model, tok, _ = load_model(ckpt)
    return model.eval(), tok, out


def _hf(out):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(out, trust_remote_code=True)


def _ids(x) -> list[int]:
    return list(x["input_ids"] if hasattr(x, "keys") else x)


def test_exported_model_computes_our_logits_and_renders_our_chat_ids(exported):
    model, tok, out = exported
    assert (out / "modeling_crawl2chat.py").exists() and (out / "generation_config.json").exists()
    hf_model, hf_tok = _hf(out)
    text = SHAKESPEARE.read_text()[10_000:10_600]
    ids = tok.encode(text, prepend_bos=True)[:model.config.sequence_len]
    assert _ids(hf_tok(text))[:len(ids)] == ids  # the exported tokenizer prepends BOS, as Llama's do
    with torch.no_grad():
        ours = model(torch.tensor([ids]))
        theirs = hf_model(torch.tensor([ids])).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    back, _, _ = load_model(out)  # the export is a --model too
    with torch.no_grad():
        assert torch.equal(back(torch.tensor([ids])), ours)

    r = ChatRenderer(tok)
    assert _ids(hf_tok.apply_chat_template(CONVERSATION, tokenize=True)) == r.render(CONVERSATION).ids
    prompt = CONVERSATION[:-1]
    assert (_ids(hf_tok.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True))
            == r.render_for_completion(prompt))
    # OpenAI-style tool calls render as the same CALL text (`name: arguments`)
    openai_style = [*CONVERSATION[:2], {"role": "assistant", "content": "Let me compute.", "tool_calls": [
        {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "12+7"}}}]},
        *CONVERSATION[3:]]
    assert _ids(hf_tok.apply_chat_template(openai_style, tokenize=True)) == r.render(CONVERSATION).ids


def test_transformers_greedy_replies_equal_our_engine(exported):
    """Greedy replies (the engine `serve` runs, at temperature 0, tools off) equal transformers.generate's."""
    model, tok, out = exported
    hf_model, hf_tok = _hf(out)
    engine = Engine(model, tok, tools=None)
    for conv in ([{"role": "user", "content": "What is 23+45?"}],
                 [{"role": "system", "content": "Speak like a poet."}, {"role": "user", "content": "First Citizen:"}]):
        prompt = ChatRenderer(tok).render_for_completion(conv)
        ours = engine.generate([prompt], max_new_tokens=24, temperature=0.0)[0].tokens
        x = torch.tensor([_ids(hf_tok.apply_chat_template(conv, tokenize=True, add_generation_prompt=True))])
        assert x[0].tolist() == prompt
        theirs = hf_model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=24)[0, x.size(1):].tolist()
        assert theirs == ours and len(ours) > 1


@pytest.mark.parametrize("arch,options", [
    ("qwen3", dict(mlp="swiglu", softcap=0.0, embed_norm=False, norm_weights=True, n_kv_head=1)),
    ("llama", dict(mlp="swiglu", softcap=0.0, embed_norm=False, qk_norm=False, tie_embeddings=True)),
])
def test_stock_options_export_as_the_stock_architecture(tmp_path, exported, arch, options):
    from transformers import AutoModelForCausalLM

    _, tok, _ = exported
    torch.manual_seed(0)
    cfg = GPTConfig(**{**dict(vocab_size=tok.vocab_size, sequence_len=64, n_layer=2, n_head=2, n_kv_head=2,
                              n_embd=64), **options})
    assert stock_architecture(cfg) == arch
    model = GPT(cfg).eval()
    with torch.no_grad():  # off the init (zero projections, unit gains), so every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    summary = export_hf(model, tok, tmp_path / arch)
    assert not summary["trust_remote_code"] and not list((tmp_path / arch).glob("*.py"))
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / arch, dtype=torch.float32).eval()
    assert type(hf_model).__name__ == summary["architecture"] == f"{'Qwen3' if arch == 'qwen3' else 'Llama'}ForCausalLM"
    x = torch.tensor([tok.encode(SHAKESPEARE.read_text()[:400], prepend_bos=True)[:64]])
    with torch.no_grad():
        assert (model(x) - hf_model(x).logits).abs().max().item() <= 1e-4
        # our KV-cached engine (GQA, learned gains, SwiGLU) and transformers' cached generate agree
        ours = Engine(model, tok, tools=None).generate([x[0, :20].tolist()], 12, temperature=0.0)[0].tokens
        theirs = hf_model.generate(x[:, :20], attention_mask=torch.ones_like(x[:, :20]), max_new_tokens=12)
        assert theirs[0, 20:20 + len(ours)].tolist() == ours
    back, _, meta = load_model(tmp_path / arch)  # and it imports back onto our GPT
    with torch.no_grad():
        assert (back(x) - model(x)).abs().max().item() <= 1e-4
    assert meta["hf_import"]["added_tokens"] == []


def test_new_options_are_off_by_default_and_leave_old_configs_as_they_were():
    old = {"vocab_size", "sequence_len", "n_layer", "n_head", "n_kv_head", "n_embd", "softcap", "rope_base",
           "qk_norm", "value_embeds", "resid_scalars"}
    cfg = GPTConfig()
    assert set(cfg.to_dict()) == old and stock_architecture(cfg) is None
    assert set(GPT(GPTConfig(n_layer=1, vocab_size=64, n_embd=64, n_head=2, n_kv_head=2)).state_dict()) == {
        "transformer.wte.weight", "lm_head.weight", *(f"transformer.h.0.{k}.weight" for k in (
            "attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))}


def test_lm_imports_without_transformers():
    """The GPU box has no guarantee of transformers: lm/ (lm.hf and the checkpoint loader too) imports without it."""
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import lm.hf, lm.checkpoint, lm.engine, lm.model; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
