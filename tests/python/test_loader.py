"""tmix.torch.Loader against a real tmixd: targets against the Batch, one epoch per loop and
len(), state_dict round trips, DDP ranks in one shard group, shm zero copy, a batch held past
an expired session, the GPU (cuda delivery included), trainers killed holding ring slots,
errors; and the parts of cuda delivery that run without a GPU: DLPack capsules as torch
reads them, the device ring with a fake runtime and fake events, the ctypes runtime with a
fake libcudart.

    test_loader.py NAME   (targets, epochs, state_dict, ddp, nodes, shm, held_expired, shm_kill,
                          cuda, cuda_kill, dlpack, cuda_ring, cuda_runtime, errors)
"""
import contextlib
import ctypes
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
import warnings

import numpy as np

from daemon import (TRAIN, Daemon, exactly_once, expect_error, in_shm_mapping, main, need_torch,
                    skip, wait_for)

need_torch()
import torch  # noqa: E402

import tmix  # noqa: E402
import tmix.torch  # noqa: E402
from tmix import _cuda, _dlpack  # noqa: E402
from tmix.client import CudaSlot  # noqa: E402


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
    """One DDP rank (a process; RANK, WORLD_SIZE, MASTER_PORT set, and LOCAL_WORLD_SIZE and
    GROUP_RANK on several nodes): its first loop."""
    loader = tmix.torch.Loader(endpoint, batch_size=50)
    assert loader.group == "ddp-29517" and loader.info.mode == "shard", loader.group
    world = int(os.environ["WORLD_SIZE"])
    assert (loader.rank, loader.world_size) == (int(os.environ["RANK"]), world)
    nodes = world // int(os.environ.get("LOCAL_WORLD_SIZE", world))
    assert loader.info.epoch_size == TRAIN // nodes, loader.info  # this node's part
    assert len(loader) == math.ceil(TRAIN // nodes / 50 / (world // nodes)), len(loader)
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


def test_nodes():
    """Two machines of two ranks each, as torchrun starts them (GROUP_RANK, LOCAL_WORLD_SIZE):
    each rank talks to its node's daemon, and the two daemons (one seed) split every epoch
    between the nodes: the four ranks together see each sample exactly once."""
    with Daemon("--server.seed=3") as d0, Daemon("--server.seed=3") as d1, \
            tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"rank{r}.json") for r in range(4)]
        procs = [subprocess.Popen([sys.executable, __file__, "_rank", (d0, d1)[r // 2].endpoint,
                                   outs[r]],
                                  env=dict(os.environ, RANK=str(r), WORLD_SIZE="4",
                                           LOCAL_WORLD_SIZE="2", GROUP_RANK=str(r // 2),
                                           MASTER_PORT="29517"))
                 for r in range(4)]
        assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
        got = [[i for epoch, ids in json.load(open(o)) if epoch == 0 for i in ids] for o in outs]
        exactly_once(got[0] + got[1] + got[2] + got[3], 0)
        assert not set(got[0] + got[1]) & set(got[2] + got[3])
        for d in (d0, d1):
            [g] = tmix.status(d.endpoint).groups
            assert (g.name, g.batches_per_epoch) == ("ddp-29517", TRAIN // 2 // 50), g


def test_shm():
    """On the CPU with shm delivery the images tensor is the ring itself, without a warning."""
    with Daemon() as d:
        loader = tmix.torch.Loader(d.endpoint, group="s", batch_size=50, delivery="shm")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x, t = next(iter(loader))
        assert not caught, [str(w.message) for w in caught]
        in_shm_mapping(x.data_ptr(), x.numel() * x.element_size(), loader.info)


def test_held_expired():
    """A loop ends holding the first batch of the next epoch, and the next loop starts after
    the trainer's evaluation. When that took longer than the lease, the daemon dropped the
    silent session and gave its shm slot to other batches: the next loop must not yield the
    slot's new images as the held batch's, nor lose the batch (broadcast)."""
    # 16 slots of 500 images: 16 MiB of batches (10) and 3 per trainer
    with Daemon("--server.lease_timeout_s=1", "--server.max_memory_mb=16",
                "--server.max_trainers=2") as d:
        kw = dict(group="h", mode="shard", batch_size=500, delivery="shm")
        loader = tmix.torch.Loader(d.endpoint, **kw)
        for _ in loader:
            pass
        held = loader._held[0]
        key, snapshot = (held.epoch, held.index), held.images.copy()
        # Another trainer goes on pulling while the loader is silent, 16 batches at a time:
        # past the lease it gets the held batch and gives it back, and then, holding 16,
        # takes every free slot, the held batch's too.
        other, deadline = tmix.Client(d.endpoint, **kw), time.monotonic() + 20
        while held.images.tobytes() == snapshot.tobytes():
            assert time.monotonic() < deadline, "the held batch's slot was not given to " \
                "another batch: this test would prove nothing"
            kept = [other.next() for _ in range(16)]
            del kept
        x, _ = next(iter(loader))
        got = (loader.batch.epoch, loader.batch.index)
        assert got != key or x.numpy().tobytes() == snapshot.tobytes(), \
            f"batch {got} came with another batch's images"

        loader.close()
        other.close()

        # Broadcast: no one else gets the held batch, so the new session starts at it.
        loader = tmix.torch.Loader(d.endpoint, **dict(kw, group="hb", mode="broadcast"))
        for _ in loader:
            pass
        held = loader._held[0]
        key, snapshot = (held.epoch, held.index), held.images.copy()
        del held
        time.sleep(2)
        x, _ = next(iter(loader))
        got = (loader.batch.epoch, loader.batch.index)
        assert got == key and x.numpy().tobytes() == snapshot.tobytes(), \
            f"broadcast: {got} after holding {key} past the lease"


def device_ptrs(loader):
    return {m.ptr for m in loader._ring.slots.values()}


def test_cuda():
    """inline and shm are copied to the GPU; cuda delivery gives the daemon's slot itself, equal
    to the batch a Client in the same broadcast group gets inline; the daemon knows its
    trainers' GPU by PCI bus id. A kept tensor holds only its
    own slot: 60 more batches all come in slots of the 16 (the ring wraps 3 times) and leave
    it alone, and after close() the session ends when it goes."""
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
    with Daemon("--server.max_memory_mb=16", "--server.max_trainers=2") as d:
        kw = dict(group="gpu", mode="broadcast", batch_size=500)
        loader = tmix.torch.Loader(d.endpoint, delivery="cuda", device="cuda", **kw)
        info = loader.info
        assert (info.delivery, info.cuda_device) == ("cuda", 0), info
        assert info.cuda_pci_bus_id == _cuda.runtime().pci_bus_id(0), info
        expect_error(lambda: tmix.Client(d.endpoint, group="other", delivery="cuda",
                                         cuda_pci_bus_id="0000:FF:1F.7"), tmix.TmixError,
                     "to a trainer on PCI 0000:FF:1F.7: the trainer must be on tmixd's GPU")
        assert info.cuda_slots == 16 * 2**20 // (500 * 28 * 28 * 4) + 3 * 2, info  # memory / batch
        ref = tmix.Client(d.endpoint, **kw)  # after the loader's Hello, which made the ring
        loops = (pair for _ in range(31) for pair in loader)  # 2 batches a loop (an epoch)
        for k, (x, t) in enumerate(itertools.islice(loops, 61)):
            b = ref.next()
            assert (b.epoch, b.index) == (loader.batch.epoch, loader.batch.index)
            assert x.device == torch.device("cuda", 0) and x.dtype == torch.float32
            assert x.data_ptr() in device_ptrs(loader), f"batch {k} is not in a slot"
            assert np.array_equal(x.cpu().numpy(), b.images), f"batch {k}"
            assert np.allclose(t.cpu().numpy(), dense(b, 10), atol=1e-6)
            if k == 0:
                kept, copy = x, x.clone()
        assert torch.equal(kept, copy), "a kept tensor's slot was refilled"
        del loops, x, t, b
        ref.close()
        loader.close()
        assert torch.equal(kept, copy) and tmix.status(d.endpoint).trainers == 1
        del kept
        assert tmix.status(d.endpoint).trainers == 0


def holder(endpoint, group, mode, batches, delivery):
    """A trainer that takes `batches` batches of `group` by `delivery` (cuda: on the GPU) and
    keeps them: it prints their sample ids as one JSON line, then waits to be killed."""
    device = "cuda" if delivery == "cuda" else "cpu"
    loader = tmix.torch.Loader(endpoint, group=group, mode=mode, batch_size=50,
                               delivery=delivery, device=device)
    kept, ids = [], []
    for (x, _), _ in zip(loader, range(int(batches))):
        kept.append(x)
        ids.extend(int(i) for i in loader.batch.sample_ids)
    if device == "cuda":
        torch.cuda.synchronize()
    print(json.dumps(ids), flush=True)
    time.sleep(600)


def kill_holder(endpoint, group, mode, batches, delivery):
    """holder() in a process of its own, SIGKILLed once it holds its batches: their ids."""
    p = subprocess.Popen([sys.executable, __file__, "_holder", endpoint, group, mode,
                          str(batches), delivery], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line, f"the holder exited {p.wait()} without its batches"
    return p, json.loads(line)


def killed_holding(delivery):
    """A trainer SIGKILLed holding slots of a ring (shm or cuda delivery): once its lease
    ends every slot of its broadcast group is free; a shard group's batches it held go to the
    next member, whose epoch is whole; trainers killed over and over leave the daemon with the
    descriptors it had."""
    used = f"{delivery}_slots_used"
    with Daemon("--server.lease_timeout_s=1") as d:
        def group(name):
            return next(g for g in tmix.status(d.endpoint).groups if g.name == name)

        def freed(name):
            g = group(name)
            return g.members == 0 and getattr(g, used) == 0

        p, _ = kill_holder(d.endpoint, "b", "broadcast", 3, delivery)
        g = group("b")
        assert g.members == 1 and getattr(g, used) >= 3, g
        p.kill()
        p.wait()
        wait_for("free slots", lambda: freed("b"))

        p, held = kill_holder(d.endpoint, "s", "shard", 3, delivery)
        assert len(held) == 150
        p.kill()
        p.wait()
        wait_for("lease end", lambda: group("s").members == 0)
        loader = tmix.torch.Loader(d.endpoint, group="s", batch_size=50, delivery=delivery,
                                   device="cuda" if delivery == "cuda" else "cpu")
        ids = [int(i) for _ in loader for i in loader.batch.sample_ids]
        exactly_once(ids, 0)  # the held batches again, and the rest
        loader.close()

        # The daemon closes a connection once it reads the peer's end: count when that is
        # done, for the loader's before and the killed trainers' after.
        def descriptors():
            return len(os.listdir(f"/proc/{d.proc.pid}/fd"))

        fds = descriptors()
        while True:
            time.sleep(0.2)
            now = descriptors()
            if now == fds:
                break
            fds = now
        for _ in range(3):
            p, _ = kill_holder(d.endpoint, "b", "broadcast", 1, delivery)
            p.kill()
            p.wait()
        wait_for("free slots", lambda: freed("b"))
        wait_for(f"the daemon's {fds} descriptors again", lambda: descriptors() <= fds)


def test_shm_kill():
    killed_holding("shm")


def test_cuda_kill():
    if not torch.cuda.is_available():
        skip("no GPU for PyTorch")
    killed_holding("cuda")


class FakeEvent:
    """A fake torch.cuda.Event: complete when the test says so, or at synchronize(), which
    calls on_wait first."""

    def __init__(self):
        self.done = self.waited = False
        self.on_wait = lambda: None

    def query(self):
        return self.done

    def synchronize(self):
        self.on_wait()
        self.done = self.waited = True


class FakeRuntime:
    """_cuda.Runtime's calls, logged: the n-th memory opened is at n * 0x1000, the n-th event
    is 0x9000 + n; with fail_event, opening an event fails."""

    def __init__(self, fail_event=False):
        self.log, self.opened, self.fail_event = [], 0, fail_event

    @contextlib.contextmanager
    def device(self, k):
        self.log.append(("device", k))
        yield

    def open_mem(self, handle):
        self.opened += 1
        self.log.append(("open_mem", handle))
        return self.opened * 0x1000

    def open_event(self, handle):
        if self.fail_event:
            raise _cuda.CudaError("cudaIpcOpenEventHandle", 205, "fake")
        self.log.append(("open_event", handle))
        return 0x9000 + self.opened

    def close_mem(self, ptr):
        self.log.append(("close_mem", ptr))

    def destroy_event(self, event):
        self.log.append(("destroy_event", event))

    def stream_wait_event(self, stream, event):
        self.log.append(("wait", stream, event))


released = []  # the names of the fake leases gone, in order: their batches given back


class Lease:
    def __init__(self, name):
        self.name = name

    def __del__(self):
        released.append(self.name)


def fake_batch(slot, mem, name):
    """What DeviceRing.receive reads of a tmix.Batch: the event handle is mem reversed."""
    return types.SimpleNamespace(cuda=CudaSlot(slot, mem, mem[::-1], (2, 3)),
                                 _lease=Lease(name))


class Taken:
    """What torch.utils.dlpack.from_dlpack does with DeviceImages, without torch's CUDA:
    images.__dlpack__(stream, max_version=(1, 0)) (a newer torch's call) taken (renamed
    "used_dltensor"), its DLTensor readable as
    `tensor`; when the Taken goes, the DLManagedTensor's deleter runs, as when a tensor's
    storage goes."""

    def __init__(self, images, stream):
        assert images.__dlpack_device__() == (_dlpack.KDL_CUDA, images._ring.device)
        capsule = images.__dlpack__(stream=stream, max_version=(1, 0))
        api = ctypes.pythonapi
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
        self.managed = ctypes.cast(api.PyCapsule_GetPointer(capsule, _dlpack.NAME),
                                   ctypes.POINTER(_dlpack.DLManagedTensor))
        assert api.PyCapsule_SetName(capsule, _dlpack.USED_NAME) == 0
        self.tensor = self.managed.contents.dl_tensor

    def __del__(self):
        self.managed.contents.deleter(self.managed)


def test_dlpack():
    """tmix._dlpack's capsules as torch reads them (here of host memory, kDLCPU): the values,
    dtype, shape and strides without a copy; the owner told when the tensor goes, or when the
    capsule goes unconsumed, once."""
    gone = []
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = torch.utils.dlpack.from_dlpack(_dlpack.capsule(
        a.ctypes.data, _dlpack.KDL_CPU, 0, a.shape, "<f4", lambda: gone.append("a")))
    assert t.data_ptr() == a.ctypes.data and t.stride() == (4, 1) and torch.equal(
        t, torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert (gone, _dlpack.exported()) == ([], 1)
    del t
    assert (gone, _dlpack.exported()) == (["a"], 0)
    for typestr, dtype in (("<f2", torch.float16), ("|u1", torch.uint8)):
        b = np.arange(6, dtype=np.dtype(typestr)).reshape(1, 2, 3)
        t = torch.utils.dlpack.from_dlpack(_dlpack.capsule(
            b.ctypes.data, _dlpack.KDL_CPU, 0, b.shape, typestr, lambda: gone.append(typestr)))
        assert t.dtype == dtype and t.shape == (1, 2, 3) and t.stride() == (6, 3, 1)
        assert np.array_equal(t.numpy(), b)
        del t
    capsule = _dlpack.capsule(a.ctypes.data, _dlpack.KDL_CPU, 0, (12,), "<f4",
                              lambda: gone.append("unconsumed"))
    del capsule
    assert (gone, _dlpack.exported()) == (["a", "<f2", "|u1", "unconsumed"], 0), gone


def described(t):
    """A DLTensor as (data, device, dtype, shape, strides, byte offset)."""
    n = t.ndim
    return (t.data, (t.device.device_type, t.device.device_id),
            (t.dtype.code, t.dtype.bits, t.dtype.lanes), tuple(t.shape[:n]),
            tuple(t.strides[:n]), t.byte_offset)


def test_cuda_ring():
    """Each slot opened once on the ring's device; its images exported by DLPack (device,
    dtype, shape, C-contiguous strides) after the consumer's stream waited for the slot's event
    (with the ring's device current: stream 0 is the current device's); a lease kept until the
    event recorded when the consumer let go has completed; a slot with new handles (the daemon
    restarted) opened anew, the old mapping closed, there too, with its last batch; close()
    waits for the GPU, and the images still alive keep their mapping until they go; images
    never exported give their lease back when they go."""
    rt, events = FakeRuntime(), []
    ring = _cuda.DeviceRing(rt, 1, lambda: events.append(FakeEvent()) or events[-1])
    a, b = bytes([1]) * 64, bytes(range(64))
    images = ring.receive(fake_batch(0, a, "a1"), "<f4")
    assert rt.log == [("device", 1), ("open_mem", a), ("open_event", a[::-1])], rt.log
    for refused in (dict(copy=True), dict(dl_device=(_dlpack.KDL_CUDA, 0))):
        expect_error(lambda: images.__dlpack__(stream=77, **refused), BufferError,
                     "exported without a copy")
    x = Taken(images, 77)
    assert described(x.tensor) == (0x1000, (2, 1), (2, 32, 1), (2, 3), (3, 1), 0)
    expect_error(lambda: images.__dlpack__(stream=77), BufferError, "exported once")
    del images  # the capsule holds the lease now
    y = Taken(ring.receive(fake_batch(0, a, "a2"), "<f4"), 78)  # the same handles: no open
    assert described(y.tensor)[0] == 0x1000
    assert rt.log[3:] == [("device", 1), ("wait", 77, 0x9001), ("device", 1),
                          ("wait", 78, 0x9001)], rt.log
    assert (ring.pending, released) == (0, [])
    del x
    assert (ring.pending, len(events), released) == (1, 1, [])
    ring.poll()
    assert (ring.pending, released) == (1, [])  # the GPU may still read it
    events[0].done = True
    ring.poll()
    assert (ring.pending, released) == (0, ["a1"])

    rt.log.clear()
    z = Taken(ring.receive(fake_batch(0, b, "b1"), "<f2"), 1)  # the daemon restarted; y lives
    assert described(z.tensor)[2] == (2, 16, 1)
    assert rt.log == [("device", 1), ("open_mem", b), ("open_event", b[::-1]),
                      ("device", 1), ("wait", 1, 0x9002)], rt.log
    del y
    events[1].done = True
    ring.poll()
    assert released == ["a1", "a2"]
    assert rt.log[-3:] == [("device", 1), ("close_mem", 0x1000), ("destroy_event", 0x9001)], \
        rt.log

    rt.log.clear()
    w = ring.receive(fake_batch(1, a, "a3"), "<f4")  # never exported
    v = [Taken(ring.receive(fake_batch(1, a, "a4"), "|u1"), -1)]  # -1: no wait
    assert ("wait", -1, 0x9003) not in rt.log and described(v[0].tensor)[2] == (1, 8, 1)
    del w
    assert ring.pending == 1 and not events[2].done
    events[2].on_wait = v.clear  # v's images go (a deleter) while close() holds the lock
    ring.close()
    assert events[2].waited and events[3].waited and ring.pending == 0
    assert released == ["a1", "a2", "a3", "a4"], released
    assert rt.log[-3:] == [("device", 1), ("close_mem", 0x3000), ("destroy_event", 0x9003)], \
        rt.log
    expect_error(lambda: ring.receive(fake_batch(1, a, "a5"), "<f4"), ValueError,
                 "ring is closed")
    assert ("close_mem", 0x2000) not in rt.log  # z still reads slot 0
    del z  # after close: released at once, once its GPU work is done
    assert events[4].waited and released[-2:] == ["a5", "b1"] and ring.pending == 0
    assert rt.log[-3:] == [("device", 1), ("close_mem", 0x2000), ("destroy_event", 0x9002)], \
        rt.log
    assert _dlpack.exported() == 0

    rt = FakeRuntime(fail_event=True)
    ring = _cuda.DeviceRing(rt, 0, FakeEvent)
    expect_error(lambda: ring.receive(fake_batch(3, a, "c1"), "<f4"), _cuda.CudaError,
                 "cudaIpcOpenEventHandle failed: fake (cudaError 205)")
    assert rt.log == [("device", 0), ("open_mem", a), ("close_mem", 0x1000)], rt.log
    assert ring.slots == {}


def test_cuda_runtime():
    """_cuda.Runtime over a fake libcudart (FAKE_CUDART, built as libcudart.so.99): found in
    /proc/self/maps once loaded, 64-byte handles passed whole by value with the lazy peer
    access flag, stream waits, device switches, PCI bus ids, and failures naming the call
    and CUDA's sentence."""
    path = os.environ.get("FAKE_CUDART")
    assert path, "FAKE_CUDART (the fake libcudart.so.99 of tests/python) is not set"
    rt = _cuda.Runtime(path)
    assert _cuda.mapped_cudart() == [os.path.realpath(path)], _cuda.mapped_cudart()
    assert _cuda.Runtime().path == os.path.realpath(path)  # the one mapped comes first
    fake = ctypes.CDLL(path)
    fake.fake_last_closed.restype = fake.fake_last_destroyed.restype = ctypes.c_void_p

    handle = bytes(range(200, 256)) + bytes(range(8))
    address = 0x100000 + 16 * sum((i + 1) * v for i, v in enumerate(handle))
    assert rt.open_mem(handle) == address
    assert rt.open_event(handle) == address + 1
    rt.close_mem(address)
    rt.destroy_event(address + 1)
    assert (fake.fake_last_closed(), fake.fake_last_destroyed()) == (address, address + 1)
    rt.stream_wait_event(0x5000, address + 1)
    stream, event, flags = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
    fake.fake_last_wait(ctypes.byref(stream), ctypes.byref(event), ctypes.byref(flags))
    assert (stream.value, event.value, flags.value) == (0x5000, address + 1, 0)

    device = ctypes.c_int()
    with rt.device(1):
        fake.cudaGetDevice(ctypes.byref(device))
        assert device.value == 1
    fake.cudaGetDevice(ctypes.byref(device))
    assert device.value == 0
    assert (rt.pci_bus_id(0), rt.pci_bus_id(1)) == ("0000:1A:00.0", "0000:1B:00.0")

    e = expect_error(lambda: rt.open_mem(b"\xee" + handle[1:]), _cuda.CudaError,
                     "tmix: cudaIpcOpenMemHandle failed: fake: mapping of buffer object "
                     "failed (cudaError 205)")
    assert (e.call, e.code) == ("cudaIpcOpenMemHandle", 205)
    expect_error(lambda: rt.close_mem(None), _cuda.CudaError,
                 "cudaIpcCloseMemHandle failed: invalid argument (cudaError 1)")
    expect_error(lambda: rt.device(2).__enter__(), _cuda.CudaError,
                 "cudaSetDevice failed: invalid device ordinal (cudaError 101)")
    expect_error(lambda: rt.pci_bus_id(2), _cuda.CudaError,
                 "cudaDeviceGetPCIBusId failed: invalid device ordinal (cudaError 101)")
    expect_error(lambda: rt.open_event(handle[:63]), ValueError, "event handle",
                 "expected 64 bytes")
    missing = os.path.join(os.path.dirname(path), "none", "libcudart.so")
    expect_error(lambda: _cuda.Runtime(missing), OSError,
                 f"libcudart) not found. Tried: {missing} (the path given): ")


def test_errors():
    loader = tmix.torch.Loader
    expect_error(lambda: loader(delivery="cuda"), ValueError,
                 "delivery 'cuda' with device 'cpu': expected device 'cuda' or 'cuda:k'")
    expect_error(lambda: loader(targets="onehot"), ValueError, "targets 'onehot'")
    os.environ.update(RANK="2", WORLD_SIZE="2")
    expect_error(loader, ValueError, "RANK=2 WORLD_SIZE=2")
    os.environ.update(RANK="1", WORLD_SIZE="4", LOCAL_WORLD_SIZE="3", GROUP_RANK="0")
    expect_error(loader, ValueError, "WORLD_SIZE=4 LOCAL_WORLD_SIZE=3",
                 "expected WORLD_SIZE = nodes x LOCAL_WORLD_SIZE")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_rank"]:
        rank(*sys.argv[2:4])
    elif sys.argv[1:2] == ["_holder"]:
        holder(*sys.argv[2:7])
    else:
        for key in ("RANK", "WORLD_SIZE", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK"):
            # one trainer unless a test says
            os.environ.pop(key, None)
        main({"targets": test_targets, "epochs": test_epochs, "state_dict": test_state_dict,
              "ddp": test_ddp, "nodes": test_nodes, "shm": test_shm,
              "held_expired": test_held_expired, "shm_kill": test_shm_kill,
              "dlpack": test_dlpack,
              "cuda": test_cuda, "cuda_kill": test_cuda_kill, "cuda_ring": test_cuda_ring,
              "cuda_runtime": test_cuda_runtime, "errors": test_errors})
