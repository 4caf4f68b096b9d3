"""Subcommands of `claimbench`, one module each: `register(subparsers)` adds the parser and
sets `fn` (returns the exit code). New modules here are picked up automatically. Subcommands that
belong to a plugin package live in its `cli.py` and reach `claimbench` through the registry
(`claimbench.registry.commands`)."""
