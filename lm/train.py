"""GPT pretraining on token shards: one script for 1 CPU, 1 GPU or N GPUs.

    python -m lm.train --tokens DIR --out DIR [--preset tiny] [--max-steps N] [--resume]
    torchrun --nproc_per_node=8 -m lm.train --tokens DIR --out DIR --config cfg.json

What it does, and why:
- bf16 autocast on GPU (fp32 master weights), optional `torch.compile`, fused
  AdamW (or Muon for the block matrices), gradient accumulation up to
  `total_batch_tokens`, gradient clipping, LR schedule by step (lm/schedule.py).
- Data order is a pure function of the seed and the data (lm/data.py); under
  DDP rank r takes its slice of each global batch, so N ranks train on exactly
  what one process would.
- Checkpoints (`<out>/latest`, `<out>/final`) hold weights, optimizer state,
  step, data position and RNG state, written atomically every
  `checkpoint_every` steps and when SIGTERM arrives (the handler only sets a
  flag; the checkpoint is written at the next step boundary, where the state is
  consistent). `resume=True` continues exactly: on CPU with a fixed seed an
  interrupted-and-resumed run logs the same losses, bit for bit, as an
  uninterrupted one.
- Validation loss and bits-per-byte on the held-out split, sampled
  continuations, tokens/s and MFU go to a pluggable `TrainLogger`.

Reused by post-training: `save_train_state`, `restore_train_state`,
`capture_rng_state`/`restore_rng_state`, `autocast_context`, `resolve_device`.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from conf.pretrain import PretrainSettings
from conf.settings import load_settings
from core.run_root import resolve_checkpoint
from lm.checkpoint import CheckpointError, load_train_state, load_weights, read_meta, save_checkpoint
from lm.data import TokenBatchLoader, eval_batches
from lm.model import GPT, GPTConfig, OPTION_DEFAULTS
from lm.optim import build_optimizer, set_lr
# Device/dtype/torchrun set-up lives in lm/runtime.py (the only copy).
from lm.runtime import autocast_context, dist_env, peak_flops_for, setup_runtime
from lm.schedule import lr_multiplier, wd_multiplier
from lm.tokens import TokenShards, token_bytes
from lm.tracking import JsonlLogger, MLflowLogger, MultiLogger, TrainLogger

# the stock-architecture options PretrainSettings declares (head_size comes from head_dim there)
GPT_OPTIONS = tuple(k for k in OPTION_DEFAULTS if k != "head_size")

log = logging.getLogger(__name__)

# -------------------------------------------------------------- train state
def capture_rng_state() -> dict[str, Any]:
    """torch (CPU, CUDA), numpy and python RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_train_state(directory: str | Path, model: torch.nn.Module, optimizer, step: int, tokenizer=None,
                     meta: dict[str, Any] | None = None, data_state: dict[str, Any] | None = None,
                     extra: dict[str, Any] | None = None) -> Path:
    """Atomically write a resumable checkpoint: weights + optimizer, step, data position, RNG."""
    train_state = {"step": int(step), "optimizer": optimizer.state_dict(), "rng": capture_rng_state(),
                   "data": data_state or {}, "extra": extra or {}}
    return save_checkpoint(directory, model, tokenizer, {"step": int(step), **(meta or {})}, train_state=train_state)


def restore_train_state(directory: str | Path, model: torch.nn.Module, optimizer=None,
                        device: str | torch.device = "cpu", restore_rng: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer state, RNG) from a checkpoint into live objects.

    Returns the saved train state (`step`, `data`, `extra`, ...). Raises
    CheckpointError naming the file when anything is missing or corrupt.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    base = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
    saved_cfg = meta.get("model")
    if saved_cfg is not None and hasattr(base, "config"):  # fields added since the checkpoint take their defaults
        saved_cfg = type(base.config).from_dict(saved_cfg).to_dict()
    if saved_cfg is not None and hasattr(base, "config") and saved_cfg != base.config.to_dict():
        raise CheckpointError(f"checkpoint {directory} holds a different model ({saved_cfg}) than this run "
                              f"({base.config.to_dict()}); use the same depth/sequence_len or a fresh --out")
    state = load_weights(directory, device)
    try:
        base.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {directory} do not fit the model: {e}") from e
    ts = load_train_state(directory)
    if ts is None:
        raise CheckpointError(f"checkpoint {directory} has no train_state.pt, so it cannot be resumed "
                              "(it is a weights-only export); start a fresh run")
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ts["optimizer"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"optimizer state in {directory} does not fit this run: {e}") from e
    if restore_rng and "rng" in ts:
        restore_rng_state(ts["rng"])
    return ts


