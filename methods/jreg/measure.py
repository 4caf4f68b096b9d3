"""Hidden states for the jump profile from a run's checkpoint or a Hugging Face causal LM directory.

Both paths measure BEFORE the final norm. Our GPT hands out its blocks' raw outputs. A Hugging Face
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
    block = wl.opts.block_size
    if text is not None:
        from benchmarks.data.text import load_tokenizer

        ids = load_tokenizer(wl.data_opts.dir).encode(text.read_text(encoding="utf-8", errors="replace")).ids
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


@torch.no_grad()
def from_hf(path: Path, text: Path, max_windows: int = 8, block: int = 128) -> Measured:
    """Hidden states of a local Hugging Face causal LM (offline only), last entry taken pre final norm."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("a Hugging Face model needs the `transformers` package (pyproject pins it)") from None
    if text is None:
        raise ConfigError("a Hugging Face model needs --text FILE")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: not a loadable Hugging Face causal LM directory ({first})") from None
    model.eval()
    n_layers = model.config.num_hidden_layers
    block = min(block, getattr(model.config, "max_position_embeddings", block) or block)
    ids = tok(text.read_text(encoding="utf-8", errors="replace"))["input_ids"]
    x = windows(ids, block, max_windows)
    captured: list[torch.Tensor] = []
    hook = _decoder_blocks(model, n_layers)[-1].register_forward_hook(
        lambda mod, args, output: captured.append(output[0] if isinstance(output, tuple) else output))
    try:
        out = model(input_ids=x, output_hidden_states=True)
    finally:
        hook.remove()
    hs = list(out.hidden_states)
    if len(hs) != n_layers + 1:
        raise ConfigError(f"{path}: {len(hs)} hidden states for {n_layers} layers (expected {n_layers + 1})")
    pre = captured[-1]
    hf_last_normed = not torch.allclose(pre, hs[-1])
    from methods.jreg.metric import angular_distances

    d_hf = angular_distances([hs[-2], hs[-1]])[0]
    hs[-1] = pre
    return Measured(hs, str(text), "hf", {"model_type": model.config.model_type, "tokens": int(x.numel()),
                                          "hf_last_hidden_state_is_normed": hf_last_normed,
                                          "d_last_hf_normed": d_hf})


def measure(target: Path, text: Path | None, max_windows: int = 8, data_dir: str | None = None,
            block: int = 128) -> Measured:
    """A `ckpt.pt` (or a run directory holding one) or a Hugging Face model directory."""
    if target.is_dir() and (target / "ckpt.pt").is_file():
        target = target / "ckpt.pt"
    if target.is_file():
        return from_checkpoint(target, text, max_windows, data_dir)
    if target.is_dir() and (target / "config.json").is_file():
        return from_hf(target, text, max_windows, block)
    raise ConfigError(f"{target}: neither a checkpoint (ckpt.pt with config.yaml beside it) nor a Hugging Face "
                      f"model directory (config.json)")


def profile_record(m: Measured, form: str, k: int) -> dict:
    """The JSON record `claimbench jump` prints and saves (stable keys: distances, jump, forms)."""
    from methods.jreg.metric import JUMP_FORM_STATUS, JUMP_FORMS, all_forms, jump_profile

    prof = jump_profile(m.hidden_states, form, k)
    return {"source_model": None, "text": m.source, "kind": m.kind, "n_layers": len(prof["distances"]),
            "distances": prof["distances"], "jump": prof["jump"], "jump_form": form, "jump_k": k,
            "jump_form_definition": JUMP_FORMS[form][1], "jump_form_status": JUMP_FORM_STATUS,
            "forms": all_forms(prof["distances"], k), "measured": "pre final norm", **m.info}


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
    ax.set_xticks(range(1, len(d) + 1))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dumps(record: dict) -> str:
    return json.dumps(record, indent=2, default=float)
