"""`crawl2chat curate`: WARC files → clean, deduplicated, PII-free Parquet (the `curate` flow)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "curate", help="curate Common Crawl WARC files into clean Parquet shards",
        description="Read WARC/WET files (local paths, globs, directories, https:// or s3:// URLs), filter "
                    "them with FineWeb's recipe, remove near-duplicates (MinHash) and PII, and write "
                    "OUT/curated/*.parquet, OUT/stats.json (the funnel) and an MLflow run `curate`. Work "
                    "runs on Ray ($RAY_ADDRESS or a local instance), orchestrated by Prefect "
                    "($PREFECT_API_URL or a local API); MLflow uses $MLFLOW_TRACKING_URI or OUT/mlflow.db. "
                    "Re-running skips finished shards.")
    p.add_argument("--input", action="append", default=[], metavar="PATH_OR_URL_OR_GLOB",
                   help="a WARC/WET file, directory, glob, https:// or s3:// URL (repeatable)")
    p.add_argument("--crawl", default=None, metavar="CC-MAIN-YYYY-WW",
                   help="read the first --warc-files WARCs listed in crawl-data/<crawl>/warc.paths.gz")
    p.add_argument("--warc-files", type=int, default=None, metavar="N", help="how many WARCs of --crawl")
    p.add_argument("--base-url", default=None,
                   help="where crawl-data/ lives for --crawl (default: config crawl_base_url, "
                        "https://data.commoncrawl.org)")
    p.add_argument("--out", required=True, help="output root (curated/, work/, stats.json, mlflow.db)")
    p.add_argument("--preset", default=None, help="config preset (conf/presets/<name>.yaml); default tiny if present")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or local)")
    p.add_argument("--extractor", choices=["trafilatura", "resiliparse"], default=None,
                   help="text extractor (default from config: trafilatura)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="curate only the first N input files (quick runs)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--shard-of", default=None, metavar="K/M",
                   help="curate only part K of M (1 ≤ K ≤ M) of the inputs: input j goes to part j mod M + 1, "
                        "so M machines given the same inputs (e.g. --crawl C --warc-files N) and K = 1..M "
                        "split them without overlap")
    p.add_argument("--allow-partial", action="store_true",
                   help=f"exit 0 even if some inputs could not be read completely (default: exit "
                        f"{EXIT_PARTIAL}; the lost inputs are listed in OUT/stats.json either way)")
    p.add_argument("--set", action="append", default=[], metavar="curate.KEY=VALUE",
                   help="override one curate config value, e.g. --set curate.remote_retries=20 "
                        "(repeatable; VALUE is YAML)")
    p.set_defaults(func=run)


# Exit status of a run that finished but lost inputs (unreachable, or cut short by network
# faults past the retry limits) — unless --allow-partial (the one contract: core/errors.py).
from core.errors import EXIT_PARTIAL  # noqa: E402


def parse_shard(spec: str) -> tuple[int, int]:
    """"K/M" → (K, M) with 1 ≤ K ≤ M."""
    k, sep, m = spec.partition("/")
    if not sep or not k.strip().isdigit() or not m.strip().isdigit() or not 1 <= int(k) <= int(m):
        raise ValueError(f"--shard-of {spec!r}: expected K/M with 1 ≤ K ≤ M, e.g. --shard-of 2/8")
    return int(k), int(m)


def resolve_inputs(args: argparse.Namespace, cfg) -> list[str]:
    """The inputs this invocation curates: --input and --crawl, then its --shard-of part."""
    from tasks.curation.remote import RetryPolicy
    from tasks.curation.warc import crawl_warc_urls, expand_inputs, take_shard

    inputs = expand_inputs(args.input) if args.input else []
    if args.crawl:
        inputs += crawl_warc_urls(args.crawl, args.warc_files, cfg.crawl_base_url, RetryPolicy.from_config(cfg))
    if args.shard_of:
        inputs = take_shard(inputs, *parse_shard(args.shard_of))
    return inputs


def run(args: argparse.Namespace) -> int:
    import conf
    from conf.curate import CurateConfig
    from conf.stages import row
    from crawl2chat.stage_cli import check_preset, stage_overrides

    if not args.input and not args.crawl:
        raise ValueError("give --input PATH_OR_URL_OR_GLOB (repeatable) or --crawl CC-MAIN-... --warc-files N")
    if args.crawl and not args.warc_files:
        raise ValueError("--crawl needs --warc-files N (how many WARC files of the crawl to read)")
    if args.warc_files is not None and args.warc_files < 1:
        raise ValueError("--warc-files must be ≥ 1")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be ≥ 1")
    if args.shard_of:
        parse_shard(args.shard_of)  # a typo is an error before any listing is read
    check_preset(args.preset)
    sets = stage_overrides(args, row("curate"))  # an unknown key: exit 2 naming the valid ones
    preset = args.preset or ("tiny" if "tiny" in conf.preset_names() else None)
    cfg = conf.load(CurateConfig, preset, {
        **sets, "ray_address": args.ray_address, "crawl_base_url": args.base_url,
        "extractor": args.extractor, "max_warc_files": args.limit})

    # Every input is checked before anything starts (no Prefect/Ray/MLflow yet).
    inputs = resolve_inputs(args, cfg)
    if not inputs:
        raise ValueError("no input files found")
    if args.crawl and args.limit is None:
        cfg.max_warc_files = None  # --warc-files is an explicit count: the preset's cap does not apply
    if cfg.max_warc_files and len(inputs) > cfg.max_warc_files:
        print(f"curate: the {preset or 'default'} config caps inputs at max_warc_files={cfg.max_warc_files}; "
              f"curating {cfg.max_warc_files} of {len(inputs)} (use --limit N to change)", file=sys.stderr)
        inputs = inputs[: cfg.max_warc_files]

    from flows.curate import run_curate

    print(f"curate: {len(inputs)} input file(s) → {args.out}", file=sys.stderr)
    summary = run_curate(inputs, args.out, cfg, num_cpus=args.num_cpus, allow_partial=args.allow_partial)
    print(f"curated {summary['documents']} documents in {summary['shards']} shards → {summary['curated']} "
          f"({summary['wall_seconds']:.1f}s; funnel in {summary['out']}/stats.json, "
          f"MLflow run {summary['mlflow_run_id']})")
    if summary["failed_inputs"]:
        by_reason: dict[str, int] = {}
        for reason in summary["failed"].values():
            by_reason[reason] = by_reason.get(reason, 0) + 1
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(by_reason.items()))
        # On stdout, beside the result line: the output is missing these inputs' documents.
        print(f"curate: PARTIAL: {summary['failed_inputs']} of {len(inputs)} input(s) not read completely "
              f"({reasons}); their documents are missing (listed in {summary['out']}/stats.json "
              f"failed_inputs). Re-run the same command to retry them, from their checkpoints.")
        if not summary.get("manifest_written", True):
            print(f"curate: no {summary['curated']}/manifest.json written: the output is not complete")
        if not args.allow_partial:
            print(f"curate: exit {EXIT_PARTIAL} (pass --allow-partial to accept a partial result)")
            return EXIT_PARTIAL
    if not summary.get("records_read"):
        from core.errors import Refused

        why = ", ".join(f"{k}: {v}" for k, v in (summary.get("read_errors") or {}).items()) or "no records"
        raise Refused(f"no input yielded a single WARC record ({why} among {len(inputs)} file(s)); --input must "
                      "name WARC/WET files (.warc, .warc.gz, .warc.wet.gz)")
    return 0
