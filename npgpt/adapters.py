"""LoRA adapters on a GPT, in PEFT's layout: apply by target names, save, load, merge.

    model = from_pretrained("gpt2-dir", adapter="my-adapter")   # base + a PEFT adapter
    model = from_pretrained("gpt2-dir", quantize="int8", adapter="my-adapter")  # on int8
    apply_lora(model, LoraConfig(r=8, alpha=16, target_modules=("c_attn", "c_proj")))
    save_adapter(model, "my-adapter")        # adapter_config.json + adapter_model.safetensors
    merge(model)                             # adapters folded into the weights; plain GPT again

Target names are those of the HuggingFace model, as PEFT matches them: a list matches a
module whose dotted name equals an entry or ends with "." + the entry (GPT-2: ``c_attn``,
``c_proj``, ``c_fc``; LLaMA: ``q_proj`` ... ``down_proj``); a single string other than
``"all-linear"`` must match the whole name as a regex; ``"all-linear"`` is every Linear but
the LM head. npgpt fuses LLaMA's q, k and v into ``c_attn``; each of them gets its own
adapter on its columns, as PEFT gives each projection its own.

On disk (what ``peft.PeftModel.from_pretrained`` reads): ``adapter_model.safetensors`` holds
``base_model.model.<HF module>.lora_A.weight`` (r, in) and ``.lora_B.weight`` (out, r), the
nn.Linear layout, whatever the base layer's layout: PEFT's ``fan_in_fan_out`` (true for
GPT-2's Conv1D, whose weight is (in, out)) transposes only the merged delta, never A or B.
npgpt's A (in, r) and B (r, out) are their transposes.

On an int8-quantized base (``quantize_model`` first, then ``apply_lora``: QLoRA-style) the
adapters are the same tensors, saved and loaded the same way: an adapter trained on the int8
base loads onto the float base too (and merges there; the int8 base itself cannot merge).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .hf import _FLOAT_TAGS, _read_into, family, layout
from .hf import from_pretrained as _base_from_pretrained
from .io import atomic_directory, load_json, read_safetensors_header, save_json
from .layers.linear import Linear
from .layers.lora import LoRALinear, QuantizedLoRALinear
from .layers.quantized import QuantizedLinear
from .models.gpt import GPT

ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
ALL_LINEAR = "all-linear"
TARGET_PRESETS = {"gpt2": ("c_attn", "c_proj", "c_fc"),
                  "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                            "down_proj")}

# PEFT options that change what the adapter computes and that npgpt does not implement, with
# the values that mean "off"
_UNSUPPORTED = {"use_dora": (False, None), "use_qalora": (False, None), "lora_bias": (False, None),
                "use_bdlora": (False, None), "modules_to_save": (None, []),
                "exclude_modules": (None, []), "layers_to_transform": (None, []),
                "layers_pattern": (None, []), "rank_pattern": ({}, None),
                "alpha_pattern": ({}, None), "layer_replication": (None, []),
                "target_parameters": (None, []), "trainable_token_indices": (None, {}),
                "alora_invocation_tokens": (None, []), "loftq_config": ({}, None),
                "megatron_config": (None,), "arrow_config": (None,), "kasa_config": (None,)}
# init_lora_weights values that leave the base weights as they are (pissa, olora, corda and
# loftq rewrite the base, so their adapters do not fit the original model)
_PLAIN_INITS = (True, False, "gaussian", "eva", "orthogonal")


@dataclass
class LoraConfig:
    """An adapter's settings (PEFT's LoraConfig fields with npgpt's names)."""

    r: int = 8                          # rank of A (in, r) and B (r, out)
    alpha: float = 16.0                 # scale = alpha / r (alpha / sqrt(r) with rslora)
    dropout: float = 0.0                # dropout on the adapter's input, in training
    target_modules: tuple | str = ("c_attn", "c_proj")   # HF module names, a regex or all-linear
    rslora: bool = False                # rank-stabilised scale alpha / sqrt(r)

    def __post_init__(self):
        if not isinstance(self.r, (int, np.integer)) or isinstance(self.r, bool) or self.r < 1:
            raise ConfigError(f"LoRA r={self.r!r} must be a positive integer")
        if not isinstance(self.alpha, (int, float)) or not np.isfinite(self.alpha):
            raise ConfigError(f"LoRA alpha={self.alpha!r} must be a finite number")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"LoRA dropout={self.dropout!r} must be in [0, 1)")
        if isinstance(self.target_modules, (list, tuple)):
            self.target_modules = tuple(self.target_modules)
            if not self.target_modules or not all(isinstance(t, str) and t
                                                  for t in self.target_modules):
                raise ConfigError(f"LoRA target_modules={list(self.target_modules)!r} must be "
                                  "module names")
        elif not isinstance(self.target_modules, str) or not self.target_modules:
            raise ConfigError(f"LoRA target_modules={self.target_modules!r} must be a list of "
                              f"module names, a regex or {ALL_LINEAR!r}")

    @classmethod
    def from_flags(cls, rank: int, alpha: float | None, targets: str, dropout: float = 0.0):
        """From ``--lora-rank --lora-alpha --lora-targets a,b --lora-dropout``."""
        names = tuple(t.strip() for t in targets.split(",") if t.strip())
        target = ALL_LINEAR if names == (ALL_LINEAR,) else names
        return cls(r=rank, alpha=2.0 * rank if alpha is None else alpha, dropout=dropout,
                   target_modules=target)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if isinstance(self.target_modules, tuple):
            d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_peft(cls, peft: dict, where: str = ADAPTER_CONFIG) -> LoraConfig:
        """The config of a PEFT ``adapter_config.json``; ConfigError names any option that
        would make the adapter compute something npgpt does not."""
        if peft.get("peft_type") != "LORA":
            raise ConfigError(f"{where}: peft_type={peft.get('peft_type')!r}; npgpt loads LORA "
                              "adapters only")
        for name, off in _UNSUPPORTED.items():
            if name in peft and peft[name] not in off:
                raise ConfigError(f"{where}: {name}={peft[name]!r} is not supported by npgpt "
                                  f"(expected {off[0]!r})")
        if peft.get("bias", "none") != "none":
            raise ConfigError(f"{where}: bias={peft['bias']!r} is not supported by npgpt "
                              "(expected 'none': the base biases stay frozen)")
        if peft.get("init_lora_weights", True) not in _PLAIN_INITS:
            raise ConfigError(f"{where}: init_lora_weights={peft['init_lora_weights']!r} "
                              "rewrites the base weights; npgpt loads adapters of an unchanged "
                              f"base (init one of {', '.join(map(repr, _PLAIN_INITS))})")
        targets = peft.get("target_modules")
        if isinstance(targets, list):
            targets = tuple(targets)
        try:
            return cls(r=peft.get("r", 8), alpha=peft.get("lora_alpha", 8),
                       dropout=peft.get("lora_dropout", 0.0) or 0.0, target_modules=targets,
                       rslora=bool(peft.get("use_rslora", False)))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    def to_peft(self, model, base_name: str | None = None) -> dict:
        """PEFT's ``adapter_config.json`` for this adapter on ``model``."""
        config = model.config
        chosen = targets(model, self.target_modules)
        if self.target_modules == ALL_LINEAR:     # as PEFT saves it: the names it resolved to
            written = sorted({hf.rsplit(".", 1)[-1] for hf, *_ in chosen})
        elif isinstance(self.target_modules, tuple):
            written = list(self.target_modules)   # as given: a leaf name would match more
        else:
            written = self.target_modules         # a regex, matched the same way by PEFT
        return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_name,
                "r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout,
                "target_modules": written,
                "fan_in_fan_out": family(config) == "gpt2", "bias": "none",
                "use_rslora": self.rslora, "use_dora": False, "modules_to_save": None,
                "init_lora_weights": True, "layers_to_transform": None, "layers_pattern": None,
                "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True,
                "revision": None}


