"""tmix.torch.Loader against a real tmixd: targets against the Batch, one epoch per loop and
len(), state_dict round trips, DDP ranks in one shard group, shm zero copy, the GPU, errors.

    test_loader.py NAME   (targets, epochs, state_dict, ddp, shm, cuda, errors)
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from daemon import Daemon, exactly_once, expect_error, in_shm_mapping, main, need_torch, skip

need_torch()
import torch  # noqa: E402

import tmix  # noqa: E402
import tmix.torch  # noqa: E402

def dense(batch, classes):
    t = np.zeros((batch.size, classes), np.float32)
    np.add.at(t, (np.arange(batch.size)[:, None], batch.labels.astype(np.int64)), batch.weights)
    return t


def test_targets():
    """A Client and two Loaders in one broadcast group get the same batches."""
    with Daemon("--server.seed=5") as d:
        kw = dict(group="b", mode="broadcast", batch_size=50)
        c = tmix.Client(d.endpoint, **kw)
        dense_loader = iter(tmix.torch.Loader(d.endpoint, **kw))
        sparse_loader = iter(tmix.torch.Loader(d.endpoint, targets="sparse", **kw))
        for _ in range(3):
            b = c.next()
            x, t = next(dense_loader)
            xs, (labels, weights) = next(sparse_loader)
            for images in (x, xs):
                assert images.dtype == torch.float32 and tuple(images.shape) == (50, 1, 28, 28)
                assert images.numpy().tobytes() == b.images.tobytes()
            assert t.dtype == torch.float32 and tuple(t.shape) == (50, 10)
            assert np.allclose(t.numpy(), dense(b, 10), atol=1e-6)
            assert np.allclose(t.sum(1).numpy(), 1, atol=1e-5)
            assert labels.dtype == torch.int64 and weights.dtype == torch.float32
            assert np.array_equal(labels.numpy(), b.labels)
            assert np.array_equal(weights.numpy(), b.weights)


def loop(loader):
    """(epoch, index) of every batch of one loop, and the sample ids of its epoch."""
    got, ids = [], []
    for x, t in loader:
        assert tuple(x.shape) == (50, 1, 28, 28) and tuple(t.shape) == (50, 10)
        got.append((loader.batch.epoch, loader.batch.index))
        ids.extend(loader.batch.sample_ids)
    return got, ids


def test_epochs():
    with Daemon() as d:
        loader = tmix.torch.Loader(d.endpoint, group="e", batch_size=50)
        assert len(loader) == 20 and loader.info.mode == "shard"
        for epoch in (0, 1):
            got, ids = loop(loader)
            assert got == [(epoch, k) for k in range(20)], got
            exactly_once(ids, epoch)
            assert loader.state_dict()["position"] == 20 * (epoch + 1)


def test_state_dict():
    with Daemon() as d:
        kw = dict(group="r", mode="broadcast", batch_size=50)
        a = tmix.torch.Loader(d.endpoint, **kw)
        for k, _ in zip(range(5), a):
            pass
        state = a.state_dict()
        assert state == {"group": "r", "mode": "broadcast", "position": 5, "epoch": 0,
                         "index": 5}, state
        rest = [(a.batch.index, x.clone()) for x, _ in a]  # the loop goes on at index 5
        assert [i for i, _ in rest] == list(range(5, 20))
        assert a.state_dict()["position"] == 20  # the first batch of epoch 1 waits
        b = tmix.torch.Loader(d.endpoint, **kw)
        b.load_state_dict(state)
        resumed = [(b.batch.index, x.clone()) for x, _ in b]
        assert [i for i, _ in resumed] == list(range(5, 20))
        for (_, x), (_, y) in zip(rest, resumed):
            assert torch.equal(x, y)
        c = tmix.torch.Loader(d.endpoint, **kw)
        c.load_state_dict({"position": 25, "mode": "broadcast"})
        assert [(c.batch.epoch, c.batch.index) for _ in c][:2] == [(1, 5), (1, 6)]


def rank(endpoint, out):
    """One DDP rank (a process; RANK, WORLD_SIZE, MASTER_PORT set): its first loop."""
    loader = tmix.torch.Loader(endpoint, batch_size=50)
    assert loader.group == "ddp-29517" and loader.info.mode == "shard", loader.group
    assert (loader.rank, loader.world_size) == (int(os.environ["RANK"]), 2)
    assert len(loader) == 10
    got = [[loader.batch.epoch, [int(i) for i in loader.batch.sample_ids]] for _ in loader]
    with open(out, "w") as f:
        json.dump(got, f)


def test_ddp():
    with Daemon() as d, tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"rank{r}.json") for r in range(2)]
        procs = [subprocess.Popen([sys.executable, __file__, "_rank", d.endpoint, outs[r]],
                                  env=dict(os.environ, RANK=str(r), WORLD_SIZE="2",
                                           MASTER_PORT="29517"))
                 for r in range(2)]
        assert [p.wait(60) for p in procs] == [0, 0]
        got = [b for o in outs for b in json.load(open(o))]
        exactly_once([i for epoch, ids in got if epoch == 0 for i in ids], 0)
        groups = tmix.status(d.endpoint).groups
        assert [(g.name, g.mode) for g in groups] == [("ddp-29517", "shard")], groups


def test_shm():
    """On the CPU with shm delivery the images tensor is the ring itself, without a warning."""
    with Daemon() as d:
        loader = tmix.torch.Loader(d.endpoint, group="s", batch_size=50, delivery="shm")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, t = next(iter(loader))
        assert not caught, [str(w.message) for w in caught]
        in_shm_mapping(x.data_ptr(), x.numel() * x.element_size(), loader.info)


def test_cuda():
    if not torch.cuda.is_available():
        skip("no GPU for PyTorch")
    with Daemon() as d:
        for delivery in ("inline", "shm"):
            loader = tmix.torch.Loader(d.endpoint, group=delivery, batch_size=50,
                                       delivery=delivery, device="cuda")
            c = tmix.Client(d.endpoint, group=delivery + "-ref", batch_size=50)
            x, t = next(iter(loader))
            b = c.next()
            assert x.device.type == "cuda" and t.device.type == "cuda"
            assert np.array_equal(x.cpu().numpy(), b.images)
            assert np.allclose(t.cpu().numpy(), dense(b, 10), atol=1e-6)


def test_errors():
    loader = tmix.torch.Loader
    expect_error(lambda: loader(delivery="cuda"), NotImplementedError, "delivery 'cuda'")
    expect_error(lambda: loader(targets="onehot"), ValueError, "targets 'onehot'")
    os.environ.update(RANK="2", WORLD_SIZE="2")
    expect_error(loader, ValueError, "RANK=2 WORLD_SIZE=2")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_rank"]:
        rank(*sys.argv[2:4])
    else:
        for key in ("RANK", "WORLD_SIZE", "MASTER_PORT"):  # one trainer unless a test says
            os.environ.pop(key, None)
        main({"targets": test_targets, "epochs": test_epochs, "state_dict": test_state_dict,
              "ddp": test_ddp, "shm": test_shm, "cuda": test_cuda, "errors": test_errors})
