"""The optimiser: SGD with momentum, weight decay on everything but BatchNorm."""
from __future__ import annotations

import torch


def param_groups(model: torch.nn.Module, weight_decay: float, bn_wd: bool) -> list[dict]:
    """No weight decay on BatchNorm parameters unless asked: decaying them only fights the
    next layer's scale. Found by module type, so it holds whatever the layers are named."""
    bn_params = {id(q) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 for q in m.parameters(recurse=False)}
    bn = [q for q in model.parameters() if id(q) in bn_params]
    rest = [q for q in model.parameters() if id(q) not in bn_params]
    return [{'params': bn, 'weight_decay': weight_decay if bn_wd else 0.0},
            {'params': rest, 'weight_decay': weight_decay}]


def build_optimizer(model: torch.nn.Module, p: dict) -> torch.optim.SGD:
    """The LR (and, for One-Cycle, the momentum) is set every step by the trainer."""
    return torch.optim.SGD(param_groups(model, p['training.weight_decay'], bool(p['training.bn_wd'])), lr=0.0,
                           momentum=p['training.momentum'], nesterov=bool(p['training.nesterov']))