# --- which modules ----------------------------------------------------------------------------

def linear_modules(model: GPT) -> list[tuple[str, str, slice | None]]:
    """Every Linear of the model's HuggingFace counterpart: (HF module name, npgpt module
    path, npgpt output columns or None for all), in checkpoint order."""
    modules = dict(model.named_modules())
    out = []
    for e in layout(model.config):
        if e.hf.endswith(".weight") and e.ours.endswith(".weight"):
            path = e.ours[:-len(".weight")]
            if isinstance(modules.get(path), (Linear, QuantizedLinear)):
                out.append((e.hf[:-len(".weight")], path, e.cols))
    return out


def _matches(name: str, target) -> bool:
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def targets(model: GPT, target_modules) -> list[tuple[str, str, slice | None]]:
    """The (HF name, npgpt path, columns) that ``target_modules`` selects; ConfigError when
    a name (or the regex) matches nothing, naming what the model has."""
    linears = linear_modules(model)
    if target_modules == ALL_LINEAR:
        return [m for m in linears if m[0] != "lm_head"]
    chosen = [m for m in linears if _matches(m[0], target_modules)]
    leaves = sorted({hf.rsplit(".", 1)[-1] for hf, *_ in linears})
    unmatched = ([target_modules] if not chosen else []) if isinstance(target_modules, str) else \
        [t for t in target_modules if not any(_matches(hf, (t,)) for hf, *_ in linears)]
    if unmatched:
        raise ConfigError(f"LoRA target_modules {', '.join(map(repr, unmatched))} match no "
                          f"Linear of this {family(model.config)} model (it has: "
                          f"{', '.join(leaves)}, or {ALL_LINEAR!r})")
    return chosen


