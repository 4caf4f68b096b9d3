"""Our GPT checkpoints as an lm-evaluation-harness model, registered as `claimbench`.

Downstream scores must come from the real harness (its tasks, prompts, metrics and stderr), so
we only supply the three scoring primitives lm-eval asks of a model. The model is rebuilt
exactly as the trainer built it (workload + method transforms, e.g. learnable multipliers)
from the run's `config.yaml`, then loaded from `ckpt.pt`; the tokenizer is the run's
`data.dir/tokenizer.json`. Batching pads on the right and sorts requests by length, so with
causal attention a request's numbers do not depend on its batch-mates (batch 1 vs 8 agree to
float rounding).

    lm_eval.simple_evaluate(model="claimbench", model_args="checkpoint=runs/<id>/ckpt.pt", ...)
"""

from __future__ import annotations

import logging
from pathlib import Path

# lm-eval fills its model registry lazily, and only while it is empty: import its models before registering ours,
# or `--model hf` and every other built-in model would vanish
import lm_eval.models  # noqa: F401
import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

from claimbench import registry
from claimbench.config import ConfigError, load_yaml_text, validate
from claimbench.plugin import RunContext, validate_options

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BATCH = 16
DEFAULT_MAX_GEN = 256
log = logging.getLogger(__name__)


def _empty_continuation(req, i: int, continuation: str) -> str:
    """One line naming the request (task and document when it is an lm-eval Instance)."""
    task, doc = getattr(req, "task_name", None), getattr(req, "doc_id", None)
    where = f"task '{task}', document {doc}" if task is not None else f"request {i}"
    what = "is empty" if not continuation else f"{continuation!r} encodes to no tokens after its context"
    return (f"model 'claimbench': {where}: the loglikelihood continuation {what}; nothing to score (an empty "
            "continuation would count as certain and correct): check the task's doc_to_target")


