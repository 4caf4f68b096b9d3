"""Subcommands of `claimbench`, one module each: `register(subparsers)` adds the parser and
sets `fn` (returns the exit code). New modules here are picked up automatically."""
