"""Golden cases of the warp group: affine_grid, grid_sample, their composition (warp),
resize_bilinear and minmax_normalize (kernels/golden/warp.c replays them).

Inputs are float32-representable, the reference is float64 PyTorch.

The warp suite chains two C ops through float32 tensors: the grid, and its gradient on the
way back. The composition is sensitive to the grid's last bit: moving a sampling point by
one float32 ulp changes outputs that are small next to the tensor's largest by more than
the 1e-5 tolerance, and where a point sits exactly on a pixel centre (identity, 90 and 180
degree rotations) it picks the bilinear cell, so the gradient w.r.t. theta. The reference
therefore feeds grid_sample the float32 grid the C op produces (float64, (t0*x + t1*y) + t2
with x = (2j + 1) / W - 1, rounded once), which is F.affine_grid's value (checked to
within an ulp; F.affine_grid's own base grid is off by ~1e-16, which decides exact ties
of the rounding differently), and rounds the grid gradient to float32 on the way back.
Everything else -- the sampling, both gradients, affine_grid's backward -- is PyTorch's.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from common import grads, rand


def f32(t):
    """Rounds a float64 tensor to the nearest float32 values (kept as float64)."""
    return torch.as_tensor(t, dtype=torch.float64).float().double()


def grid_as_c(theta, h, w):
    """affine_grid's float32 grid (N, H, W, 2) computed as kernels/affine_grid.c does."""
    th = theta.detach().numpy()
    x = (2 * np.arange(w) + 1) / w - 1
    y = (2 * np.arange(h) + 1) / h - 1
    xx, yy = np.meshgrid(x, y)  # (H, W)
    comps = [th[:, k, 0, None, None] * xx + th[:, k, 1, None, None] * yy + th[:, k, 2, None, None]
             for k in range(2)]
    return torch.from_numpy(np.stack(comps, -1).astype(np.float32).astype(np.float64))


class Float32Grid(torch.autograd.Function):
    """The float32 grid tensor between the two C ops: takes the value the C op produces
    (grid_c, which must equal F.affine_grid's to within an ulp) and rounds the gradient
    flowing back into affine_grid to float32."""

    @staticmethod
    def forward(ctx, grid, grid_c):
        assert torch.allclose(grid, grid_c, rtol=2.0 ** -23, atol=1e-15), "grid mismatch"
        return grid_c.clone()

    @staticmethod
    def backward(ctx, g):
        return g.float().double(), None


def affine_grid(theta, n, c, h, w):
    return F.affine_grid(theta, (n, c, h, w), align_corners=False)


def grid_sample(x, grid):
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shape_str(*dims):
    return "x".join(str(d) for d in dims)


def rotation(deg, scale=1.0, tx=0.0, ty=0.0):
    # Rounded so that quarter turns are exact (cos 90 is 0, not 6e-17), as they are meant.
    a = math.radians(deg)
    c, s = round(math.cos(a), 12), round(math.sin(a), 12)
    return [[scale * c, -scale * s, tx], [scale * s, scale * c, ty]]


# ---- affine_grid ----------------------------------------------------------------------------
def affine_grid_cases():
    cases = []
    specs = [
        # (N, H, W, theta: None for random in [-1.5, 1.5])
        (1, 5, 7, None),
        (3, 8, 8, None),
        (2, 1, 1, None),
        (2, 16, 12, [rotation(0), rotation(28.6, tx=0.25, ty=-0.5)]),
        (1, 32, 32, None),
        (2, 3, 13, None),
    ]
    for k, (n, h, w, th) in enumerate(specs):
        seed = 100 + 10 * k
        theta = rand(seed, n, 2, 3, lo=-1.5, hi=1.5) if th is None else f32(th)
        theta.requires_grad_(True)
        grid = affine_grid(theta, n, 1, h, w)
        dgrid, (dtheta,) = grads(grid, [theta], seed + 1)
        label = f"theta {n}x2x3 grid {shape_str(h, w)}"
        cases.append((f"c{k}", {"label": label, "size": [n, 1, h, w]},
                      {"theta": theta, "grid": grid, "dgrid": dgrid, "grad_theta": dtheta}))
    return cases


