"""Optimizers and learning-rate schedule for ANCE training.

* :class:`Lamb` -- LAMB (You et al. 2019, "Large Batch Optimization for Deep Learning:
  Training BERT in 76 minutes", arXiv:1904.00962), the optimizer the ANCE reference code
  (microsoft/ANCE) trains with.
* :func:`build_optimizer` -- AdamW or LAMB over a model with the usual BERT split: no weight
  decay on biases and LayerNorm weights.
* :func:`build_scheduler` -- linear warmup then linear decay to 0 (``LambdaLR``).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

__all__ = [
    "Lamb",
    "LinearWarmupDecay",
    "OPTIMIZERS",
    "build_optimizer",
    "build_scheduler",
    "split_decay_parameters",
]

#: Names accepted by :func:`build_optimizer`.
OPTIMIZERS = ("adamw", "lamb")


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments with a layer-wise (per-parameter-tensor) trust ratio.

    For each parameter tensor ``p`` with gradient ``g`` at step ``t``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)   # if bias_correction, else m, v
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p
        w = min(||p||, max_weight_norm)                          # ||p|| if max_weight_norm is None
        r = w / ||u||   if w > 0 and ||u|| > 0   else 1
        p = p - lr * r * u

    The trust ratio ``r`` rescales each tensor's step to be proportional to the tensor's own
    norm, which is what keeps very large batches / learning rates stable.

    The ANCE reference code (microsoft/ANCE ``utils/lamb.py``, from cybertronai/pytorch-lamb)
    is ``bias_correction=False, max_weight_norm=10``, called with ``eps=1e-8`` and no weight
    decay (``drivers/run_ann.py``); the paper (You et al. 2019) has bias correction and leaves
    the scaling of the weight norm open. The clamp matters: a tensor with ``||p|| > 10`` (every
    768x768 matrix of roberta-base; an embedding matrix has ~190) moves ``||p|| / 10`` times
    less per step with it than without.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to ``sqrt(v_hat)`` for numerical stability.
        weight_decay: decoupled weight decay, added to the update *before* the trust ratio
            (as in the paper), so it is scaled by the ratio too.
        bias_correction: divide the moments by ``1 - beta**t``; it mainly matters during the
            first ~1/(1-beta2) steps.
        max_weight_norm: clamp of the weight norm in the trust ratio (the reference: 10);
            ``None`` does not clamp.
        adam: if ``True`` the trust ratio is fixed at 1, which makes this exactly AdamW
            (decoupled decay ``p -= lr * weight_decay * p`` is the same thing as adding
            ``weight_decay * p`` to ``u``). Meant for debugging/ablation.

    Sparse gradients are not supported (a ``RuntimeError`` says so).
    """

    #: The reference implementation's clamp of the weight norm.
    REFERENCE_MAX_WEIGHT_NORM = 10.0

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
        max_weight_norm: float | None = None,
        adam: bool = False,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps >= 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid betas (each must be in [0, 1)): {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if max_weight_norm is not None and not max_weight_norm > 0:
            raise ValueError(f"Invalid max_weight_norm (must be > 0 or None): {max_weight_norm}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            max_weight_norm=max_weight_norm,
            adam=adam,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():  # step itself runs under no_grad
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError(
                        "Lamb does not support sparse gradients "
                        "(use dense embeddings, or torch.optim.SparseAdam)"
                    )

                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

                exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)

                if group["bias_correction"]:
                    bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
                else:
                    bc1 = bc2 = 1.0
                update = (exp_avg / bc1).div_((exp_avg_sq / bc2).sqrt_().add_(eps))
                if wd != 0.0:
                    update.add_(p, alpha=wd)

                if not group["adam"]:
                    w_norm = torch.linalg.vector_norm(p)
                    if group.get("max_weight_norm") is not None:
                        w_norm = w_norm.clamp(max=group["max_weight_norm"])
                    u_norm = torch.linalg.vector_norm(update)
                    # torch.where rather than `if`: no host sync on GPU. A zero-norm tensor
                    # (e.g. a freshly zero-initialised bias) must still move, hence ratio 1.
                    ratio = torch.where(
                        (w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm)
                    )
                    update.mul_(ratio)

                p.add_(update, alpha=-lr)

        return loss


def split_decay_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Split ``model``'s trainable parameters into ``(decay, no_decay)``.

    ``no_decay`` holds every parameter with fewer than 2 dimensions (biases, LayerNorm /
    other norm weights and biases, scalars) plus anything whose own name is ``bias``;
    shrinking those towards 0 only hurts. Frozen parameters (``requires_grad=False``) are
    left out of both lists.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():  # de-duplicates shared (tied) parameters
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.rsplit(".", 1)[-1] == "bias":
            no_decay.append(p)
        else:
            decay.append(p)
    return decay, no_decay


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    *,
    eps: float | None = None,
    lamb_bias_correction: bool = True,
    lamb_max_weight_norm: float | None = None,
) -> torch.optim.Optimizer:
    """Build ``"adamw"`` (torch AdamW) or ``"lamb"`` (:class:`Lamb`) over ``model``.

    Two param groups: group 0 with ``weight_decay``, group 1 (biases, norm weights, see
    :func:`split_decay_parameters`) with 0; an empty group is dropped. ``eps`` defaults to
    1e-8 for AdamW and 1e-6 for LAMB; ``lamb_*`` set :class:`Lamb`'s bias correction and
    weight-norm clamp (the ANCE reference: False, 10).
    """
    key = name.strip().lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; allowed values: {', '.join(OPTIMIZERS)}")

    decay, no_decay = split_decay_parameters(model)
    groups = [
        {"params": params, "weight_decay": wd}
        for params, wd in ((decay, weight_decay), (no_decay, 0.0))
        if params
    ]
    if not groups:
        raise ValueError("model has no trainable parameters (requires_grad=True)")

    if key == "adamw":
        # The fused kernel (CPU and CUDA): one pass over all parameters instead of one per tensor.
        devices = {p.device.type for group in groups for p in group["params"]}
        fused = devices <= {"cpu", "cuda"} and all(p.dtype == torch.float32
                                                   for group in groups for p in group["params"])
        return torch.optim.AdamW(groups, lr=lr, eps=1e-8 if eps is None else eps,
                                 weight_decay=weight_decay, fused=fused or None)
    return Lamb(groups, lr=lr, eps=1e-6 if eps is None else eps, weight_decay=weight_decay,
                bias_correction=lamb_bias_correction, max_weight_norm=lamb_max_weight_norm)


