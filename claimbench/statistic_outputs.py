"""What each kind of statistic reports: the names a claim's rule and premises may read.

Shared by the claims loader (a rule reading a name its statistic does not produce is an error when the
claims load) and the study that computes the statistic; neither imports the other for it.
"""

from __future__ import annotations

COMMON = {"estimate", "ci_lo", "ci_hi"}
PER_ARM = ("mean", "sd", "n", "min", "max")  # what the statistic reports of each arm's values


def output_names(stat: dict) -> set[str]:
    """Names a rule may read for this statistic (with the claim's arm names filled in)."""
    kind = stat["kind"]
    arms = stat.get("arms") or ([stat["arm"]] if stat.get("arm") else [])
    per_arm = {f"{p}_{a}" for a in arms for p in (*PER_ARM, "diverged_frac", "diverged")}
    if kind == "mean":
        return COMMON | per_arm | {"sd", "n", "diverged_frac"}
    if kind in ("difference", "ratio"):
        return COMMON | per_arm | {"sd", "n_a", "n_b", "paired"}
    if kind == "diverged_fraction":
        return COMMON | per_arm | {"n", "k"}
    if kind == "best_of_sweep":
        return COMMON | per_arm | {"best", "argbest", "log2_argbest", "at_edge", "resolution"}
    if kind == "optimum_shift":
        return COMMON | {"resolution", "at_edge"} | {f"{p}_{a}" for a in arms for p in
                                                    ("shift", "max_abs_shift", "best", "best_base")}
    if kind == "trend":
        return COMMON | {"rho_min", "rho_max", "n"}
    if kind == "from_file":
        return COMMON | set(stat.get("values", {}))
    raise ValueError(kind)
