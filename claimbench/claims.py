"""The claims registry: `benchmarks/claims/<paper>.yaml`, validated by `schema.json` and by the
cross-checks a schema cannot express (arm names, rule variables, metric names, unique ids).

Any mistake is one line naming the file and the key. Whether the plugins a grid names exist is a
separate question (`unknown_plugins`): a claim whose method has not landed yet is still a valid
claim, shown as `not_run`; only *selecting* it for training is an error (`select_grid`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

from claimbench.config import ConfigError, closest
from claimbench.evidence import check_metric_name
from claimbench.grid import RunSpec, expand, method_name
from claimbench.study import PER_ARM, output_names
from claimbench.verdicts import names_in

REPO = Path(__file__).resolve().parents[1]
CLAIMS_DIR = REPO / "benchmarks" / "claims"
PROFILES = ("smoke", "cpu", "gpu", "paper")


@dataclass
class Claim:
    id: str
    paper: dict
    statement: str
    source: str
    paper_value: dict
    grid: dict
    statistic: dict
    rule: dict
    ours: dict = field(default_factory=dict)
    file: str = ""
    test: dict | None = None  # the pre-registered test; when set it decides, not `rule`
    premises: list = field(default_factory=list)
    placebo: dict | None = None

    def entries(self, profile: str) -> dict[str, dict]:
        """Arm name -> grid entry (config defaulted to benchmarks/configs/<workload>.yaml)."""
        return {arm: {"config": f"benchmarks/configs/{e['workload']}.yaml", **e, "name": f"{self.id}:{arm}"}
                for arm, e in self.grid_at(profile).items()}

    def grid_at(self, profile: str) -> dict[str, dict]:
        """The arms as written for this profile; a tier without its own reads those of the profile it extends."""
        from claimbench.tiers import chain

        return next((self.grid[t] for t in reversed(chain(profile)) if self.grid.get(t)), {})

    def arms(self, profile: str) -> dict[str, dict[str, RunSpec]]:
        """Arm name -> its runs (ids as the Snakefile's, so runs shared with other claims are shared)."""
        return {arm: expand([e]) for arm, e in self.entries(profile).items()}


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((CLAIMS_DIR / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _where(doc: dict, path) -> str:
    """A readable key path: claims[2] becomes claims[2](nowarmup.crash)."""
    out, node = [], doc
    for p in path:
        if isinstance(p, int):
            cid = node[p].get("id") if isinstance(node, list) and isinstance(node[p], dict) else None
            out[-1] += f"[{p}]" + (f"({cid})" if cid else "")
        else:
            out.append(str(p))
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(out) or "(top level)"


def _schema_error(path: Path, doc: dict) -> str | None:
    err = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    if err is None:
        return None
    where = _where(doc, err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0] if extra else "?"
        hint = closest(key, allowed)
        return f"{path}: {where}: unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if err.validator in ("anyOf", "oneOf") and all("required" in sub for sub in err.validator_value):
        keys = " or ".join(f"'{sub['required'][0]}'" for sub in err.validator_value)
        return f"{path}: {where}: needs {keys}"
    return f"{path}: {where}: {err.message}"


def load_file(path: str | Path) -> list[Claim]:
    """One claims file -> its claims; ConfigError naming the file and key on any mistake."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a claims file is a mapping with 'paper' and 'claims'")
    msg = _schema_error(path, doc)
    if msg:
        raise ConfigError(msg)
    paper = doc["paper"]
    if paper["id"] != path.stem:
        raise ConfigError(f"{path}: paper.id '{paper['id']}' must equal the file name '{path.stem}'")
    for i, c in enumerate(doc["claims"]):
        c["grid"] = _resolve_entries(paper["id"], c["grid"], f"{path}: claims[{i}]({c['id']}).grid")
    claims, seen = [], set()
    for i, c in enumerate(doc["claims"]):
        where = f"{path}: claims[{i}]({c['id']})"
        if c["id"] in seen:
            raise ConfigError(f"{where}.id: duplicate claim id")
        seen.add(c["id"])
        if c["id"].split(".")[0] != paper["id"]:
            raise ConfigError(f"{where}.id: must start with '{paper['id']}.'")
        _check_claim(c, where)
        claims.append(Claim(id=c["id"], paper=paper, statement=c["statement"], source=c["source"],
                            paper_value=c["paper_value"], grid=c["grid"], statistic=c["statistic"],
                            rule=c.get("rule", {}), ours=c.get("ours", {}), file=str(path), test=c.get("test"),
                            premises=c.get("premises", []), placebo=c.get("placebo")))
    return claims


_ENTRY_KEYS = ("config", "data", "workload", "size", "recipes", "methods", "seeds", "set", "sweep")


def _resolve_entries(paper_id: str, grid: dict, where: str) -> dict:
    """Arms written `{entry: NAME, ...}` become the paper's own grid entry NAME at that profile (the first entry of
    that name in its manifest's grid file), the keys beside `entry` replacing the entry's (`set` merged key by key):
    one source for the runs a claim and the paper's analysis share."""
    if not any("entry" in arm for arms in grid.values() for arm in arms.values()):
        return grid
    from claimbench.papers import discover

    paper = discover().get(paper_id)
    out = {}
    for profile, arms in grid.items():
        entries = (paper.grid_config(profile).get("grid") or []) if paper else []
        out[profile] = {}
        for name, arm in arms.items():
            if "entry" not in arm:
                out[profile][name] = arm
                continue
            found = next((e for e in entries if e.get("name") == arm["entry"]), None)
            if found is None:
                names = list(dict.fromkeys(e.get("name", "") for e in entries))
                hint = closest(arm["entry"], names)
                raise ConfigError(f"{where}.{profile}.{name}.entry: no grid entry '{arm['entry']}' in paper "
                                  f"{paper_id}'s grid at {profile}"
                                  + (f" (did you mean '{hint}'?)" if hint else ""))
            resolved = {k: found[k] for k in _ENTRY_KEYS if k in found}
            resolved.update({k: v for k, v in arm.items() if k not in ("entry", "set")})
            if "set" in arm:
                resolved["set"] = {**found.get("set", {}), **arm["set"]}
            out[profile][name] = resolved
    return out


def _check_claim(c: dict, where: str) -> None:
    stat = c["statistic"]
    named = list(stat.get("arms", [])) + ([stat["arm"]] if "arm" in stat else [])
    for profile, arms in c["grid"].items():
        for a in named:
            if a not in arms:
                hint = closest(a, arms)
                raise ConfigError(f"{where}.statistic: arm '{a}' is not in grid.{profile}"
                                  + (f" (did you mean '{hint}'?)" if hint else f" (arms: {', '.join(arms)})"))
        for key in (stat.get("over"), stat.get("across")):
            for a in named:
                if key and key not in arms[a].get("sweep", {}):
                    raise ConfigError(f"{where}.statistic: '{key}' is not a sweep key of grid.{profile}.{a}")
    if "metric" in stat:
        try:
            check_metric_name(stat["metric"])
        except ConfigError as e:
            raise ConfigError(f"{where}.statistic.{e}") from None
    known = output_names(stat) | {"paper_effect"}
    if "test" in c:
        _check_test(c, where, named)
    grid_arms = {a for arms in c["grid"].values() for a in arms}  # every arm's runs are read, so premises may
    per_arm = {f"{p}_{a}" for a in grid_arms for p in ("diverged", "diverged_frac")}  # read any arm's misses
    per_arm |= {f"{p}_{a}" for a in grid_arms for p in PER_ARM} if "metric" in stat else set()
    for i, prem in enumerate(c.get("premises", [])):
        _check_names(prem["holds_if"], known | per_arm, f"{where}.premises[{i}]({prem['name']})")
        for profile, arms in c["grid"].items() if "interior" in prem else ():
            for a in prem["interior"]["arms"]:
                if a not in arms:
                    raise ConfigError(f"{where}.premises[{i}].interior.arms: '{a}' is not an arm of grid.{profile}")
                if prem["interior"]["over"] not in arms[a].get("sweep", {}):
                    raise ConfigError(f"{where}.premises[{i}].interior.over: '{prem['interior']['over']}' is not a "
                                      f"sweep key of grid.{profile}.{a}")
    for key in [k for k in ("reproduced_if", "not_reproduced_if") if "rule" in c]:
        _check_names(c["rule"][key], known, f"{where}.rule.{key}")
        if "paper_effect" in names_in(c["rule"][key]) and "paper_effect" not in c["rule"]:
            raise ConfigError(f"{where}.rule.{key}: uses 'paper_effect' but rule.paper_effect is not set")


def _check_names(expr: str, known: set[str], where: str) -> None:
    try:
        unknown = names_in(expr) - known
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    if unknown:
        name = sorted(unknown)[0]
        hint = closest(name, known)
        raise ConfigError(f"{where}: unknown name '{name}'"
                          + (f" (did you mean '{hint}'?)" if hint else f" (known: {', '.join(sorted(known))})"))


def _check_test(c: dict, where: str, named: list[str]) -> None:
    """A test block: a known kind, its required thresholds as constants, min_seeds >= 2, arms of the grid."""
    from claimbench.hypotheses import ARM_TESTS, OPTIONAL, REQUIRED, TESTS

    t = c["test"]
    kind = t["kind"]
    if kind not in TESTS:
        hint = closest(kind, TESTS)
        raise ConfigError(f"{where}.test.kind: unknown test kind '{kind}'"
                          + (f" (did you mean '{hint}'?)" if hint else f" (kinds: {', '.join(sorted(TESTS))})"))
    for key in t:
        if key not in OPTIONAL:
            raise ConfigError(f"{where}.test.{key}: unknown key" + (f" (did you mean '{closest(key, OPTIONAL)}'?)"
                                                                     if closest(key, OPTIONAL) else ""))
    for key in sorted(REQUIRED[kind]):
        if key not in t:
            raise ConfigError(f"{where}.test.{key}: required for a {kind} test")
    for key in ("alpha", "margin", "paper_effect", "effect_fraction"):
        if key in t and (isinstance(t[key], bool) or not isinstance(t[key], (int, float))):
            raise ConfigError(f"{where}.test.{key}: must be a number fixed in the YAML (got {t[key]!r})")
    if "margin" in t and not t["margin"] > 0:
        raise ConfigError(f"{where}.test.margin: must be > 0")
    if "min_seeds" in t and (not isinstance(t["min_seeds"], int) or t["min_seeds"] < 2):
        raise ConfigError(f"{where}.test.min_seeds: must be an integer >= 2 (got {t['min_seeds']!r})")
    if kind in ARM_TESTS:
        arms = t.get("arms") or c["statistic"].get("arms", [])[:2]
        if len(arms) != 2:
            raise ConfigError(f"{where}.test.arms: a {kind} test compares two arms")
        for profile, grid in c["grid"].items():
            for a in arms + list((c.get("placebo") or {}).get("arms", [])) + \
                    ([c["placebo"]["split"]] if c.get("placebo", {}).get("split") else []):
                if a not in grid:
                    raise ConfigError(f"{where}: arm '{a}' of the test or placebo is not in grid.{profile}")
    if (c.get("placebo") or {}).get("from_file") and (kind in ARM_TESTS or c["statistic"]["kind"] != "from_file"):
        raise ConfigError(f"{where}.placebo.from_file: only for a from_file statistic with an interval or hit_rate "
                          "test (an arm test names its placebo's arms)")
    if (c.get("placebo") or {}).get("metric"):
        if kind != "interval" or c["statistic"]["kind"] == "from_file" or "metric" not in c["statistic"]:
            raise ConfigError(f"{where}.placebo.metric: only for a statistic that reads a metric, with an interval "
                              "test (an arm test names its placebo's arms)")
        try:
            check_metric_name(c["placebo"]["metric"])
        except ConfigError as e:
            raise ConfigError(f"{where}.placebo.{e}") from None
    if kind == "interval" and (not isinstance(t["band"], list) or len(t["band"]) != 2):
        raise ConfigError(f"{where}.test.band: [low, high]")


def claims_files(claims_dir: str | Path = CLAIMS_DIR) -> list[Path]:
    """The claims files in `claims_dir`; for the repository's own directory, also those of the papers registered
    from outside it (claimbench/papers.py: a `claimbench.papers` entry point names its own claims file)."""
    files = sorted(Path(claims_dir).glob("*.yaml"))
    if Path(claims_dir).resolve() == CLAIMS_DIR.resolve():
        from claimbench.papers import external_claims_files

        files += external_claims_files(CLAIMS_DIR)
    return files


def load_all(claims_dir: str | Path = CLAIMS_DIR) -> list[Claim]:
    """Every claim of every paper, in file then document order."""
    out: list[Claim] = []
    for f in claims_files(claims_dir):
        out += load_file(f)
    return out


def papers(claims: list[Claim]) -> dict[str, dict]:
    return {c.paper["id"]: c.paper for c in claims}


def unknown_plugins(claim: Claim, profile: str) -> list[str]:
    """'method adamw2', 'workload vit', ... that the grid at this profile names but nobody registered."""
    from claimbench import registry

    known = {k: set(registry.names(k)) for k in ("workload", "recipe", "method")}
    missing: list[str] = []
    for e in claim.entries(profile).values():
        names = [("workload", e["workload"])] + [("recipe", r) for r in e.get("recipes", ["adamw"])]
        sweep = e.get("sweep", {})
        names += [("recipe", r) for r in sweep.get("recipe", [])]
        method_lists = e.get("methods", [[]]) + sweep.get("methods", [])
        names += [("method", method_name(m)) for ms in method_lists for m in ms]
        for kind, name in names:
            label = f"{kind} '{name}'"
            if name not in known[kind] and label not in missing:
                missing.append(label)
    return missing


def select_grid(paper_ids: list[str], profile: str, data_names: list[str] | None = None,
                claims: list[Claim] | None = None) -> list[dict]:
    """Grid entries of every claim of the selected papers at `profile`, for the Snakefile.

    Raises ConfigError naming an unknown paper, plugin or data set before anything is trained.
    """
    claims = load_all() if claims is None else claims
    known_papers = papers(claims)
    entries: list[dict] = []
    for pid in paper_ids:
        if pid not in known_papers:
            hint = closest(pid, known_papers)
            raise ConfigError(f"config papers: unknown paper '{pid}'" + (f" (did you mean '{hint}'?)" if hint else
                                                                        f"; known: {', '.join(known_papers)}"))
        for c in (c for c in claims if c.paper["id"] == pid):
            unknown = unknown_plugins(c, profile)
            if unknown:
                raise ConfigError(f"config papers: claim {c.id} ({c.file}) at profile '{profile}' needs "
                                  f"{', '.join(unknown)}, which is not registered (`claimbench list`)")
            check_options(c, profile)
            for arm, e in c.entries(profile).items():
                data = e.get("data", "shakespeare")
                if data_names is not None and data not in data_names:
                    raise ConfigError(f"{c.file}: {c.id}: grid.{profile}.{arm}.data: '{data}' is not a data set "
                                      f"of the {profile} profile (has: {', '.join(data_names)})")
                entries.append(e)
    return entries


def check_options(claim: Claim, profile: str) -> None:
    """Every run config of the claim validates: size, model, recipe and method options (no training, no data)."""
    from claimbench import registry
    from claimbench.config import load_config
    from claimbench.plugin import validate_options

    for arm, specs in claim.arms(profile).items():
        for spec in specs.values():
            try:
                cfg = load_config(REPO / spec.config, list(spec.sets))
                registry.get("workload", cfg.workload)(cfg)  # size and model options (reads no data)
                rc = registry.get("recipe", cfg.recipe.name)
                validate_options(rc.Options, cfg.recipe.options, f"recipe ({cfg.recipe.name})")
                for i, ref in enumerate(cfg.methods):
                    cls = registry.get("method", ref.name)
                    validate_options(cls.Options, ref.options, f"methods[{i}] ({ref.name})")
            except ConfigError as e:
                raise ConfigError(f"{claim.file}: {claim.id}: grid.{profile}.{arm}: {e}") from None


def covered(claim: Claim, profile: str, run_ids: set[str]) -> bool:
    """True when the DAG trains every run the claim needs at this profile (so it gets a study job)."""
    arms = claim.arms(profile)
    return bool(arms) and all(rid in run_ids for specs in arms.values() for rid in specs)
