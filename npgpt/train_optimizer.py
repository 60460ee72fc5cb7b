"""The Trainer's optimizer for a model and a TrainConfig: AdamW, or Muon (with AdamW beside it).

AdamW's groups: decay on the weight matrices; none on biases, norms and embeddings. Muon takes
the 2-D hidden weights (every weight matrix but the embeddings and the LM head) and leaves
the rest to AdamW, in one :class:`~npgpt.optim.Muon` object.
"""
from __future__ import annotations

from .errors import ConfigError
from .optim import AdamW, Muon


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices; none on biases, norms (every parameter with
    ndim < 2) and embeddings (parameters of a module whose class name holds "Embedding")."""
    embedding_params = {id(p) for _, m in model.named_modules()
                        if "Embedding" in type(m).__name__ for _, p in m._own_parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.data.ndim < 2 or id(p) in embedding_params or name.endswith("bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _is_head(name: str) -> bool:
    return name.split(".")[0] in ("lm_head", "head", "classifier")


def build_optimizer(model, config):
    """The optimizer ``config.optimizer`` names, over ``model``'s trainable parameters."""
    c = config
    groups = param_groups(model, c.weight_decay)
    betas = (c.beta1, c.beta2)
    if c.optimizer == "adamw":
        return AdamW(groups, lr=c.lr, betas=betas, eps=c.eps, weight_decay=c.weight_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = groups[0]["params"] if groups[0]["weight_decay"] == c.weight_decay else []
    hidden = [p for p in decay if p.data.ndim == 2 and not _is_head(names[id(p)])]
    if not any(p.requires_grad for p in hidden):
        raise ConfigError("optimizer=muon needs 2-D hidden weight matrices, and this model's "
                          "only matrices are embeddings and its head: use optimizer adamw")
    chosen = {id(p) for p in hidden}
    adam = [{**g, "params": [p for p in g["params"] if id(p) not in chosen], "muon": False}
            for g in groups]
    muon = {"params": hidden, "muon": True, "weight_decay": c.muon_weight_decay,
            "lr_scale": c.muon_lr / c.lr if c.lr else 0.0, "lr": c.muon_lr}
    return Muon([g for g in adam if g["params"]] + [muon], lr=c.muon_lr,
                momentum=c.muon_momentum, adamw_lr=c.lr, adamw_betas=betas, adamw_eps=c.eps)
