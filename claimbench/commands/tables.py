"""`claimbench tables | figures | study`: rebuild results from the run files already on disk.

Nothing is trained: each run is read from the runs directory, or from the evidence store where the
runs directory lacks it (a fresh clone has only the store); a run in neither (or whose files are
corrupt, named in a warning) makes its claim `not_run`. The profile's config (`config/<profile>.yaml`)
says where runs, results and evidence live.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import yaml

from claimbench.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


def evidence_dir(cfg: dict) -> Path:
    """A profile's evidence store: its `evidence_dir`, by default results/evidence/<profile>."""
    return Path(cfg.get("evidence_dir") or f"results/evidence/{cfg['profile']}")


def load_profile(profile: str, configfile: str | None = None) -> dict:
    """A profile's config (config/<profile>.yaml): where its runs, results and evidence live."""
    cfg_path = Path(configfile) if configfile else REPO / "config" / f"{profile}.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"--profile/--configfile: {cfg_path} not found")
    cfg = yaml.safe_load(cfg_path.read_text()) or {}
    for key in ("profile", "runs_dir", "results_dir"):
        if key not in cfg:
            raise ConfigError(f"{cfg_path}: missing key '{key}'")
    return cfg


def _paths(args) -> tuple[str, Path, Path, Path]:
    if args.runs_dir and args.results_dir and not args.configfile:  # the DAG passes everything explicitly
        store = args.evidence_dir or evidence_dir({"profile": args.profile})
        return args.profile, Path(args.runs_dir), Path(args.results_dir), Path(store)
    cfg = load_profile(args.profile, args.configfile)
    return (cfg["profile"], Path(args.runs_dir or cfg["runs_dir"]), Path(args.results_dir or cfg["results_dir"]),
            Path(args.evidence_dir) if args.evidence_dir else evidence_dir(cfg))


def _load(args):
    from claimbench.claims import CLAIMS_DIR, load_all

    claims = load_all(args.claims_dir or CLAIMS_DIR)
    if getattr(args, "claim", None):
        ids = {c.id for c in claims}
        if args.claim not in ids:
            raise ConfigError(f"unknown claim '{args.claim}' (claims: {', '.join(sorted(ids))})")
        claims = [c for c in claims if c.id == args.claim]
    return claims


@contextmanager
def _reporting_warnings():
    """Collect warnings (corrupt run files, unusable values) and print each once, after the work."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for msg in sorted({str(w.message) for w in caught}):
        print(f"warning: {msg}", file=sys.stderr)


def _studies(args):
    """(profile, results dir, claims, studies) for the claims and run files the arguments name."""
    from claimbench.tables import build_studies, sources

    profile, runs_dir, results_dir, store = _paths(args)
    claims = _load(args)
    studies = build_studies(claims, profile, runs_dir, results_dir, store)
    print(sources(studies, runs_dir), file=sys.stderr)
    return profile, results_dir, claims, studies


def cmd_tables(args) -> int:
    from claimbench.figures import write_figures
    from claimbench.tables import verdict_counts, write_tables

    t0 = time.perf_counter()
    with _reporting_warnings():
        profile, results_dir, claims, studies = _studies(args)
        figs = [] if args.no_figures else write_figures(studies, claims, results_dir)
        written = write_tables(studies, claims, results_dir, profile)
        written += _matrix_tables(args, profile, results_dir, figures=not args.no_figures)
    print(f"{results_dir / 'claims.md'}: {len(studies)} claims ({verdict_counts(studies)}); "
          f"{len(written)} tables, {len(figs)} figures in {time.perf_counter() - t0:.1f} s")
    return 0


def _matrix_tables(args, profile: str, results_dir: Path, figures: bool, tables: bool = True) -> list[Path]:
    """results/methods.md and interactions.md (tables) and the matrix heatmap (figures) when the profile has a
    method matrix (config/matrix.<profile>.yaml)."""
    path = REPO / "config" / f"matrix.{profile}.yaml"
    if getattr(args, "claim", None) or not path.is_file():
        return []
    from claimbench.matrix_table import matrix_tables

    _, runs_dir, _, store = _paths(args)
    return matrix_tables(path, runs_dir, results_dir, store, figures, tables)


def cmd_figures(args) -> int:
    from claimbench.figures import figures_dir, write_figures

    with _reporting_warnings():
        profile, results_dir, claims, studies = _studies(args)
        figs = write_figures(studies, claims, results_dir)
        figs += _matrix_tables(args, profile, results_dir, figures=True, tables=False)
    print(f"{figures_dir(results_dir)}: {len(figs)} figures")
    return 0


def cmd_study(args) -> int:
    from claimbench.tables import write_studies

    with _reporting_warnings():
        _, results_dir, _, studies = _studies(args)
    out = Path(args.out) if args.out else results_dir / "studies"
    write_studies(studies, out)
    for s in studies:
        print(f"{s['claim']}: {s['verdict']} ({s['why']})")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="smoke", help="reads config/<profile>.yaml for runs_dir and results_dir")
    p.add_argument("--configfile", help="a profile config file instead of config/<profile>.yaml")
    p.add_argument("--runs-dir", help="override the profile's runs_dir")
    p.add_argument("--results-dir", help="override the profile's results_dir")
    p.add_argument("--evidence-dir", help="override the profile's evidence store (default results/evidence/<profile>)")
    p.add_argument("--claims-dir", help="claims files (default benchmarks/claims)")


def register(sub) -> None:
    t = sub.add_parser("tables", help="rebuild claims.md/.csv, <paper>.md and figures from existing runs")
    _common(t)
    t.add_argument("--no-figures", action="store_true", help="tables only")
    t.set_defaults(fn=cmd_tables)
    f = sub.add_parser("figures", help="rebuild results/figures/*.png from existing runs")
    _common(f)
    f.set_defaults(fn=cmd_figures)
    s = sub.add_parser("study", help="one claim's (or every claim's) study JSON: numbers, verdict, provenance")
    _common(s)
    s.add_argument("claim", nargs="?", help="claim id (default: all)")
    s.add_argument("--out", help="directory for <claim>.json (default <results_dir>/studies)")
    s.set_defaults(fn=cmd_study)
