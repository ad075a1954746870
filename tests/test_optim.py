"""Tests for anceflow.optim: LAMB math, optimizer/param-group construction, LR schedule."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from anceflow.optim import Lamb, LinearWarmupDecay, build_optimizer, build_scheduler


def lamb_reference(p, grads, lr, betas, eps, wd, bias_correction=True, clip=None, adam=False):
    """LAMB written straight from the paper's formula in numpy (float64), independent of torch."""
    p = np.array(p, dtype=np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    b1, b2 = betas
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, dtype=np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t) if bias_correction else m
        v_hat = v / (1 - b2**t) if bias_correction else v
        u = m_hat / (np.sqrt(v_hat) + eps) + wd * p
        w_norm, u_norm = np.linalg.norm(p), np.linalg.norm(u)
        r = w_norm / u_norm if (w_norm > 0 and u_norm > 0) else 1.0
        if adam:
            r = 1.0
        if clip is not None:
            r = min(r, clip)
        p = p - lr * r * u
    return p


def run_lamb(p0, grads, **kwargs):
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = Lamb([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


P0 = [[0.5, -1.5, 2.0], [0.25, 3.0, -0.75]]  # ||p|| ~ 3.99, far from ||u|| ~ sqrt(6)
GRADS = [
    [[0.1, -0.2, 0.3], [-0.4, 0.05, 0.6]],
    [[-0.3, 0.1, 0.2], [0.2, -0.5, 0.1]],
    [[0.05, 0.4, -0.1], [0.3, 0.2, -0.2]],
]


@pytest.mark.parametrize("n_steps", [1, 3])
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_matches_numpy_reference(n_steps, wd, bias_correction):
    kw = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd, bias_correction=bias_correction)
    got = run_lamb(P0, GRADS[:n_steps], **kw)
    want = lamb_reference(P0, GRADS[:n_steps], kw["lr"], kw["betas"], kw["eps"], wd, bias_correction)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # Sanity: the trust ratio is really != 1 here, so a plain Adam step would not pass.
    adam_like = lamb_reference(P0, GRADS[:n_steps], kw["lr"], kw["betas"], kw["eps"], wd,
                               bias_correction, adam=True)
    assert not np.allclose(want, adam_like, rtol=1e-6, atol=0)


def ance_reference_lamb(p, grads, lr, eps=1e-8, betas=(0.9, 0.999)):
    """microsoft/ANCE's LAMB update (utils/lamb.py), written out in numpy float64 from its description:
    no bias correction, eps outside the root, weight norm clamped to [0, 10], ratio 1 when a norm
    is 0, no weight decay (the drivers pass none)."""
    p = np.array(p, dtype=np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        step = m / (np.sqrt(v) + eps)
        weight_norm = min(np.sqrt((p ** 2).sum()), 10.0)
        adam_norm = np.sqrt((step ** 2).sum())
        ratio = 1.0 if weight_norm == 0 or adam_norm == 0 else weight_norm / adam_norm
        p = p - lr * ratio * step
    return p


@pytest.mark.parametrize("norm", [30.0, 0.5])
def test_lamb_configured_as_the_reference_matches_it(norm):
    """Five steps on a 16x24 tensor of norm ~30 (clamped) and one of norm ~0.5 (not clamped)."""
    rng = np.random.default_rng(int(norm * 10))
    p0 = rng.standard_normal((16, 24))
    p0 *= norm / np.linalg.norm(p0)
    grads = [rng.standard_normal((16, 24)) * 0.01 for _ in range(5)]
    kw = dict(lr=1e-3, eps=1e-8, weight_decay=0.0, bias_correction=False,
              max_weight_norm=Lamb.REFERENCE_MAX_WEIGHT_NORM)
    got = run_lamb(p0, grads, **kw)
    np.testing.assert_allclose(got, ance_reference_lamb(p0, grads, lr=1e-3), rtol=1e-12, atol=1e-15)
    moved = np.linalg.norm(got - p0)
    unclamped = np.linalg.norm(run_lamb(p0, grads, **{**kw, "max_weight_norm": None}) - p0)
    if norm > 10:  # without the clamp the tensor moves ||p|| / 10 = 3x further
        assert unclamped / moved == pytest.approx(norm / 10, rel=1e-4)
    else:
        assert unclamped == pytest.approx(moved, rel=1e-12)


def test_build_optimizer_passes_the_lamb_settings():
    model = nn.Linear(4, 4)
    opt = build_optimizer(model, "lamb", 1e-6, 0.0, eps=1e-8, lamb_bias_correction=False, lamb_max_weight_norm=10.0)
    assert {(g["eps"], g["bias_correction"], g["max_weight_norm"]) for g in opt.param_groups} == {(1e-8, False, 10.0)}
    with pytest.raises(ValueError, match="max_weight_norm"):
        Lamb(model.parameters(), max_weight_norm=0.0)


def test_trust_ratio_is_one_for_zero_param():
    grads = [[0.5, -0.25, 1.0, 0.0]]
    got = run_lamb([0.0] * 4, grads, lr=0.1)
    # step 1 with bias correction: u = g / (|g| + eps), ratio 1 -> p = -lr * u
    g = np.array(grads[0])
    np.testing.assert_allclose(got, -0.1 * g / (np.abs(g) + 1e-6), rtol=1e-12)
    assert np.abs(got).sum() > 0  # a ratio of ||p||/||u|| = 0 would leave p stuck at zero


def test_zero_update_norm_leaves_param_finite_and_unchanged():
    got = run_lamb([1.0, 2.0], [[0.0, 0.0]], lr=0.1)
    np.testing.assert_array_equal(got, [1.0, 2.0])


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_mode_equals_torch_adamw(wd):
    # Decoupled decay p -= lr*wd*p uses the pre-step p, same as adding wd*p to u, so the
    # two agree with decay too, not only for wd=0.
    torch.manual_seed(0)
    init = torch.randn(4, 3, dtype=torch.float64)
    grads = [torch.randn(4, 3, dtype=torch.float64) for _ in range(5)]
    kw = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    results = {}
    for label, make in {
        "lamb_adam": lambda ps: Lamb(ps, adam=True, **kw),
        "adamw": lambda ps: torch.optim.AdamW(ps, **kw),
        "lamb": lambda ps: Lamb(ps, **kw),
    }.items():
        p = init.clone().requires_grad_(True)
        opt = make([p])
        for g in grads:
            p.grad = g.clone()
            opt.step()
        results[label] = p.detach()
    torch.testing.assert_close(results["lamb_adam"], results["adamw"], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(results["lamb"], results["adamw"])  # the flag does something


def test_param_groups_use_their_own_settings():
    a = torch.ones(3, requires_grad=True)
    b = torch.ones(3, requires_grad=True)
    opt = Lamb([{"params": [a], "lr": 0.0}, {"params": [b]}], lr=0.1)
    a.grad = torch.ones(3)
    b.grad = torch.ones(3)
    opt.step()
    assert torch.equal(a, torch.ones(3))
    assert not torch.equal(b, torch.ones(3))


def test_sparse_gradient_raises():
    emb = nn.Embedding(10, 4, sparse=True)
    opt = Lamb(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_closure_is_evaluated_with_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = Lamb([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(5.0)
    assert w.grad is not None and not torch.equal(w.detach(), torch.tensor([1.0, -2.0]))


def _regression_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    w = torch.randn(5, 1, generator=g)
    y = x @ w + 0.7 + 0.01 * torch.randn(64, 1, generator=g)
    return x, y


@pytest.mark.parametrize("name", ["lamb", "adamw"])
def test_optimizer_reduces_linear_regression_loss(name):
    x, y = _regression_data()
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    opt = build_optimizer(model, name, lr=0.05, weight_decay=0.01)
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        initial = loss_fn(model(x), y).item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = loss_fn(model(x), y).item()
    assert final < 0.02 * initial, (initial, final)


def _train(model, opt, sched, batches):
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("name", ["lamb", "adamw"])
def test_state_dict_resume_is_bit_identical(name):
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)) for _ in range(12)]

    def fresh():
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
        opt = build_optimizer(model, name, lr=0.01, weight_decay=0.1)
        return model, opt, build_scheduler(opt, warmup_steps=3, total_steps=12)

    model_a, opt_a, sched_a = fresh()
    _train(model_a, opt_a, sched_a, batches)

    model_b, opt_b, sched_b = fresh()
    _train(model_b, opt_b, sched_b, batches[:5])
    buf = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "opt": opt_b.state_dict(),
                "sched": sched_b.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    # A fresh model with different weights proves the checkpoint, not the seed, restores it.
    model_c = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2))
    opt_c = build_optimizer(model_c, name, lr=0.01, weight_decay=0.1)
    sched_c = build_scheduler(opt_c, warmup_steps=3, total_steps=12)
    model_c.load_state_dict(ckpt["model"])
    opt_c.load_state_dict(ckpt["opt"])
    sched_c.load_state_dict(ckpt["sched"])
    assert opt_c.state  # moments really came back
    _train(model_c, opt_c, sched_c, batches[5:])

    for (k, pa), pc in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(pa, pc), k
    assert sched_a.get_last_lr() == sched_c.get_last_lr()


def test_lamb_state_dict_roundtrip_preserves_state():
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    opt = Lamb([p], lr=0.1, weight_decay=0.5, max_weight_norm=10.0)
    p.grad = torch.tensor([0.3, -0.1])
    opt.step()
    sd = opt.state_dict()
    q = torch.tensor([1.0, 2.0], requires_grad=True)
    opt2 = Lamb([q])
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["weight_decay"] == 0.5
    assert opt2.param_groups[0]["max_weight_norm"] == 10.0
    st = opt2.state[q]
    assert st["step"] == 1
    assert torch.equal(st["exp_avg"], opt.state[p]["exp_avg"])
    assert torch.equal(st["exp_avg_sq"], opt.state[p]["exp_avg_sq"])


def _tiny_model():
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


@pytest.mark.parametrize("name,cls", [("adamw", torch.optim.AdamW), ("lamb", Lamb), ("LAMB", Lamb)])
def test_build_optimizer_splits_decay_groups(name, cls):
    model = _tiny_model()
    model[3].bias.requires_grad_(False)  # frozen params must be left out entirely
    opt = build_optimizer(model, name, lr=3e-4, weight_decay=0.01)
    assert type(opt) is cls
    assert len(opt.param_groups) == 2
    named = dict(model.named_parameters())
    ids = lambda group: {id(p) for p in group["params"]}  # noqa: E731
    decay, no_decay = opt.param_groups
    assert ids(decay) == {id(named["0.weight"]), id(named["3.weight"])}
    assert ids(no_decay) == {id(named["0.bias"]), id(named["1.weight"]), id(named["1.bias"])}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 3e-4


def test_build_optimizer_name_based_bias_and_empty_group():
    class OddBias(nn.Module):  # a 2-D parameter named "bias" is still not decayed
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(2, 2))

    opt = build_optimizer(OddBias(), "lamb", lr=1e-3, weight_decay=0.1)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["sgd", "adam", ""])
