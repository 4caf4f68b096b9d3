"""The Multi-Power Law's fitting procedures against its authors' released fitter, on their published curves.

Fits on cosine_24000, constant_24000 and wsdcon_9 and reports the mean and worst relative error of the
predicted final loss on the other six schedules, per model size, for: our converged fit with the LR
interpolated from the logged column or rebuilt exactly from each curve's name, the release's
early-stopped AdamW procedure (`fit="release"`) the same two ways, the release's recorded parameters run
through our predictor, and the release's own recorded errors (methods/optlaws/report.py,
MPL_RELEASE_REFERENCE). About a minute of CPU per size.

    .venv/bin/python benchmarks/mpl_release.py --curves DIR [--json OUT]

DIR holds one folder per size named 25, 100, 400 (or csv_25, ... as in the release repository's
loss_curve_repo), each with the nine step,lr,loss CSVs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from methods.optlaws.report import mpl_comparison_markdown, mpl_release_comparison


def size_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for size in ("25", "100", "400"):
        for name in (size, f"csv_{size}"):
            if (root / name).is_dir():
                found[size] = root / name
                break
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--curves", type=Path, required=True, help="folder with 25/, 100/, 400/ (or csv_25/, ...)")
    ap.add_argument("--json", type=Path, help="write every number (per curve, parameters) here")
    args = ap.parse_args(argv)
    dirs = size_dirs(args.curves)
    if not dirs:
        print(f"{args.curves}: no folder named 25, 100 or 400 (or csv_25, csv_100, csv_400)", file=sys.stderr)
        return 2
    res = mpl_release_comparison(dirs)
    print(mpl_comparison_markdown(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
