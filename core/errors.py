"""The one exit contract of every `crawl2chat` command (docs/CONTRACTS.md, "Exit codes").

    0  done
    1  an unexpected failure, or work that failed (one line on stderr + the path of the full log)
    2  refused before any work: bad input or configuration (one line naming what and how to fix it)
    3  partial: the command finished but lost inputs (curate, pipeline) unless --allow-partial

Code anywhere below the CLI raises one of these; `crawl2chat.cli.main` turns them into the
exit code and one line on stderr, never a traceback. A plain `ValueError`/`FileNotFoundError`
raised before any work started also counts as a refusal (exit 2): that is how config loading,
path checks and the checkpoint resolver already say "bad input".
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_PARTIAL = 3


class CommandError(Exception):
    """An outcome the CLI reports in one line with `exit_code`."""

    exit_code = EXIT_FAILED


class Refused(CommandError, ValueError):
    """Bad input or configuration found before any work started (exit 2)."""

    exit_code = EXIT_REFUSED


class StageFailedError(CommandError, RuntimeError):
    """The stage's work failed (a model registration the store refused, an evaluation that crashed): exit 1."""

    exit_code = EXIT_FAILED


class PartialResult(CommandError):
    """The work finished but lost inputs, and the run did not allow that (exit 3)."""

    exit_code = EXIT_PARTIAL