def test_build_optimizer_unknown_name_raises(name):
    with pytest.raises(ValueError, match="adamw, lamb"):
        build_optimizer(_tiny_model(), name, lr=1e-3, weight_decay=0.0)


def test_build_optimizer_without_trainable_params_raises():
    model = _tiny_model().requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.0)


def _lr_after(n_steps, warmup=10, total=110, base=2.0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = build_scheduler(opt, warmup, total)
    for _ in range(n_steps):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == opt.param_groups[0]["lr"]
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize(
    "step,lr",
    [
        (0, 0.0),  # start of warmup
        (5, 1.0),  # mid-warmup
        (10, 2.0),  # end of warmup = base lr
        (35, 1.5),  # a quarter into decay
        (60, 1.0),  # halfway through decay
        (110, 0.0),  # end
        (130, 0.0),  # past the end: clamped, never negative
    ],
)
def test_scheduler_values(step, lr):
    assert _lr_after(step) == lr


def test_scheduler_without_warmup_starts_at_base_lr():
    assert _lr_after(0, warmup=0, total=4) == 2.0
    assert _lr_after(2, warmup=0, total=4) == 1.0


def test_scheduler_state_dict_roundtrip():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_scheduler(opt, 10, 110)
    for _ in range(7):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    # The multiplier's settings travel in the state dict, so a scheduler built with other
    # numbers resumes the saved schedule.
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched2 = build_scheduler(opt2, 1, 1000)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 7
    for _ in range(3):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == 2.0  # step 10: end of warmup


def test_linear_warmup_decay_edge_cases():
    f = LinearWarmupDecay(5, 5)  # warmup takes the whole run
    assert [f(s) for s in (0, 4, 5, 9)] == [0.0, 0.8, 0.0, 0.0]


@pytest.mark.parametrize("warmup,total", [(-1, 10), (0, 0), (11, 10)])
def test_build_scheduler_rejects_bad_steps(warmup, total):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError):
        build_scheduler(opt, warmup, total)