# --- apply, merge ---------------------------------------------------------------------------

def _drop_runner(model) -> None:
    """Forget the model's thread shards (replicas of its old layers): the next training
    forward makes new ones with the adapters (see npgpt.models.base)."""
    runner = model.__dict__.pop("_runner", None)
    if runner is not None:
        runner.close()


def _parent(model, path: str):
    head, _, attr = path.rpartition(".")
    return dict(model.named_modules())[head], attr


def apply_lora(model: GPT, config: LoraConfig, seed: int = 0) -> GPT:
    """Freeze every parameter of ``model`` and put adapters on the target Linears, in place.
    A of each adapter is drawn from a generator seeded with ``seed``; B is zero, so the
    model's output is unchanged until it trains."""
    if lora_config(model) is not None:
        raise ConfigError("the model already has LoRA adapters; merge(model) first")
    chosen = targets(model, config.target_modules)
    _drop_runner(model)
    model.requires_grad_(False)
    by_path: dict[str, dict[str, slice]] = {}
    for hf, path, cols in chosen:
        if cols is None:
            by_path[path] = None
        else:
            by_path.setdefault(path, {})[hf.rsplit(".", 1)[-1]] = cols
    rng = np.random.default_rng(seed)
    modules = dict(model.named_modules())
    for path, slices in by_path.items():
        parent, attr = _parent(model, path)
        kind = QuantizedLoRALinear if isinstance(modules[path], QuantizedLinear) else LoRALinear
        setattr(parent, attr, kind.wrap(modules[path], config.r, config.alpha, config.dropout,
                                        slices, rng, config.rslora))
    model._lora = config
    return model


def lora_config(model) -> LoraConfig | None:
    """The LoraConfig of the adapters on ``model``, or None when it has none."""
    return getattr(model, "_lora", None)


def merge(model: GPT) -> GPT:
    """Fold every adapter into its base weight (W[:, cols] += scale A B) and put plain
    Linears back, in place: the model computes the same, as an ordinary GPT with every
    parameter trainable again, which ``save_pretrained`` writes as a full checkpoint."""
    if any(isinstance(m, QuantizedLoRALinear) for m in model.modules()):
        raise ConfigError(QuantizedLoRALinear.NO_MERGE)
    _drop_runner(model)
    for path, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, attr = _parent(model, path)
            setattr(parent, attr, module.merged())
    model.requires_grad_(True)
    model.__dict__.pop("_lora", None)
    return model


# --- PEFT files -----------------------------------------------------------------------------

def _peft_tensors(model: GPT) -> dict:
    """PEFT key -> the npgpt Parameter (its transpose, on disk) of every adapter tensor."""
    modules = dict(model.named_modules())
    out = {}
    for hf, path, cols in linear_modules(model):
        module = modules[path]
        if not isinstance(module, (LoRALinear, QuantizedLoRALinear)):
            continue
        for name, _, adapter in module.adapters():
            if (name or None) != (hf.rsplit(".", 1)[-1] if cols is not None else None):
                continue
            out[f"{PREFIX}{hf}.lora_A.weight"] = adapter.A
            out[f"{PREFIX}{hf}.lora_B.weight"] = adapter.B
    return out


