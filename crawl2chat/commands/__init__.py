"""One module per `crawl2chat` subcommand; see crawl2chat/cli.py."""
