"""Hugging Face transformers, both ways: export a crawl2chat checkpoint, import a Llama/Qwen3 one.

Export (`export_hf`, `crawl2chat export --format hf`) writes a directory that
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` load:
- a model whose options are a stock architecture (`stock_architecture`:
  SwiGLU, no softcap, no embedding norm, no value embeddings or residual
  scalars) becomes transformers' own `Qwen3ForCausalLM` (QK-norm on) or
  `LlamaForCausalLM` (off): no custom code, so vLLM, llama.cpp's converter and
  every HF tool take it as it is;
- any other model ships its own code (`modeling_crawl2chat.py`, which runs
  lm/model.py's GPT, copied beside it as `crawl2chat_gpt.py`: one
  implementation) and loads with `trust_remote_code=True`.
Either way: safetensors weights, `generation_config.json`, and the tokenizer
with a Jinja chat template that renders a conversation to exactly the ids of
lm/chat.py (tests/lm/test_hf_export.py checks both).

Rotary convention: lm/model.py rotates each (first-half, second-half) pair of a
head the other way round from transformers' `rotate_half`; swapping the two
halves of every query/key head (rows of the q/k projections and the q/k norm
gains) turns one into the other and leaves q·k unchanged. The swap is its own
inverse, so import applies the same permutation.

Import (`load_transformers_dir`, reached through lm.checkpoint.load_model for
any `--model` that is a transformers directory of model_type llama, qwen3 or
crawl2chat): the weights map onto lm/model.py's GPT (one engine, one KV cache,
one training loop for every stage), and the tokenizer gains crawl2chat's chat
and tool special tokens; the embedding (and untied head) rows grow to the new
vocabulary, new rows start at the mean of the existing ones (so a new token
starts as an average token rather than noise), and the meta records what was
added (`hf_import`), which every stage's checkpoint keeps as its `parent`.

Neither way imports transformers: export writes the files itself (safetensors,
tokenizers), so a GPU box without transformers exports too, and lm/ imports without it.
"""
from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from core.run_root import CheckpointError
from lm.model import GPT, GPTConfig
from lm.tokenizer import SPECIAL_TOKENS, Tokenizer

STOCK_MODEL_TYPES = ("llama", "qwen3")
IMPORTABLE = (*STOCK_MODEL_TYPES, "crawl2chat")
FP32_EPS = float(torch.finfo(torch.float32).eps)  # what F.rms_norm uses for fp32 when norm_eps is 0

# lm/model.py name → transformers name, per layer (`{i}`) and global
LAYER_MAP = {
    "attn.c_q.weight": "self_attn.q_proj.weight", "attn.c_k.weight": "self_attn.k_proj.weight",
    "attn.c_v.weight": "self_attn.v_proj.weight", "attn.c_proj.weight": "self_attn.o_proj.weight",
    "attn.q_norm.weight": "self_attn.q_norm.weight", "attn.k_norm.weight": "self_attn.k_norm.weight",
    "norm_1.weight": "input_layernorm.weight", "norm_2.weight": "post_attention_layernorm.weight",
    "mlp.c_gate.weight": "mlp.gate_proj.weight", "mlp.c_fc.weight": "mlp.up_proj.weight",
    "mlp.c_proj.weight": "mlp.down_proj.weight",
}
GLOBAL_MAP = {"transformer.wte.weight": "model.embed_tokens.weight", "norm_f.weight": "model.norm.weight",
              "lm_head.weight": "lm_head.weight"}
ROTARY_SWAPPED = ("attn.c_q.weight", "attn.c_k.weight", "attn.q_norm.weight", "attn.k_norm.weight")