def find_resume_checkpoint(out_dir: str | Path) -> Path:
    """The most advanced resumable checkpoint under `out_dir` (`latest` or `final`), or an error saying why none."""
    out_dir = Path(out_dir)
    best = resolve_checkpoint(out_dir, purpose="resume")
    if best is None:
        leftovers = sorted(p.name for p in out_dir.glob("*.tmp-*")) if out_dir.exists() else []
        hint = f" (only unfinished writes: {leftovers})" if leftovers else ""
        raise CheckpointError(f"nothing to resume in {out_dir}: no latest/ or final/ checkpoint{hint}; "
                              "run without --resume to start fresh")
    return best


# ------------------------------------------------------------------- pieces
class _StopFlag:
    """Set by SIGTERM; read at step boundaries."""

    def __init__(self):
        self.set = False
        self._previous = None

    def install(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. a Prefect worker thread)
            log.warning("not in the main thread: SIGTERM will not trigger a checkpoint")

    def _handle(self, signum, frame) -> None:
        self.set = True

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches, bytes_per_token: torch.Tensor, device: torch.device,
             dtype: torch.dtype, world_size: int = 1) -> dict[str, float]:
    """Mean loss and bits-per-byte over fixed batches (summed over all ranks).

    bpb counts only targets that stand for text (special tokens have 0 bytes),
    so it is comparable across tokenizers: nats / (ln 2 · bytes).
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, count, text nats, bytes
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast_context(device, dtype):
            loss = model(x, y, loss_reduction="none").float()
        nb = bytes_per_token[y]
        sums += torch.stack([loss.sum().double(), torch.tensor(float(loss.numel()), device=device, dtype=torch.float64),
                             (loss * (nb > 0)).sum().double(), nb.sum().double()])
    if world_size > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    loss_sum, count, nats, nbytes = sums.tolist()
    return {"val_loss": loss_sum / max(count, 1), "val_bpb": nats / (math.log(2) * nbytes) if nbytes else float("nan")}


def sample_texts(model: GPT, tokenizer, prompts, max_new_tokens: int, seed: int) -> list[str]:
    """Greedy-free continuations (temperature 1, top-k 50) of a few prompts."""
    was_training = model.training
    model.eval()
    out = []
    for i, prompt in enumerate(prompts):
        ids = [tokenizer.bos_id, *tokenizer.encode(prompt)]
        new = model.generate(ids, max_new_tokens, temperature=1.0, top_k=50, seed=seed + i)
        out.append(prompt + tokenizer.decode(new, skip_special=True))
    model.train(was_training)
    return out


class _LogProgress:
    """Stand-in for tqdm where it is not installed: a log line every ~5% of the run."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.total, self.n, self.enabled = total, initial, enabled
        self.every = max(1, total // 20)
        self.postfix: dict[str, Any] = {}

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.enabled and (self.n % self.every == 0 or self.n == self.total):
            log.info("pretrain %d/%d %s", self.n, self.total, " ".join(f"{k}={v}" for k, v in self.postfix.items()))

    def set_postfix(self, refresh: bool = False, **kw) -> None:
        self.postfix = kw

    def close(self) -> None:
        pass


def _progress_bar(total: int, initial: int, enabled: bool):
    try:  # tqdm is optional for lm/ (a bare GPU box may lack it)
        from tqdm.auto import tqdm
    except ImportError:
        return _LogProgress(total, initial, enabled)
    return tqdm(total=total, initial=initial, disable=not enabled, desc="pretrain", unit="step", dynamic_ncols=True)


def _clear_previous_run(out_dir: Path) -> None:
    """A fresh run must not leave an older run's checkpoints to be resumed or registered later."""
    import shutil

    old = [p for p in (out_dir / "latest", out_dir / "final", out_dir / "summary.json") if p.exists()]
    if old:
        log.warning("fresh run in %s: removing the previous run's %s", out_dir, [p.name for p in old])
    for p in old:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


# --------------------------------------------------------------------- loop
def train(cfg: PretrainSettings, tokens_dir: str | Path, out_dir: str | Path, *, resume: bool = False,
          logger: TrainLogger | None = None) -> dict[str, Any]:
    """Pretrain a GPT on `tokens_dir`, writing checkpoints and metrics under `out_dir`.

    Returns a summary: status (`completed` | `interrupted`), step, final/latest
    checkpoint paths, last val loss/bpb, tokens/s (also `<out_dir>/summary.json`
    once completed; the stage's manifest.json is the flow's to write, after it
    registered the model). Metrics go to `<out_dir>/metrics.jsonl` (rank 0)
    and to `logger`.
    """
    rt = setup_runtime(cfg.device, cfg.dtype)
    rank, world, device, dtype = rt.rank, rt.world, rt.device, rt.dtype
    master = rt.master
    out_dir = Path(out_dir)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
    stop = _StopFlag()
    stop.install()
    # A resumed run appends (steps redone after a crash appear twice, identical); a fresh one starts over.
    jsonl = JsonlLogger(out_dir / "metrics.jsonl", append=resume) if master else None
    logger = MultiLogger(jsonl, logger if master else None)
    try:
        return _train(cfg, Path(tokens_dir), out_dir, resume, logger, rank, world, device, dtype, stop)
    finally:
        stop.uninstall()
        logger.close()
        rt.close()


def _train(cfg, tokens_dir, out_dir, resume, logger, rank, world, device, dtype, stop) -> dict[str, Any]:
    master = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    # ---- data and tokenizer
    train_shards = TokenShards(tokens_dir, "train")
    tokenizer = train_shards.load_tokenizer()
    vocab_size = int(train_shards.vocab_size)
    loader = TokenBatchLoader(train_shards, cfg.device_batch_size, cfg.sequence_len, seed=cfg.seed,
                              rank=rank, world_size=world, pin_memory=device.type == "cuda")
    tokens_per_micro = cfg.device_batch_size * cfg.sequence_len * world
    total_batch = cfg.total_batch_tokens or tokens_per_micro
    if total_batch % tokens_per_micro:
        raise ValueError(f"total_batch_tokens={total_batch} is not a multiple of device_batch_size × sequence_len "
                         f"× world_size = {tokens_per_micro}; change one of them")
    grad_accum = total_batch // tokens_per_micro
    val_shards = TokenShards(tokens_dir, "val")
    val = eval_batches(val_shards, cfg.device_batch_size, cfg.sequence_len, cfg.eval_tokens,
                       rank=rank, world_size=world) if val_shards.n_tokens else []
    if not val and master:
        log.warning("no usable val split in %s (%d tokens): validation loss/bpb skipped",
                    tokens_dir, val_shards.n_tokens)
    bytes_per_token = torch.from_numpy(token_bytes(tokenizer).astype(np.int64)).to(device)

    # ---- model and optimizer
    mcfg = GPTConfig.from_depth(cfg.depth, vocab_size, cfg.sequence_len, aspect_ratio=cfg.aspect_ratio,
                                head_dim=cfg.head_dim, kv_ratio=cfg.kv_ratio, rope_base=cfg.rope_base,
                                softcap=cfg.softcap, qk_norm=cfg.qk_norm, value_embeds=cfg.value_embeds,
                                resid_scalars=cfg.resid_scalars,
                                **{k: getattr(cfg, k) for k in GPT_OPTIONS})
    model = GPT(mcfg).to(device)
    optimizer = build_optimizer(model, optimizer=cfg.optimizer, lr=cfg.lr, embedding_lr=cfg.embedding_lr,
                                muon_lr=cfg.muon_lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2),
                                batch_tokens=total_batch, ref_batch_tokens=cfg.lr_ref_batch_tokens,
                                ref_width=cfg.lr_ref_width)
    step = 0
    if not resume and master:
        _clear_previous_run(out_dir)
    if resume:
        ckpt = find_resume_checkpoint(out_dir)
        ts = restore_train_state(ckpt, model, optimizer, device=device)
        loader.load_state_dict(ts["data"])
        step = int(ts["step"])
        if master:
            log.info("resumed from %s at step %d", ckpt, step)
    run_model = torch.compile(model) if cfg.compile else model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        train_model = DDP(run_model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        train_model = run_model

    flops_per_token = model.estimate_flops_per_token()
    peak = peak_flops_for(device, cfg.peak_flops)
    meta = {"kind": "base", "parent": None, "tokens_dir": str(tokens_dir), "train_config": cfg.model_dump(),
            "tokenizer_sha256": train_shards.meta.get("tokenizer_sha256")}
    if master:
        logger.log_params({**{f"train.{k}": v for k, v in cfg.model_dump().items()},
                           **{f"model.{k}": v for k, v in mcfg.to_dict().items()},
                           "n_params": model.num_params(), "world_size": world, "grad_accum": grad_accum,
                           **{f"lr_scale.{g['name']}": g["lr_scale"] for g in optimizer.param_groups},
                           "device": str(device), "dtype": str(dtype).removeprefix("torch.")})
        log.info("model %.2fM params (%s), %d rank(s) × %d accumulation × %d×%d tokens = %d tokens/step on %s",
                 model.num_params() / 1e6, mcfg, world, grad_accum, cfg.device_batch_size, cfg.sequence_len,
                 total_batch, device)

    def checkpoint(name: str) -> Path | None:
        path = None
        if master:
            path = save_train_state(out_dir / name, model, optimizer, step, tokenizer, meta, loader.state_dict())
        if world > 1:
            dist.barrier()
        return path

    def run_eval() -> dict[str, float]:
        if not val:
            return {}
        return evaluate(run_model, val, bytes_per_token, device, dtype, world)

    inloop = None
    if master and cfg.inloop_every:
        from lm.evals.core import InLoopEval

        try:
            inloop = InLoopEval(tokenizer, cfg.inloop_tasks, cfg.inloop_items)
        except (FileNotFoundError, ValueError) as e:  # no benchmark data: train on, say so once
            log.warning("in-loop eval off: %s", e)

    bar = _progress_bar(cfg.max_steps, step, enabled=master and cfg.progress)
    last_val: dict[str, float] = {}
    tok_per_s = 0.0
    status = "completed"
    last_saved = step if resume else -1
    stop_t = torch.zeros(1, device=device)
    train_model.train()
    while step < cfg.max_steps:
        if world > 1:  # all ranks must agree to stop at the same step
            stop_t.fill_(1.0 if stop.set else 0.0)
            dist.all_reduce(stop_t, op=dist.ReduceOp.MAX)
            stop.set = bool(stop_t.item())
        if stop.set:
            status = "interrupted"
            break
        t0 = time.perf_counter()
        mult = lr_multiplier(step, cfg.max_steps, cfg.warmup_steps, cfg.schedule, cfg.min_lr_ratio, cfg.decay_frac,
                             cfg.decay_shape)
        set_lr(optimizer, mult, wd_multiplier(step, cfg.max_steps, cfg.wd_schedule))
        loss_sum = torch.zeros((), device=device)
        for micro in range(grad_accum):
            x, y = loader.next_batch()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = train_model.no_sync() if world > 1 and micro < grad_accum - 1 else nullcontext()
            with sync:
                with autocast_context(device, dtype):
                    loss = train_model(x, y)
                (loss / grad_accum).backward()
            loss_sum += loss.detach()
        clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        train_loss = loss_sum / grad_accum
        if world > 1:
            dist.all_reduce(train_loss, op=dist.ReduceOp.SUM)
            train_loss = train_loss / world
        loss_val = float(train_loss.item())  # also waits for the GPU, so dt is real
        dt = time.perf_counter() - t0
        tok_per_s = total_batch / dt
        if not math.isfinite(loss_val):
            raise FloatingPointError(f"training loss became {loss_val} at step {step}; lower lr or check the data")
        metrics = {"loss": loss_val, "lr": cfg.lr * mult, "lr_mult": mult, "grad_norm": float(grad_norm),
                   "tokens_per_s": tok_per_s, "tokens_seen": step * total_batch, "step_time_s": dt}
        if peak:
            metrics["mfu"] = flops_per_token * tok_per_s / (peak * world)
        at_end = step == cfg.max_steps
        evaluated = bool(cfg.eval_every and step % cfg.eval_every == 0) or at_end
        if evaluated:
            last_val = run_eval()
            metrics.update(last_val)
        if inloop is not None and (step % cfg.inloop_every == 0 or at_end):
            metrics.update(inloop(model))
            evaluated = True
        if master and (step % max(1, cfg.log_every) == 0 or evaluated):
            logger.log_metrics(metrics, step)
        if master and ((cfg.sample_every and step % cfg.sample_every == 0) or at_end) and cfg.sample_tokens > 0:
            texts = sample_texts(model, tokenizer, cfg.sample_prompts, cfg.sample_tokens, cfg.seed)
            logger.log_text("\n\n".join(texts), "samples", step)
            for t in texts:
                log.info("sample @%d: %r", step, t)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_val:.3f}", tok_s=f"{tok_per_s:,.0f}", refresh=False)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and not at_end:
            checkpoint("latest")
            last_saved = step
    bar.close()

    if status == "interrupted":
        if last_saved != step:
            checkpoint("latest")
        if master:
            log.warning("stopped by SIGTERM at step %d; checkpoint %s written, resume with --resume",
                        step, out_dir / "latest")
    elif last_saved != step or not (out_dir / "final").exists():
        checkpoint("final")
    summary = {"status": status, "step": step, "max_steps": cfg.max_steps,
               "final_dir": str(out_dir / "final") if status == "completed" else None,
               "latest_dir": str(out_dir / "latest") if (out_dir / "latest").exists() else None,
               "tokens_per_s": tok_per_s, "n_params": model.num_params(), "world_size": world,
               "tokens_seen": step * total_batch, **last_val}
    if master and status == "completed":
        _atomic_json(out_dir / "summary.json", summary)
    return summary


