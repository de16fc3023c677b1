"""Golden cases of the ops that assemble networks: add, concat_channels, fill_channels,
gather, cam, box_masks.

Each suite function returns [(case_name, params, tensors)] (see make_golden.py). The roles
are those kernels/golden/assemble.c reads; host arrays of the ops live in the params:

add              a, b, out
concat_channels  in0..in{parts-1}, out = torch.cat(dim=1) of the parts; dout, grad0..
                 grad{parts-1} (the slices of dout). Params: parts.
fill_channels    base (the tensor filled into), values (N, K), out. Params: c0.
gather           in, out. Params: index (M ints).
cam              features, weight, out. Params: labels (N ints).
box_masks        out (B, 2, H, W). Params: y0, x0, y1, x1 (B ints each).
"""
import torch

from common import grads, rand


def dims(shape):
    return "x".join(str(s) for s in shape)


# ---- add -------------------------------------------------------------------------------------

def add_cases():
    shapes = [(5,), (3, 7), (2, 3, 4), (2, 3, 5, 7), (4, 16, 8, 8)]
    cases = []
    for i, shape in enumerate(shapes):
        a, b = rand(1100 + i, *shape), rand(1200 + i, *shape, lo=-3, hi=3)
        cases.append((f"c{i}", {"label": dims(shape)}, {"a": a, "b": b, "out": a + b}))
    return cases


# ---- concat_channels -------------------------------------------------------------------------

def concat_channels_cases():
    # N, channels of each part, H, W
    specs = [
        (2, [3, 2], 5, 7),
        (1, [1, 1, 1], 4, 4),
        (3, [4, 2, 3], 3, 5),
        (2, [6], 2, 3),       # one part: a copy
        (2, [2, 5], 8, 8),
    ]
    cases = []
    for i, (N, parts, H, W) in enumerate(specs):
        ins = [rand(1300 + 10 * i + p, N, C, H, W).requires_grad_() for p, C in enumerate(parts)]
        out = torch.cat(ins, dim=1)
        dout, gs = grads(out, ins, 1400 + i)
        tensors = {f"in{p}": x for p, x in enumerate(ins)}
        tensors.update({"out": out, "dout": dout})
        tensors.update({f"grad{p}": g for p, g in enumerate(gs)})
        label = f"N{N} C{'+'.join(str(c) for c in parts)} {H}x{W}"
        cases.append((f"c{i}", {"label": label, "parts": len(parts)}, tensors))
    return cases


# ---- fill_channels ---------------------------------------------------------------------------

def fill_channels_cases():
    # N, Co, H, W, K, c0
    specs = [
        (2, 5, 3, 4, 2, 1),
        (1, 3, 5, 5, 3, 0),   # every channel
        (4, 6, 2, 7, 1, 5),   # the last channel
        (3, 4, 8, 8, 2, 2),
    ]
    cases = []
    for i, (N, Co, H, W, K, c0) in enumerate(specs):
        base = rand(1500 + i, N, Co, H, W)
        values = rand(1600 + i, N, K, lo=0.0, hi=1.0)
        out = base.clone()
        out[:, c0:c0 + K] = values.view(N, K, 1, 1).expand(N, K, H, W)
        label = f"{dims((N, Co, H, W))} K{K} c0 {c0}"
        cases.append((f"c{i}", {"label": label, "c0": c0},
                      {"base": base, "values": values, "out": out}))
    return cases


# ---- gather ----------------------------------------------------------------------------------

def gather_cases():
    # in shape, index
    specs = [
        ((5,), [4, 0, 0, 2]),
        ((4, 3), [3, 3, 1]),
        ((6, 2, 3), [5, 0, 1, 2, 3, 4]),            # a permutation
        ((5, 3, 4, 4), [1, 1, 1, 1, 1, 1, 1]),      # more rows than in, all the same
        ((3, 2, 5, 5), [2]),
    ]
    cases = []
    for i, (shape, index) in enumerate(specs):
        x = rand(1700 + i, *shape)
        out = x[torch.tensor(index)]
        label = f"in {dims(shape)} M{len(index)}"
        cases.append((f"c{i}", {"label": label, "index": index}, {"in": x, "out": out}))
    return cases


# ---- cam -------------------------------------------------------------------------------------

def cam_cases():
    # N, C, h, w, J, labels
    specs = [
        (2, 8, 4, 4, 10, [3, 9]),
        (3, 16, 2, 2, 5, [0, 4, 0]),
        (1, 5, 7, 7, 3, [2]),
        (4, 64, 8, 8, 100, [17, 99, 17, 0]),
        (2, 32, 9, 11, 10, [1, 2]),              # 99 pixels: more than one tile of 64
    ]
    cases = []
    for i, (N, C, h, w, J, labels) in enumerate(specs):
        f = rand(1800 + i, N, C, h, w, lo=0.0, hi=2.0)  # post-ReLU features
        wt = rand(1900 + i, J, C)
        out = torch.einsum("nc,nchw->nhw", wt[torch.tensor(labels)], f).unsqueeze(1)
        label = f"features {dims((N, C, h, w))} J{J}"
        cases.append((f"c{i}", {"label": label, "labels": labels},
                      {"features": f, "weight": wt, "out": out}))
    return cases


# ---- box_masks -------------------------------------------------------------------------------

def box_masks_cases():
    # H, W, boxes (y0, x0, y1, x1)
    specs = [
        (8, 8, [(2, 3, 6, 7), (0, 0, 8, 8)]),
        (5, 7, [(1, 1, 1, 4), (0, 6, 5, 7), (4, 0, 5, 7)]),   # empty, last column, last row
        (32, 32, [(10, 4, 30, 20)]),
        (6, 6, [(0, 0, 0, 0), (3, 3, 6, 6), (0, 5, 6, 6), (2, 0, 3, 6)]),
    ]
    cases = []
    for i, (H, W, boxes) in enumerate(specs):
        B = len(boxes)
        inside = torch.zeros(B, H, W)
        for b, (y0, x0, y1, x1) in enumerate(boxes):
            inside[b, y0:y1, x0:x1] = 1
        out = torch.stack([1 - inside, inside], dim=1)
        params = {"label": f"B{B} {H}x{W}", "y0": [bx[0] for bx in boxes],
                  "x0": [bx[1] for bx in boxes], "y1": [bx[2] for bx in boxes],
                  "x1": [bx[3] for bx in boxes]}
        cases.append((f"c{i}", params, {"out": out}))
    return cases


SUITES = {
    "add": add_cases,
    "concat_channels": concat_channels_cases,
    "fill_channels": fill_channels_cases,
    "gather": gather_cases,
    "cam": cam_cases,
    "box_masks": box_masks_cases,
}