# ------------------------------------------------------------------ chat template
# Renders what lm/chat.py's ChatRenderer renders: render() for a conversation that ends with an assistant
# turn, render_for_completion() with add_generation_prompt. An assistant turn runs over consecutive
# assistant and tool messages; its content is a string or crawl2chat parts ({"type": "text"|"tool_call"|
# "tool_output", "text"}); OpenAI-style `tool_calls` render as `name: arguments` (the CALL syntax of
# lm/tools/__init__.py, a one-value arguments object as its value).
CHAT_TEMPLATE = (
    "{%- set ns = namespace(prev='') -%}"
    "{{- '<|bos|>' -}}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' or m.role == 'tool' -%}"
    "{%- if ns.prev != 'assistant' and ns.prev != 'tool' -%}{{- '<|assistant_start|>' -}}{%- endif -%}"
    "{%- if m.role == 'tool' -%}{{- '<|output_start|>' + m.content + '<|output_end|>' -}}"
    "{%- elif m.content is string -%}{{- m.content -}}"
    "{%- else -%}{%- for p in (m.content or []) -%}"
    "{%- if p.type == 'tool_call' -%}{{- '<|tool_start|>' + p.text + '<|tool_end|>' -}}"
    "{%- elif p.type == 'tool_output' -%}{{- '<|output_start|>' + p.text + '<|output_end|>' -}}"
    "{%- else -%}{{- p.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- for c in (m.tool_calls or []) -%}{%- set f = c.function if c.function is defined else c -%}"
    "{%- set a = f.arguments -%}{%- if a is mapping -%}{%- set a = (a.values() | list | first) -%}{%- endif -%}"
    "{{- '<|tool_start|>' + f.name + ': ' + (a | string) + '<|tool_end|>' -}}"
    "{%- endfor -%}"
    "{%- if loop.last or (loop.nextitem.role != 'assistant' and loop.nextitem.role != 'tool') -%}"
    "{%- if not (loop.last and add_generation_prompt) -%}{{- '<|assistant_end|>' -}}{%- endif -%}"
    "{%- endif -%}"
    "{%- else -%}{{- '<|' + m.role + '_start|>' + m.content + '<|' + m.role + '_end|>' -}}"
    "{%- endif -%}"
    "{%- set ns.prev = m.role -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and ns.prev != 'assistant' and ns.prev != 'tool' -%}"
    "{{- '<|assistant_start|>' -}}{%- endif -%}"
)


# ------------------------------------------------------------------ export
def stock_architecture(cfg: GPTConfig) -> str | None:
    """`qwen3` or `llama` when `cfg` computes exactly that transformers architecture, else None (custom code)."""
    if cfg.mlp != "swiglu" or cfg.softcap or cfg.embed_norm or cfg.value_embeds or cfg.resid_scalars:
        return None
    return "qwen3" if cfg.qk_norm else "llama"


def swap_rotary_halves(w: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Swap the two halves of every head along dim 0 (rows of q/k projections, or a head_dim-long gain)."""
    rest = w.shape[1:]
    return w.reshape(-1, 2, head_dim // 2, *rest).flip(1).reshape(w.shape).contiguous()


def to_hf_state(model: GPT) -> dict[str, torch.Tensor]:
    """lm/model.py weights under transformers' Llama/Qwen3 names (norm gains of ones where ours have none)."""
    cfg = model.config
    ours = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    out = {GLOBAL_MAP[k]: ours[k].clone() for k in GLOBAL_MAP if k in ours}
    if cfg.tie_embeddings:
        out.pop("lm_head.weight", None)
    out.setdefault("model.norm.weight", torch.ones(cfg.n_embd))
    qk_norms = ("attn.q_norm.weight", "attn.k_norm.weight")
    for i in range(cfg.n_layer):
        for ours_name, hf_name in LAYER_MAP.items():
            if ours_name in qk_norms and not cfg.qk_norm:
                continue  # Llama
            w = ours.get(f"transformer.h.{i}.{ours_name}")
            if w is None:  # a norm without a learned gain: a gain of ones is the same function
                w = torch.ones(cfg.head_dim if ours_name in qk_norms else cfg.n_embd)
            if ours_name in ROTARY_SWAPPED:
                w = swap_rotary_halves(w, cfg.head_dim)
            out[f"model.layers.{i}.{hf_name}"] = w.clone()
    return out


def hf_config_dict(cfg: GPTConfig, arch: str, tok: Tokenizer) -> dict[str, Any]:
    """The transformers config of a stock-architecture export."""
    sp = tok.encode_special
    return {
        "architectures": ["Qwen3ForCausalLM" if arch == "qwen3" else "LlamaForCausalLM"],
        "model_type": arch, "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_width, "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head, "num_key_value_heads": cfg.n_kv_head, "head_dim": cfg.head_dim,
        "hidden_act": "silu", "max_position_embeddings": cfg.sequence_len,
        "rms_norm_eps": cfg.norm_eps or FP32_EPS, "tie_word_embeddings": cfg.tie_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(cfg.rope_base)},
        "attention_bias": False, "mlp_bias": False, "attention_dropout": 0.0, "use_cache": True,
        "bos_token_id": sp("<|bos|>"), "eos_token_id": sp("<|assistant_end|>"), "pad_token_id": sp("<|pad|>"),
        "dtype": "float32",
    }


