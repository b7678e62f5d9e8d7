"""The console script: subcommands registered, help works, errors are clean."""
import subprocess
import sys

from crawl2chat.cli import build_parser


def test_help_lists_registered_stages():
    parser = build_parser()
    help_text = parser.format_help()
    assert "curate" in help_text


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "crawl2chat" in out.stdout