# ---- grid_sample ----------------------------------------------------------------------------
def grid_sample_cases():
    cases = []
    specs = [
        # (in (N, C, H, W), out (Ho, Wo), grid range)
        ((2, 3, 8, 8), (8, 8), 1.3),
        ((1, 1, 5, 7), (9, 4), 1.3),
        ((3, 2, 6, 10), (3, 5), 1.3),
        ((2, 4, 4, 4), (11, 13), 1.3),
        ((1, 3, 16, 12), (10, 14), 1.3),
        ((2, 1, 1, 1), (3, 3), 1.3),
        ((1, 2, 7, 9), (5, 6), 0.95),
    ]
    for k, ((n, c, h, w), (ho, wo), r) in enumerate(specs):
        seed = 200 + 10 * k
        x = rand(seed, n, c, h, w).requires_grad_(True)
        grid = rand(seed + 1, n, ho, wo, 2, lo=-r, hi=r).requires_grad_(True)
        out = grid_sample(x, grid)
        dout, (dx, dgrid) = grads(out, [x, grid], seed + 2)
        label = f"in {shape_str(n, c, h, w)} out {shape_str(ho, wo)}"
        cases.append((f"c{k}", {"label": label, "grid_range": r},
                      {"in": x, "grid": grid, "out": out, "dout": dout,
                       "grad_input": dx, "grad_grid": dgrid}))
    # Every point outside the image: zeros forward and backward.
    n, c, h, w, ho, wo = 1, 2, 5, 5, 4, 4
    x = rand(290, n, c, h, w).requires_grad_(True)
    side = torch.where(rand(291, n, ho, wo, 2) < 0, -1.0, 1.0)
    grid = (side * rand(292, n, ho, wo, 2, lo=1.25, hi=1.6)).requires_grad_(True)
    out = grid_sample(x, grid)
    dout, (dx, dgrid) = grads(out, [x, grid], 293)
    cases.append((f"c{len(specs)}", {"label": "in 1x2x5x5 all points outside"},
                  {"in": x, "grid": grid, "out": out, "dout": dout,
                   "grad_input": dx, "grad_grid": dgrid}))
    # Non-finite and huge points among ordinary ones: NaN where a coordinate is NaN or
    # infinite (PyTorch's weights are NaN there), zeros for the huge ones.
    x = rand(294, 2, 2, 4, 5).requires_grad_(True)
    grid = rand(295, 2, 3, 3, 2, lo=-1.1, hi=1.1)
    odd = [(0, 0, 0, 0, math.nan), (0, 1, 1, 1, math.inf), (0, 2, 2, 0, -math.inf),
           (1, 0, 2, 0, 1e30), (1, 1, 0, 1, -1e30), (1, 2, 1, 0, math.inf),
           (1, 2, 1, 1, math.nan)]
    for n, i, j, k, v in odd:
        grid[n, i, j, k] = v
    grid.requires_grad_(True)
    out = grid_sample(x, grid)
    dout, (dx, dgrid) = grads(out, [x, grid], 296)
    cases.append((f"c{len(specs) + 1}", {"label": "in 2x2x4x5 NaN/inf/1e30 points"},
                  {"in": x, "grid": grid, "out": out, "dout": dout,
                   "grad_input": dx, "grad_grid": dgrid}))
    return cases


# ---- warp: theta -> affine_grid -> grid_sample ------------------------------------------------
def warp_cases():
    identity = rotation(0)
    specs = [
        # (name, (N, C, H, W), thetas, one per sample)
        ("identity", (1, 3, 8, 8), [identity]),
        ("rot 30", (1, 3, 9, 9), [rotation(30)]),
        ("rot 90", (1, 1, 8, 8), [rotation(90)]),
        ("rot 180", (2, 3, 6, 10), [rotation(180), rotation(180, tx=0.1)]),
        ("scale 0.5", (1, 3, 10, 10), [rotation(0, 0.5)]),
        ("scale 1.7", (1, 1, 7, 11), [rotation(0, 1.7)]),
        ("translate", (2, 3, 8, 8), [rotation(0, tx=1.5, ty=-0.8), rotation(0, tx=-1.2, ty=1.4)]),
        ("shear", (1, 3, 12, 8), [[[1, 0.4, 0], [0.3, 1, 0]]]),
        ("identity", (1, 1, 12, 20), [identity]),
        ("rot 90", (1, 3, 7, 7), [rotation(90)]),
    ]
    thetas = []
    for name, shape, ths in specs:
        thetas.append((name, shape, f32(ths)))
    # A batch of mixed transforms, drawn the way an STN's output spreads: rotation within
    # +-45 degrees, scale 0.6 to 1.4, translation up to 0.5.
    g = torch.Generator().manual_seed(399)
    u = torch.rand(4, 4, generator=g, dtype=torch.float64)
    mixed = [rotation(90 * (a - 0.5), 0.6 + 0.8 * s, x - 0.5, y - 0.5) for a, s, x, y in u.tolist()]
    thetas.append(("mixed batch", (4, 3, 8, 8), f32(mixed)))
    thetas.append(("random", (2, 1, 5, 7), rand(398, 2, 2, 3, lo=-1.2, hi=1.2)))

    cases = []
    for k, (name, (n, c, h, w), theta) in enumerate(thetas):
        seed = 300 + 10 * k
        theta = theta.clone().requires_grad_(True)
        x = rand(seed, n, c, h, w).requires_grad_(True)
        grid = Float32Grid.apply(affine_grid(theta, n, c, h, w), grid_as_c(theta, h, w))
        out = grid_sample(x, grid)
        dout, (dx, dtheta) = grads(out, [x, theta], seed + 1)
        label = f"{name} {shape_str(n, c, h, w)}"
        cases.append((f"c{k}", {"label": label},
                      {"theta": theta, "in": x, "out": out, "dout": dout,
                       "grad_input": dx, "grad_theta": dtheta}))
    return cases