def write_hf_tokenizer(tok: Tokenizer, out: Path, model_max_length: int) -> None:
    """tokenizer.json (special tokens matched in text, BOS prepended as Llama's do) + tokenizer_config.json."""
    from tokenizers import Tokenizer as HFTokenizer, processors

    hf = HFTokenizer.from_str(tok.to_json())
    hf.encode_special_tokens = False  # the chat template's markup must become special ids
    bos = "<|bos|>"
    hf.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B:1",
                                                      special_tokens=[(bos, tok.bos_id)])
    hf.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": "<|assistant_end|>",
        "pad_token": "<|pad|>", "add_bos_token": True, "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
    }, indent=2))
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": bos, "eos_token": "<|assistant_end|>", "pad_token": "<|pad|>"}, indent=2))


def generation_config_dict(tok: Tokenizer) -> dict[str, Any]:
    """Greedy by default; stops where lm/engine.py stops (<|assistant_end|>, <|bos|>)."""
    sp = tok.encode_special
    return {"bos_token_id": sp("<|bos|>"), "eos_token_id": [sp("<|assistant_end|>"), sp("<|bos|>")],
            "pad_token_id": sp("<|pad|>"), "do_sample": False}


CUSTOM_CONFIG = '''"""crawl2chat's GPT as a transformers config (written by crawl2chat export; lm/hf.py)."""
try:
    from transformers import PreTrainedConfig
except ImportError:  # transformers < 5
    from transformers import PretrainedConfig as PreTrainedConfig


class Crawl2ChatConfig(PreTrainedConfig):
    model_type = "crawl2chat"
    gpt: dict | None = None  # lm/model.py GPTConfig fields
    vocab_size: int = 0
    hidden_size: int = 0
    num_hidden_layers: int = 0
    num_attention_heads: int = 0
    max_position_embeddings: int = 0
'''

CUSTOM_MODELING = '''"""crawl2chat's GPT for transformers (written by crawl2chat export; lm/hf.py).

The network is lm/model.py itself (crawl2chat_gpt.py, copied verbatim). Each step recomputes the whole
context (no transformers KV cache); an attention mask with padding goes through the GPT's own padded
KV cache, which gives every row its own positions.
"""
import torch
import torch.nn.functional as F
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_crawl2chat import Crawl2ChatConfig
from .crawl2chat_gpt import GPT, GPTConfig, KVCache


class Crawl2ChatForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = Crawl2ChatConfig
    base_model_prefix = "gpt"
    main_input_name = "input_ids"
    _no_split_modules = ["Block"]

    def __init__(self, config):
        super().__init__(config)
        self.gpt = GPT(GPTConfig.from_dict(config.gpt))
        self.post_init()

    def _init_weights(self, module):
        pass  # every weight comes from model.safetensors

    def get_input_embeddings(self):
        return self.gpt.transformer.wte

    def get_output_embeddings(self):
        return self.gpt.lm_head

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        gpt = self.gpt
        if getattr(self, "_rotary_device", None) != input_ids.device:
            # non-persistent buffers: transformers materialises them empty when it loads, so build them here
            gpt.cos, gpt.sin = gpt._rotary_tables(gpt.rotary_len, device=input_ids.device)
            self._rotary_device = input_ids.device
        if attention_mask is not None and not bool(attention_mask.all()):
            cache = KVCache(input_ids.size(0), input_ids.size(1), gpt.config, device=input_ids.device,
                            dtype=gpt.lm_head.weight.dtype)
            logits = gpt(input_ids, kv_cache=cache, pad_mask=attention_mask.bool())
        else:
            logits = gpt(input_ids)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        return {"input_ids": input_ids, "attention_mask": attention_mask}
'''


