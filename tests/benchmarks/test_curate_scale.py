"""benchmarks/curate_scale.py dedup runs on small GENERATED signature sets and prints the growth figures."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_dedup_part_prints_growth_and_agreement():
    r = subprocess.run([sys.executable, "benchmarks/curate_scale.py", "dedup", "--docs", "4000", "8000",
                        "--partitions", "3", "--rate-docs", "200"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [ln for ln in r.stdout.splitlines() if ln.strip().startswith('{"docs"')]
    assert len(rows) == 2 and all('"same_clusters": true' in ln for ln in rows), r.stdout
    assert "growth of lsh_band_s" in r.stdout and "projection for 3e+09 documents" in r.stdout


def test_lsh_io_part_reads_a_share_per_partition_and_gives_the_same_pairs():
    r = subprocess.run([sys.executable, "benchmarks/curate_scale.py", "lsh-io", "--docs", "40000", "--partitions", "4",
                        "--bands", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "identical on both layouts: true" in r.stdout, r.stdout
    ratio = next(ln for ln in r.stdout.splitlines() if "old/new read_mb_total" in ln)
    assert float(ratio.split(":")[1].split("×")[0]) > 3, ratio  # 4 tasks: each read the band, now a quarter