def save_adapter(model: GPT, path, base_name: str | None = None) -> Path:
    """Write the adapters of ``model`` as a PEFT adapter directory (atomically)."""
    config = lora_config(model)
    if config is None:
        raise ConfigError("the model has no LoRA adapters to save (apply_lora first)")
    from .io import save_safetensors
    path = Path(path)
    tensors = {k: np.ascontiguousarray(p.data.T) for k, p in _peft_tensors(model).items()}
    with atomic_directory(path) as tmp:
        save_json(tmp / ADAPTER_CONFIG, config.to_peft(model, base_name))
        save_safetensors(tmp / ADAPTER_WEIGHTS, tensors)
    return path


def read_adapter_config(path) -> LoraConfig:
    path = Path(path)
    if not (path / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"{path} has no {ADAPTER_CONFIG}: not a PEFT adapter directory")
    return LoraConfig.from_peft(load_json(path / ADAPTER_CONFIG), str(path / ADAPTER_CONFIG))


def load_adapter(model: GPT, path) -> GPT:
    """Put the PEFT adapter in directory ``path`` on ``model`` (in place). An adapter made for
    another base (target names it does not have, tensors missing, extra or of other shapes)
    or with options npgpt does not implement is refused before the model changes."""
    path = Path(path)
    config = read_adapter_config(path)
    weights = path / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{path} has no {ADAPTER_WEIGHTS} (adapter_model.bin is not read: "
                              "npgpt never unpickles)")
    header = read_safetensors_header(weights)
    stored = {re.sub(r"\.default(?=\.weight$)", "", k): k for k in header}
    try:
        chosen = targets(model, config.target_modules)
    except ConfigError as e:
        raise CheckpointError(f"{path}: the adapter does not fit this base model: {e}") from None
    expected, modules = {}, dict(model.named_modules())
    for hf, module_path, cols in chosen:
        n_in, n_out = modules[module_path].in_features, modules[module_path].out_features
        n_out = n_out if cols is None else len(range(n_out)[cols])
        expected[f"{PREFIX}{hf}.lora_A.weight"] = (config.r, n_in)
        expected[f"{PREFIX}{hf}.lora_B.weight"] = (n_out, config.r)
    missing = [k for k in expected if k not in stored]
    unexpected = [stored[k] for k in stored if k not in expected]
    misshaped = [f"{stored[k]}: file {tuple(header[stored[k]]['shape'])} vs expected {shape}"
                 for k, shape in expected.items()
                 if k in stored and tuple(header[stored[k]]["shape"]) != shape]
    badtype = [f"{stored[k]}: {header[stored[k]]['dtype']}" for k in expected
               if k in stored and header[stored[k]]["dtype"] not in _FLOAT_TAGS]
    problems = ([f"missing tensors: {', '.join(missing)}"] if missing else []) \
        + ([f"unexpected tensors: {', '.join(unexpected)}"] if unexpected else []) \
        + ([f"mis-shaped tensors (r={config.r} in {ADAPTER_CONFIG}): {'; '.join(misshaped)}"]
           if misshaped else []) + ([f"non-float tensors: {', '.join(badtype)}"] if badtype else [])
    if problems:
        raise CheckpointError(f"{weights} does not fit this {family(model.config)} base model: "
                              + " | ".join(problems))
    apply_lora(model, config)
    params = _peft_tensors(model)
    with open(weights, "rb") as f:
        data_start = 8 + int(np.frombuffer(f.read(8), "<u8")[0])
        for key, p in params.items():
            _read_into(f, data_start, header[stored[key]], p.data.T, f"{weights} tensor {key!r}")
    return model


def from_pretrained(path, dtype: str = "float32", adapter=None, **overrides) -> GPT:
    """A :class:`GPT` from a local HuggingFace directory (see :func:`npgpt.hf.from_pretrained`),
    with the PEFT adapter in directory ``adapter`` on it when given."""
    if adapter is not None:
        read_adapter_config(adapter)           # a bad adapter fails before the base is read
    model = _base_from_pretrained(path, dtype, **overrides)
    if adapter is not None:
        load_adapter(model, adapter)
    return model