# ---- resize_bilinear ------------------------------------------------------------------------
def resize_bilinear_cases():
    specs = [
        # (in (N, C, H, W), out (Ho, Wo), what it stands for)
        ((2, 1, 7, 7), (32, 32), "CAM"),
        ((1, 1, 28, 28), (32, 32), ""),
        ((1, 3, 40, 56), (10, 14), "down"),
        ((2, 2, 5, 9), (13, 6), ""),
        ((1, 2, 6, 8), (6, 8), "same"),
        ((2, 1, 1, 1), (4, 5), "1 pixel"),
        ((1, 3, 9, 7), (4, 3), "down"),
        ((3, 1, 3, 4), (7, 10), ""),
        ((1, 1, 2, 17), (5, 1), ""),
    ]
    cases = []
    for k, ((n, c, h, w), (ho, wo), what) in enumerate(specs):
        x = rand(500 + k, n, c, h, w)
        out = F.interpolate(x, size=(ho, wo), mode="bilinear", align_corners=False,
                            antialias=False)
        label = f"{shape_str(n, c, h, w)} -> {shape_str(ho, wo)} {what}".strip()
        cases.append((f"c{k}", {"label": label}, {"in": x, "out": out}))
    return cases


# ---- minmax_normalize -----------------------------------------------------------------------
def minmax_reference(x):
    flat = x.reshape(x.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / torch.clamp(hi - lo, min=1e-12)).reshape(x.shape)


def minmax_normalize_cases():
    near = torch.full((2, 1, 4, 4), 1.0)
    near[0, 0, 1, 2] = f32(1.0 + 2.0 ** -23)  # the next float32 above 1: range of one ulp
    near[1, 0, 3, 3] = f32(1.0 - 2.0 ** -24)
    mixed = rand(605, 2, 1, 6, 6)
    mixed[1] = 0.37109375
    specs = [
        # (label, input, run in place)
        ("2x3x5x7", rand(600, 2, 3, 5, 7), 0),
        ("1x1x6x6 constant", torch.full((1, 1, 6, 6), 0.37109375), 0),
        ("3x1x4x5 negative", rand(602, 3, 1, 4, 5, lo=-5.0, hi=-2.0), 0),
        ("3x17 (2-D)", rand(603, 3, 17, lo=-3.0, hi=7.0), 0),
        ("2x7x9 (3-D) in place", rand(604, 2, 7, 9), 1),
        ("2x1x6x6 one constant", mixed, 0),
        ("2x1x4x4 one-ulp range", near, 0),
        ("1x1x7x7 CAM-like in place", rand(606, 1, 1, 7, 7, lo=0.0, hi=12.0), 1),
    ]
    cases = []
    for k, (label, x, inplace) in enumerate(specs):
        cases.append((f"c{k}", {"label": label, "inplace": inplace},
                      {"in": x, "out": minmax_reference(x)}))
    return cases


SUITES = {
    "affine_grid": affine_grid_cases,
    "grid_sample": grid_sample_cases,
    "warp": warp_cases,
    "resize_bilinear": resize_bilinear_cases,
    "minmax_normalize": minmax_normalize_cases,
}