class LinearWarmupDecay:
    """LR multiplier: ``step / warmup_steps`` during warmup, then linear down to 0 at
    ``total_steps`` (and 0 afterwards), for ``step`` counted from ``offset``: a job that runs
    steps ``offset .. offset + n`` of a longer schedule (ANCE rounds under one schedule).

    A class rather than a closure so :meth:`LambdaLR.state_dict` records its settings
    (LambdaLR saves the ``__dict__`` of callable objects, but nothing for plain functions).
    """

    def __init__(self, warmup_steps: int, total_steps: int, offset: int = 0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.offset = int(offset)

    def __call__(self, step: int) -> float:
        step += self.offset
        if step < self.warmup_steps:
            return step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:  # warmup == total: nothing left to decay over
            return 0.0
        return max(0.0, (self.total_steps - step) / decay_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, *, offset: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to each group's base lr over ``warmup_steps`` scheduler steps,
    then linear decay to 0 at ``total_steps``; the first step is step ``offset`` of it.

    Call ``scheduler.step()`` once after each ``optimizer.step()``; after ``k`` calls the
    lr is ``base_lr * LinearWarmupDecay(warmup_steps, total_steps, offset)(k)``.
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) exceeds total_steps ({total_steps})")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LinearWarmupDecay(warmup_steps, total_steps, offset))
