"""The stage table: every stage of the recipe is one row, and this is the only list of them.

The pipeline (flows/pipeline.py), the deployments (flows/deployments.py), the report card
(tasks/report.py) and the command line (crawl2chat/cli.py) are all built from `STAGES`.
Adding a stage = its config, its logic (tasks/, lm/), its flow (flows/<name>.py, a flow
function named like the stage), one row here, its tests.

A row is plain data (standard library only): conf/ is a leaf that the GPU box, lm/ and
every layer above may read.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Input:
    """One input of a stage: the flow's parameter, its command-line flag, and where the pipeline gets it.

    source: "checkpoint:<stage>" (the model that stage finished and registered),
    "dir:<stage>[/<sub>]" (that stage's output folder), or "" (only ever given by hand).
    """

    param: str
    source: str
    help: str
    required: bool = True
    many: bool = False  # a list (nargs="+")
    aliases: tuple[str, ...] = ()  # older flags that keep working

    @property
    def flag(self) -> str:
        return "--" + self.param.replace("_", "-")

    @property
    def source_stage(self) -> str | None:
        return self.source.split(":", 1)[1].split("/", 1)[0] if ":" in self.source else None


@dataclass(frozen=True)
class Shorthand:
    """A flag kept from before `--set` existed: `--steps 5` is `--set <stage>.steps=5`."""

    flag: str
    key: str
    type: str = "str"  # int | float | str | bool
    help: str = ""


@dataclass(frozen=True)
class StageRow:
    name: str  # command, flow name, folder under the run root, preset section, `--set` prefix
    help: str  # one line: what the stage does
    config: str  # "module:Class" of its config
    writes: str  # the file (under the stage's folder) that marks its output complete
    inputs: tuple[Input, ...] = ()
    after: tuple[str, ...] = ()  # stages that must be complete before it runs in the pipeline
    registers: str | None = None  # the MLflow registered model it creates
    ray: bool = False  # its tasks run on Ray
    shorthands: tuple[Shorthand, ...] = ()
    aliases: tuple[str, ...] = ()  # other names of the command (`eval`)
    sections: tuple[str, ...] = field(default=())  # older preset sections / `--set` prefixes read as this one
    evaluated: bool = False  # its model is one the evaluate stage scores and the report card compares

    @property
    def section(self) -> str:
        return self.name

    @property
    def trains(self) -> bool:
        """A training stage: it registers a model."""
        return self.registers is not None


_MODEL = "checkpoint directory, stage directory (e.g. runs/demo/{s}) or models:/crawl2chat-{m}@latest"
_DEVICE = Shorthand("--device", "device", "str", "auto | cpu | cuda")
_STEPS = Shorthand("--steps", "steps", "int", "optimizer steps")

STAGES: tuple[StageRow, ...] = (
    StageRow("curate", "WARC → filtered, deduplicated, PII-scrubbed Parquet (on Ray)", "conf.curate:CurateConfig",
             "curated/manifest.json", ray=True),
    StageRow("tokenize", "train a byte-level BPE tokenizer on curated text and write token shards",
             "conf.tokenize:TokenizeConfig", "tokens/meta.json",
             inputs=(Input("data", "dir:curate", "a curate output dir or a folder of Parquet files with `text`"),),
             after=("curate",), ray=True,
             shorthands=(Shorthand("--vocab-size", "vocab_size", "int", "vocabulary size incl. bytes and specials"),
                         Shorthand("--val-fraction", "val_fraction", "float", "share of documents held out"),
                         Shorthand("--max-chars", "max_chars", "int", "characters used to train the tokenizer"))),
    StageRow("pretrain", "pretrain a GPT on token shards; registers crawl2chat-base", "conf.pretrain:PretrainConfig",
             "manifest.json", registers="crawl2chat-base",
             inputs=(Input("tokens", "dir:tokenize/tokens", "tokenize output directory (or its tokens/ folder)"),),
             after=("tokenize",), evaluated=True,
             shorthands=(Shorthand("--max-steps", "max_steps", "int", "optimizer steps"), _DEVICE,
                         Shorthand("--compile", "compile", "bool", "torch.compile the model"),
                         Shorthand("--nproc-per-node", "nproc_per_node", "int", "processes (GPUs) for torchrun/DDP"))),
    StageRow("index", "build the full-text search index (Tantivy, BM25) of the curated corpus", "conf.index:IndexConfig",
             "manifest.json", inputs=(Input("data", "dir:curate", "a curate output dir or a folder of Parquet files"),),
             after=("curate",),
             shorthands=(Shorthand("--passage-words", "passage_words", "int", "words per passage"),
                         Shorthand("--top-k", "top_k", "int", "passages the search tool returns"),
                         Shorthand("--max-tokens", "max_tokens", "int", "token budget of the search tool's output"))),
    StageRow("probe", "probe a model on TriviaQA; write known-answer and refusal SFT conversations",
             "conf.probe:ProbeConfig", "manifest.json",
             inputs=(Input("model", "checkpoint:pretrain", _MODEL.format(s="pretrain", m="base")),),
             after=("pretrain",),
             shorthands=(Shorthand("--n-questions", "n_questions", "int", "questions to probe"),
                         Shorthand("--samples", "samples", "int", "replies sampled per question (k)"),
                         Shorthand("--prompt", "prompt", "str", "auto | chat | fewshot"), _DEVICE)),
    StageRow("sft", "fine-tune a model on conversations (loss on assistant tokens only); registers crawl2chat-sft",
             "conf.posttrain:SFTConfig", "manifest.json", registers="crawl2chat-sft",
             inputs=(Input("model", "checkpoint:pretrain", _MODEL.format(s="pretrain", m="base")),),
             after=("pretrain",), evaluated=True,
             shorthands=(_STEPS, Shorthand("--batch-size", "batch_size", "int"), Shorthand("--lr", "lr", "float"),
                         _DEVICE)),
    StageRow("rl", "RL (GRPO family) on problems with checkable answers; registers crawl2chat-rl",
             "conf.posttrain:RLConfig", "manifest.json", registers="crawl2chat-rl",
             inputs=(Input("model", "checkpoint:sft", _MODEL.format(s="sft", m="sft")),), after=("sft",),
             evaluated=True,
             shorthands=(_STEPS, Shorthand("--task", "task", "str", "gsm8k | arithmetic"),
                         Shorthand("--difficulty", "difficulty", "int", "arithmetic difficulty (1 = one-digit sums)"),
                         Shorthand("--samples", "samples_per_prompt", "int", "k completions per prompt"),
                         Shorthand("--kl-coef", "beta", "float", "KL coefficient (TRL's beta; 0 loads no reference)"),
                         _DEVICE)),
    StageRow("reward", "train a reward model on preference pairs and rankings; registers crawl2chat-reward",
             "conf.posttrain:RewardConfig", "manifest.json", registers="crawl2chat-reward",
             inputs=(Input("model", "checkpoint:sft", _MODEL.format(s="sft", m="sft")),
                     Input("prefs", "", "preference files (HH-RLHF jsonl[.gz], DPO json, rankings jsonl)",
                           required=False, many=True)),
             after=("sft",),
             shorthands=(_STEPS, Shorthand("--split-salt", "split_salt", "str", "another salt, another split"),
                         _DEVICE)),
    StageRow("rlhf", "optimise a policy against a reward model with a KL penalty; registers crawl2chat-rlhf",
             "conf.posttrain:RLHFConfig", "manifest.json", registers="crawl2chat-rlhf",
             inputs=(Input("policy", "checkpoint:sft", _MODEL.format(s="sft", m="sft")),
                     Input("reward", "checkpoint:reward", _MODEL.format(s="reward", m="reward")),
                     Input("check_reward", "", "an independent second reward model (another split)", required=False),
                     Input("prompts", "", "preference/prompt files to draw prompts from", required=False, many=True)),
             after=("sft", "reward"), evaluated=True,
             shorthands=(_STEPS, Shorthand("--kl-coef", "kl_coef", "float"), Shorthand("--kl-max", "kl_max", "float"),
                         _DEVICE)),
    StageRow("dpo", "direct preference optimisation with a frozen reference; registers crawl2chat-dpo",
             "conf.posttrain:DPOConfig", "manifest.json", registers="crawl2chat-dpo",
             inputs=(Input("model", "checkpoint:sft", _MODEL.format(s="sft", m="sft")),
                     Input("prefs", "", "preference files", required=False, many=True)),
             after=("sft",), evaluated=True,
             shorthands=(_STEPS, Shorthand("--beta", "beta", "float"), _DEVICE)),
    StageRow("evaluate", "evaluate a model (bpb, GSM8K, arithmetic, chat format, CORE, chat suites) + report card",
             "conf.evaluate:EvalConfig", "manifest.json",
             inputs=(Input("model", "checkpoint:sft", _MODEL.format(s="sft", m="sft")),
                     Input("tokens", "dir:tokenize/tokens", "token directory with val_*.bin shards (bits per byte)",
                           required=False)),
             after=("pretrain", "sft"), aliases=("eval",), sections=("eval",),
             shorthands=(Shorthand("--gsm8k-n", "gsm8k_n", "int", "held-out GSM8K problems to score"),
                         Shorthand("--suite", "suite", "str", "comma list of basic, core, chat"), _DEVICE)),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def row(name: str) -> StageRow:
    """The row of stage `name` (or of one of its aliases)."""
    for s in STAGES:
        if name == s.name or name in s.aliases or name in s.sections:
            return s
    raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


def registered_models() -> dict[str, str]:
    """Stage → the MLflow model it registers (training stages only)."""
    return {s.name: s.registers for s in STAGES if s.registers}