def _custom_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict under `gpt.`; a tied head is saved as its own copy (safetensors stores no aliases)."""
    return {f"gpt.{k}": v.detach().float().cpu().clone() for k, v in model.state_dict().items()}


def export_hf(model: GPT, tok: Tokenizer, out: str | Path, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `model` + `tok` as a transformers directory at `out` (replaced); returns a summary."""
    import lm.model as model_module

    out = Path(out)
    tmp = out.with_name(f"{out.name}.tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cfg = model.config
    arch = stock_architecture(cfg)
    if arch:
        save_file(to_hf_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = hf_config_dict(cfg, arch, tok)
    else:
        save_file(_custom_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "configuration_crawl2chat.py").write_text(CUSTOM_CONFIG)
        (tmp / "modeling_crawl2chat.py").write_text(CUSTOM_MODELING)
        (tmp / "crawl2chat_gpt.py").write_text(inspect.getsource(model_module))
        sp = tok.encode_special
        config = {"architectures": ["Crawl2ChatForCausalLM"], "model_type": "crawl2chat",
                  "auto_map": {"AutoConfig": "configuration_crawl2chat.Crawl2ChatConfig",
                               "AutoModelForCausalLM": "modeling_crawl2chat.Crawl2ChatForCausalLM"},
                  "gpt": cfg.to_dict(), "vocab_size": cfg.vocab_size, "hidden_size": cfg.n_embd,
                  "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
                  "max_position_embeddings": cfg.sequence_len, "tie_word_embeddings": cfg.tie_embeddings,
                  "bos_token_id": sp("<|bos|>"), "eos_token_id": sp("<|assistant_end|>"),
                  "pad_token_id": sp("<|pad|>"), "use_cache": False, "dtype": "float32"}
    if meta:
        config["crawl2chat_meta"] = {k: meta[k] for k in ("kind", "step", "parent", "persona", "hf_import")
                                     if k in meta}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    gen = generation_config_dict(tok)
    if not arch:
        gen["use_cache"] = False  # the custom model recomputes the context each step
    (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
    write_hf_tokenizer(tok, tmp, cfg.sequence_len)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return {"out": str(out), "architecture": config["architectures"][0],
            "trust_remote_code": arch is None, "params": model.num_params()}


# ------------------------------------------------------------------ import
def is_transformers_dir(meta: dict[str, Any]) -> bool:
    """A transformers config.json (model_type, no crawl2chat `model` section)."""
    return "model_type" in meta and not isinstance(meta.get("model"), dict)


def _refuse(directory: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{directory}: {why}; crawl2chat imports Llama (e.g. SmolLM2) and Qwen3 checkpoints "
                           "with default rotary, SiLU MLP and no biases (docs/HUGGINGFACE.md)")


def gpt_config_from_hf(directory: Path, hf: dict[str, Any], max_context: int = 8192) -> GPTConfig:
    """GPTConfig for a transformers config.json; refuses what lm/model.py does not compute."""
    mt = hf.get("model_type")
    if mt == "crawl2chat":
        return GPTConfig.from_dict(hf.get("gpt") or {})
    if mt not in STOCK_MODEL_TYPES:
        raise _refuse(directory, f"model_type {mt!r} is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise _refuse(directory, f"hidden_act {hf.get('hidden_act')!r}")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise _refuse(directory, "attention/MLP biases")
    if hf.get("use_sliding_window"):
        raise _refuse(directory, "sliding-window attention")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise _refuse(directory, f"rope scaling {rope.get('rope_type', rope.get('type'))!r}")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    n_head = int(hf["num_attention_heads"])
    hidden = int(hf["hidden_size"])
    head_dim = int(hf.get("head_dim") or hidden // n_head)
    return GPTConfig(
        vocab_size=int(hf["vocab_size"]), sequence_len=min(int(hf.get("max_position_embeddings", 2048)), max_context),
        n_layer=int(hf["num_hidden_layers"]), n_head=n_head,
        n_kv_head=int(hf.get("num_key_value_heads") or n_head), n_embd=hidden, softcap=0.0,
        rope_base=float(theta), qk_norm=mt == "qwen3", mlp="swiglu", mlp_hidden=int(hf["intermediate_size"]),
        norm_weights=True, norm_eps=float(hf.get("rms_norm_eps", 1e-6)), embed_norm=False,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        head_size=0 if head_dim * n_head == hidden else head_dim)


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    index = directory / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    state: dict[str, torch.Tensor] = {}
    for name in files:
        if not (directory / name).exists():
            raise CheckpointError(f"{directory} has no {name} (only safetensors weights are read, never .bin "
                                  "pickles): convert it with transformers' save_pretrained(safe_serialization=True)")
        try:
            state.update(load_file(str(directory / name)))
        except Exception as e:  # safetensors raises its own error types for a corrupt file
            raise CheckpointError(f"corrupt weights in {directory / name}: {e}") from None
    return state


def from_hf_state(hf_state: dict[str, torch.Tensor], cfg: GPTConfig, model_type: str) -> dict[str, torch.Tensor]:
    """transformers Llama/Qwen3 (or crawl2chat-export) tensors under lm/model.py's names."""
    if model_type == "crawl2chat":
        return {k.removeprefix("gpt."): v for k, v in hf_state.items()}
    out = {ours: hf_state[hf] for ours, hf in GLOBAL_MAP.items() if hf in hf_state}
    if cfg.tie_embeddings:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    for i in range(cfg.n_layer):
        for ours_name, hf_name in LAYER_MAP.items():
            w = hf_state.get(f"model.layers.{i}.{hf_name}")
            if w is None:
                continue
            out[f"transformer.h.{i}.{ours_name}"] = (swap_rotary_halves(w, cfg.head_dim)
                                                     if ours_name in ROTARY_SWAPPED else w)
    return out


def add_chat_tokens(base_json: str) -> tuple[Tokenizer, int, list[str]]:
    """(tokenizer with crawl2chat's special tokens, base vocabulary size, tokens added)."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_str(base_json)
    base = hf.get_vocab_size(with_added_tokens=True)
    missing = [s for s in SPECIAL_TOKENS if hf.token_to_id(s) is None]
    hf.add_special_tokens(missing)
    hf.post_processor = None  # crawl2chat prepends BOS itself (Tokenizer.encode(prepend_bos=True))
    return Tokenizer(hf), base, missing


def resize_rows(w: torch.Tensor, n: int, n_real: int) -> torch.Tensor:
    """`w` with `n` rows: existing rows kept, new ones (and rows past the tokenizer's `n_real`) at the mean."""
    out = w.new_empty(n, w.size(1))
    keep = min(n_real, n, w.size(0))
    out[:keep] = w[:keep]
    out[keep:] = w[:keep].float().mean(0).to(w.dtype)
    return out


def load_transformers_dir(directory: str | Path, meta: dict[str, Any], device: str | torch.device = "cpu",
                          max_memory_bytes: int | None = None) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """(GPT, Tokenizer, meta) for a transformers checkpoint directory (see the module docstring)."""
    directory = Path(directory)
    mt = meta.get("model_type")
    if mt not in IMPORTABLE:
        raise _refuse(directory, f"model_type {mt!r} is not supported")
    tok_path = directory / "tokenizer.json"
    if not tok_path.exists():
        raise CheckpointError(f"{directory} has no tokenizer.json (a fast tokenizer): save the tokenizer with "
                              "transformers' AutoTokenizer.save_pretrained")
    try:
        tok, base_vocab, added = add_chat_tokens(tok_path.read_text())
    except Exception as e:  # a slow-only or non-byte-level tokenizer
        raise CheckpointError(f"{tok_path}: {e}; crawl2chat needs a byte-level BPE tokenizer (as Llama-3, "
                              "SmolLM2 and Qwen3 have)") from None
    try:
        cfg = gpt_config_from_hf(directory, meta)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: missing or bad field {e}; it is not a complete "
                              "transformers config") from None
    rows = cfg.vocab_size
    cfg.vocab_size = tok.vocab_size
    try:  # before any weight is read
        from lm.checkpoint import default_max_memory_bytes

        cfg.validate(max_memory_bytes or default_max_memory_bytes())
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    state = from_hf_state(_read_hf_weights(directory), cfg, mt)
    if tok.vocab_size != rows:
        state["transformer.wte.weight"] = resize_rows(state["transformer.wte.weight"], tok.vocab_size, base_vocab)
        if not cfg.tie_embeddings:
            state["lm_head.weight"] = resize_rows(state["lm_head.weight"], tok.vocab_size, base_vocab)
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device=device)
    # q/k norm gains exist only as parameters where the source had them (Qwen3); Llama has no qk_norm
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {directory} do not fit a {mt} model of its config.json: {e}") from None
    model.cos, model.sin = model._rotary_tables(model.rotary_len, device=device)
    model.tie_weights()
    out_meta = {"kind": f"hf-{mt}", "step": 0, "path": str(directory),
                "hf_import": {"model_type": mt, "base_vocab_size": base_vocab, "source_rows": rows,
                              "added_tokens": added, "vocab_size": tok.vocab_size}}
    if isinstance(meta.get("crawl2chat_meta"), dict):  # a crawl2chat export coming home keeps its persona
        out_meta = {**meta["crawl2chat_meta"], **out_meta}
    return model, tok, out_meta