# ---------------------------------------------------------------------- CLI
def _parse_value(s: str) -> Any:
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def config_from_args(args: argparse.Namespace) -> PretrainSettings:
    """Preset (conf/presets, needs pyyaml) or JSON config, then --set/--max-steps overrides."""
    values: dict[str, Any] = {}
    if args.preset:  # the plain settings loader: no pydantic needed (conf/settings.py)
        values.update(load_settings(PretrainSettings, args.preset).model_dump())
    if args.config:
        values.update(json.loads(Path(args.config).read_text()))
    for item in args.set or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        values[k.strip()] = _parse_value(v)
    if args.max_steps is not None:
        values["max_steps"] = args.max_steps
    return PretrainSettings.from_dict(values)


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    p = argparse.ArgumentParser(prog="python -m lm.train", description=__doc__.split("\n")[0])
    p.add_argument("--tokens", required=True, help="tokenize output dir (or its tokens/ folder)")
    p.add_argument("--out", required=True, help="run directory for checkpoints and metrics")
    p.add_argument("--preset", help="conf/presets/<name>.yaml pretrain section")
    p.add_argument("--config", help="JSON file of PretrainSettings fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one setting (repeatable)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--resume", action="store_true", help="continue from <out>/latest exactly")
    p.add_argument("--mlflow-run-id", help="log metrics to this MLflow run (rank 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_args(args)
    logger = MLflowLogger(args.mlflow_run_id) if args.mlflow_run_id else None
    try:
        summary = train(cfg, args.tokens, args.out, resume=args.resume, logger=logger)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        print(f"lm.train: error: {e}", file=sys.stderr)
        return 2
    if dist_env()[0] == 0:
        print(json.dumps(summary, default=str))
    return 143 if summary["status"] == "interrupted" else 0


if __name__ == "__main__":
    sys.exit(main())