def _resolve(path: str) -> Path:
    """A relative data.dir is relative to where training ran: try the cwd, then the repository."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return REPO / p if (REPO / p).exists() else p


def resolve_run(checkpoint: str | Path) -> tuple[Path, Path, object, object]:
    """(ckpt.pt, config.yaml, config, workload) of a language-model run, checked without loading any weights:
    the launcher calls it before lm-eval starts, so a wrong checkpoint is one line, not a log and then a line."""
    ckpt = Path(checkpoint)
    if ckpt.is_dir():
        ckpt = ckpt / "ckpt.pt"
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint not found: {ckpt}")
    cfg_path = ckpt.parent / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: not found (a run's config.yaml must sit beside its ckpt.pt)")
    cfg = validate(load_yaml_text(cfg_path), str(cfg_path))
    # a run that relied on its workload's default data directory has no data.dir in its config
    default = getattr(registry.get("workload", cfg.workload), "DataOptions", None)
    default_dir = default.model_fields["dir"].default if default is not None and "dir" in default.model_fields else ""
    data_dir = _resolve(str(cfg.data.get("dir") or default_dir))
    cfg = validate({**cfg.model_dump(mode="json"), "data": {**cfg.data, "dir": str(data_dir)}}, str(cfg_path))
    workload = registry.get("workload", cfg.workload)(cfg)
    if "tokenizer" not in workload.capabilities():  # before the tokenizer file: a ViT run has none, not the news
        raise ConfigError(f"{cfg_path}: workload '{cfg.workload}' is not a language model (lm-eval scores text)")
    return ckpt, cfg_path, cfg, workload


def load_run_model(checkpoint: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, object, int]:
    """(model in eval mode, tokenizer, context length) of a run; one-line ConfigError naming the bad file."""
    ckpt, cfg_path, cfg, workload = resolve_run(checkpoint)
    tokenizer = workload.tokenizer()
    workload.check_data()
    model = workload.build_model()
    ctx = RunContext(cfg, workload, workload.param_roles(model), torch.device(device), cfg.train.steps)
    for i, ref in enumerate(cfg.methods):
        cls = registry.get("method", ref.name)
        opts = validate_options(cls.Options, ref.options, f"methods[{i}] ({ref.name})")
        model = cls(opts, ctx).transform_model(model)
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    except Exception as e:  # torch raises many types for a truncated or foreign file
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ConfigError(f"{ckpt}: not a readable checkpoint of this run ({type(e).__name__}: {msg})") from None
    return model.to(device).eval(), tokenizer, int(workload.context_length())


@register_model("claimbench")
class ClaimbenchLM(TemplateLM):
    """lm-eval model for a claimbench run: `checkpoint=` a ckpt.pt (or its run directory).

    Other model_args: `device` (default cuda if available), `dtype` (float32 | bfloat16),
    `batch_size`, `max_length` (at most the model's block_size), `max_gen_toks`; `device` and
    `batch_size` given here win over lm-eval's `--device` and `--batch_size`.
    """

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> ClaimbenchLM:
        """`--model_args` win over the CLI's own settings (its `--device` default would clash with `device=`)."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> ClaimbenchLM:
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    def __init__(self, checkpoint: str, device: str | None = None, dtype: str = "float32",
                 batch_size: int | str = DEFAULT_BATCH, max_length: int | None = None,
                 max_gen_toks: int = DEFAULT_MAX_GEN, max_batch_size: int | None = None, **unknown) -> None:
        super().__init__()
        if unknown:  # a mistyped model_arg must not be silently ignored
            raise ConfigError(f"model_args: unknown {', '.join(sorted(unknown))} (known: checkpoint, device, dtype, "
                              "batch_size, max_length, max_gen_toks)")
        if not device or (str(device).startswith("cuda") and not torch.cuda.is_available()):
            device = "cuda" if torch.cuda.is_available() else "cpu"  # lm-eval's CLI passes cuda by default
        self._device = torch.device(device)
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"model_args dtype: '{dtype}' (use float32 or bfloat16)")
        self.dtype = getattr(torch, dtype)
        self.model, self.tok, block = load_run_model(checkpoint, str(self._device))
        self.model.to(self.dtype)
        self.max_length = min(int(max_length or block), block)
        self.batch_size = DEFAULT_BATCH if str(batch_size).startswith("auto") else int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        # no special tokens in our BPE: a newline (the corpus separates documents by blank lines)
        vocab = self.tok.get_vocab()
        self._eot = vocab.get("<|endoftext|>", self.tok.encode("\n").ids[-1])
        self._requests = None  # the Instances of the loglikelihood call under way (to name a bad one)

    # ------------------------------------------------------------------ tokenizer
    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return "claimbench-bpe"

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tok.encode(string).ids

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens)

    # ------------------------------------------------------------------ scoring
    @torch.no_grad()
    def _logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Right-padded batch forward; row i's first len(rows[i]) positions are exact (causal)."""
        width = max(len(r) for r in rows)
        x = torch.full((len(rows), width), self._eot, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        return self.model(x.to(self._device)).logits

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """lm-eval's own tokenisation (TemplateLM); the requests are kept meanwhile so that a bad one can be named by
        its task and document."""
        for i, req in enumerate(requests):
            if not req.args[1]:  # caught before TemplateLM, which fails on it with an IndexError for an empty context
                raise ValueError(_empty_continuation(req, i, req.args[1]))
        self._requests = requests
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)
        finally:
            self._requests = None

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context) and whether it is the greedy continuation. A request longer than the
        context is cut from the left as lm-eval's HF model does: the context first; a continuation that alone exceeds
        it is scored on its last `max_length` tokens. Both are counted in one warning."""
        items = []
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        n_ctx_cut = n_cont_cut = 0
        for i, (key, ctx, cont) in enumerate(requests):
            if not cont:  # lm-eval's HF model asserts this; a certain, correct empty answer would inflate acc
                req = (getattr(self, "_requests", None) or [None] * len(requests))[i]
                raise ValueError(_empty_continuation(req, i, key[1] if key else ""))
            whole = (ctx + cont)[-(self.max_length + 1):]  # left-truncate, as lm-eval's HF model does
            if len(cont) > self.max_length:  # its first tokens are only context now
                cont = cont[-self.max_length:]
                n_cont_cut += 1
            elif len(ctx) + len(cont) > self.max_length + 1:
                n_ctx_cut += 1
            items.append((i, whole[:-1], cont))
        if n_ctx_cut or n_cont_cut:
            what = ([f"{n_ctx_cut} had their context left-truncated"] if n_ctx_cut else []) + (
                [f"{n_cont_cut} a continuation longer than that, scored on its last {self.max_length} tokens only"]
                if n_cont_cut else [])
            log.warning(f"model 'claimbench': {n_ctx_cut + n_cont_cut} of {len(requests)} loglikelihood requests "
                        f"exceed its context of {self.max_length} tokens: {'; '.join(what)}")
        items.sort(key=lambda it: (-len(it[1]), it[0]))  # longest first; ties in request order
        for b in tqdm(range(0, len(items), self.batch_size), disable=disable_tqdm, desc="loglikelihood"):
            chunk = items[b:b + self.batch_size]
            logits = self._logits([inp for _, inp, _ in chunk])
            rows, cols, targets = [], [], []
            for r, (_, inp, cont) in enumerate(chunk):  # only the continuation positions are scored
                rows += [r] * len(cont)
                cols += range(len(inp) - len(cont), len(inp))
                targets += cont
            dev = logits.device
            seg, tgt = torch.tensor(rows, device=dev), torch.tensor(targets, device=dev)
            lp = F.log_softmax(logits[seg, torch.tensor(cols, device=dev)].float(), dim=-1)
            tok_ll = lp.gather(-1, tgt[:, None]).squeeze(1).double()
            miss = (lp.argmax(-1) != tgt).double()
            sums = torch.zeros(2, len(chunk), dtype=torch.float64, device=dev)
            sums[0].index_add_(0, seg, tok_ll)
            sums[1].index_add_(0, seg, miss)
            for (i, _, _), ll, n_miss in zip(chunk, *sums.tolist(), strict=True):  # one host sync per batch
                out[i] = (ll, n_miss == 0)
                key = requests[i][0]
                if key is not None:
                    self.cache_hook.add_partial("loglikelihood", key, out[i])
        return out  # type: ignore[return-value]

    def rolling_windows(self, tokens: list[int]) -> list[tuple[list[int], list[int]]]:
        """lm-eval's disjoint windows of our context length: every token is predicted exactly once."""
        return [make_disjoint_window(w) for w in get_rolling_token_windows(
            token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for j, (string,) in enumerate(req.args for req in requests):
            for ctx, cont in self.rolling_windows(self.tok_encode(string)):
                windows.append((None, ctx, cont))
                owner.append(j)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for j, (ll, _) in zip(owner, scores, strict=True):
            totals[j] += ll
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding; stops at any `until` string (cut off there) or after `max_gen_toks`."""
        jobs = []
        for i, req in enumerate(requests):
            context, kw = req.args
            kw = dict(kw or {})
            if kw.get("do_sample") or float(kw.get("temperature", 0.0) or 0.0) > 0:
                raise ValueError("model 'claimbench' decodes greedily only (do_sample=False, temperature=0)")
            until = kw.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            eot = self.tok_decode([self.eot_token_id])
            if eot not in until:
                until.append(eot)
            jobs.append((i, self.tok_encode(context) or [self.eot_token_id], until,
                         int(kw.get("max_gen_toks", self.max_gen_toks))))
        # equal context lengths share a batch: no padding, so no attention mask is needed
        jobs.sort(key=lambda j: (-len(j[1]), j[0]))
        out: list[str | None] = [None] * len(requests)
        groups: list[list] = []
        for job in jobs:
            if groups and len(groups[-1]) < self.batch_size and len(groups[-1][0][1]) == len(job[1]):
                groups[-1].append(job)
            else:
                groups.append([job])
        for group in tqdm(groups, disable=disable_tqdm, desc="generate_until"):
            for (i, _, _, _), text in zip(group, self._greedy(group), strict=True):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return out  # type: ignore[return-value]

    def _greedy(self, group: list) -> list[str]:
        seqs = torch.tensor([ctx for _, ctx, _, _ in group], dtype=torch.long, device=self._device)
        n_ctx = seqs.shape[1]
        limit = max(m for *_, m in group)
        done = [False] * len(group)
        texts = [""] * len(group)
        for step in range(limit):
            logits = self.model(seqs[:, -self.max_length:]).logits[:, -1]
            seqs = torch.cat([seqs, logits.float().argmax(-1, keepdim=True)], dim=1)
            for r, (_, _, until, max_new) in enumerate(group):
                if done[r]:
                    continue
                text = self.tok_decode(seqs[r, n_ctx:].tolist())
                hit = [text.index(s) for s in until if s and s in text]
                if hit or step + 1 >= max_new:
                    texts[r], done[r] = (text[:min(hit)] if hit else text), True
            if all(done):
                break
        return texts


def run_name(checkpoint: str | Path) -> str:
    """The run a checkpoint belongs to: its directory's name (`checkpoint=` is a ckpt.pt or its run directory)."""
    p = Path(checkpoint)
    return (p if p.is_dir() else p.parent).resolve().name


def _name_output_after_the_run() -> None:
    """lm-eval names the subfolder of `--output_path` after the model_args `pretrained`, `model`, `path`, ... and,
    knowing none, after a random id; a claimbench model is named by `checkpoint`: use its run's name instead."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lm_eval.utils import sanitize_model_name, simple_parse_args_string

    original = GeneralConfigTracker.log_experiment_args
    if getattr(original, "claimbench", False):
        return

    def log_experiment_args(self, model_source, model_args, *args, **kwargs):
        original(self, model_source, model_args, *args, **kwargs)
        parsed = model_args if isinstance(model_args, dict) else simple_parse_args_string(model_args or "")
        if model_source == "claimbench" and parsed.get("checkpoint"):
            self.model_name = run_name(str(parsed["checkpoint"]))
            self.model_name_sanitized = sanitize_model_name(self.model_name)

    log_experiment_args.claimbench = True
    GeneralConfigTracker.log_experiment_args = log_experiment_args


_name_output_after_the_run()
