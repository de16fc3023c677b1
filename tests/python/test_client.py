"""tmix.Client against a real tmixd: batches, their metadata and formats, shard coverage by two
trainer processes, shm zero copy, inline = shm, the lifetime of batches and errors; CUDA
delivery from a tmixd on the fake GPU (tests/fakecuda); and that meson installs every module
of the package.

    test_client.py NAME      (iterate, formats, coverage, shm, inline_vs_shm, lifetime, threads,
                             errors, cuda_fake, cuda_fake_kill, cuda_fake_slow_read, packaged)
"""
import contextlib
import ctypes
import gzip
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import tmix
from tmix import _cuda
from daemon import (TRAIN, Daemon, exactly_once, expect_error, in_shm_mapping, main,
                    need_dataset, wait_for)


def cut_labels(fmnist):
    """The labels of the cut's train samples, as make_idx.py copies them."""
    with gzip.open(os.path.join(fmnist, "train-labels-idx1-ubyte.gz")) as f:
        return np.frombuffer(f.read()[8:8 + TRAIN], np.uint8)


def check_batch(b, info, labels):
    n, size = info.mix_n, b.size
    assert b.images.shape == (size, 1, 28, 28) and b.images.dtype == np.float32, b.images.shape
    assert b.sample_ids.shape == (size,) and b.sample_ids.dtype == np.uint64
    for a in (b.sources, b.labels, b.weights):
        assert a.shape == (size, n), a.shape
    assert (b.sources.dtype, b.labels.dtype, b.weights.dtype) == (np.uint64, np.uint32, np.float32)
    assert b.replaced_ids.shape == (0,) and b.cuda is None
    assert np.array_equal(b.sources[:, 0], b.sample_ids)
    assert np.array_equal(b.labels, labels[b.sources.astype(np.int64)]), "not the sources' labels"
    assert np.allclose(b.weights.sum(axis=1), 1, atol=1e-5)
    assert b.images.min() >= -1 and b.images.max() <= 1  # mean = std = 0.5 maps [0, 1] to [-1, 1]
    for a in (b.images, b.sample_ids, b.sources, b.labels, b.weights):
        assert not a.flags.writeable
    try:
        b.weights[0, 0] = 0
        raise AssertionError("a batch's array is writable")
    except ValueError:
        pass


def test_iterate():
    labels = cut_labels(need_dataset())
    with Daemon("--server.seed=3") as d, \
            tmix.Client(d.endpoint, group="g", mode="shard", batch_size=64) as c:
        i = c.info
        assert (i.channels, i.height, i.width, i.classes, i.mix_n) == (1, 28, 28, 10, 2), i
        assert (i.batch_size, i.epoch_size, i.batches_per_epoch) == (64, TRAIN, 16), i
        assert (i.mode, i.dtype, i.layout, i.method) == ("shard", "float32", "nchw", "mixup"), i
        assert i.delivery == "inline" and i.shm_name == "" and i.shm_base == 0, i
        assert i.cuda_slots == 0, i
        assert i.mean == (0.5,) and i.std == (0.5,), i  # [augment] auto, without a teacher
        ids = []
        for k, b in zip(range(17), c):  # one epoch and the first batch of the next
            c.set_ahead(k < 15)  # none asked for after the 17th
            assert (b.epoch, b.index, b.sequence) == (k // 16, k % 16, k + 1), b
            assert b.size == (64 if k % 16 < 15 else TRAIN - 15 * 64), b.size
            check_batch(b, i, labels)
            if b.epoch == 0:
                ids.extend(b.sample_ids)
        exactly_once(ids, 0)
        assert [g.batches_served for g in tmix.status(d.endpoint).groups] == [17]


def test_formats():
    """float16 and uint8 NHWC: the float32 batch of the same position, rounded and as pixels."""
    with Daemon("--server.seed=3") as d:
        got = {}
        for dtype, layout in (("float32", "nchw"), ("float16", "nchw"), ("uint8", "nhwc")):
            with tmix.Client(d.endpoint, group=dtype, dtype=dtype, layout=layout,
                             batch_size=40) as c:
                assert (c.info.dtype, c.info.layout) == (dtype, layout), c.info
                b = c.next()
                got[dtype] = (b.images, b.sample_ids, b.weights)
        x, ids, w = got["float32"]
        for dtype, (images, other_ids, other_w) in got.items():
            assert np.array_equal(ids, other_ids) and np.array_equal(w, other_w), dtype
        assert got["float16"][0].dtype == np.float16
        assert np.array_equal(got["float16"][0], x.astype(np.float16))
        u8 = got["uint8"][0]
        assert u8.dtype == np.uint8 and u8.shape == (40, 28, 28, 1), (u8.dtype, u8.shape)
        pixels = np.clip(np.rint((x * 0.5 + 0.5) * 255), 0, 255)
        assert np.abs(u8.transpose(0, 3, 1, 2) - pixels).max() <= 1


def trainer(endpoint, out):
    """One shard trainer (a process of its own): every batch of epochs 0 and 1 it gets."""
    got = []
    with tmix.Client(endpoint, group="g", mode="shard", batch_size=50) as c:
        for b in c:
            if b.epoch >= 2:
                break
            got.append([b.epoch, b.index, [int(i) for i in b.sample_ids]])
    with open(out, "w") as f:
        json.dump(got, f)


def test_coverage():
    with Daemon("--server.seed=7") as d, tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"t{k}.json") for k in range(2)]
        procs = [subprocess.Popen([sys.executable, __file__, "_trainer", d.endpoint, o])
                 for o in outs]
        assert [p.wait(60) for p in procs] == [0, 0]
        batches = [b for o in outs for b in json.load(open(o))]
        for epoch in (0, 1):
            mine = [b for b in batches if b[0] == epoch]
            assert sorted(b[1] for b in mine) == list(range(20)), f"epoch {epoch}: a batch twice"
            exactly_once([i for b in mine for i in b[2]], epoch)


def check_in_ring(b, info):
    assert b.in_shm
    in_shm_mapping(b.images.__array_interface__["data"][0], b.images.nbytes, info)


def test_shm():
    """The images lie in the ring's read-only mapping; a kept array holds its batch's slot, so
    it is never overwritten while the ring wraps around, and holds only that slot: the batches
    released after it are acknowledged one by one, their slots reused, nothing goes inline."""
    with Daemon("--server.max_memory_mb=16", "--server.max_trainers=1") as d, \
            tmix.Client(d.endpoint, group="s", delivery="shm", batch_size=500) as c:
        i = c.info
        assert i.delivery == "shm" and i.shm_name.startswith("/tmix-") and i.shm_bytes > 0, i
        b = c.next()
        check_in_ring(b, i)
        kept, copy = b.images[1:3], b.images[1:3].copy()
        del b
        slots = tmix.status(d.endpoint).groups[0].shm_slots
        assert slots == 16 * 2**20 // (500 * 28 * 28 * 4) + 3, slots  # memory / batch + 3
        for _ in range(2 * slots):
            b = c.next()
            check_in_ring(b, i)
        assert np.array_equal(kept, copy), "a kept array was overwritten"
        used = tmix.status(d.endpoint).groups[0].shm_slots_used
        assert used < slots, f"{used} of {slots} slots in use: released batches hold theirs"
        del kept, b


def test_inline_vs_shm():
    """Two members of one broadcast group, one inline and one shm: the same bytes. (The shm
    member says Hello first: the ring is made then, and batches made before are inline.)"""
    with Daemon() as d, \
            tmix.Client(d.endpoint, group="b", mode="broadcast", batch_size=50,
                        delivery="shm") as shm, \
            tmix.Client(d.endpoint, group="b", mode="broadcast", batch_size=50) as inline:
        assert (inline.info.delivery, shm.info.delivery) == ("inline", "shm")
        for _ in range(25):
            a, b = inline.next(), shm.next()
            assert not a.in_shm and b.in_shm
            assert (a.epoch, a.index) == (b.epoch, b.index)
            for name in ("images", "sample_ids", "sources", "labels", "weights"):
                assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


def test_lifetime():
    """An array outlives its Batch and the Client's close(); the session ends with the last."""
    with Daemon() as d:
        c = tmix.Client(d.endpoint, group="l", batch_size=50)
        b = c.next()
        ids, ids_copy = b.sample_ids, b.sample_ids.copy()
        b.release()
        assert not hasattr(b, "images")
        b2 = c.next()
        conn = c._conn
        c.close()
        try:
            c.next()
            raise AssertionError("next() on a closed client")
        except ValueError:
            pass
        assert conn.ptr is not None and tmix.status(d.endpoint).trainers == 1
        assert np.array_equal(ids, ids_copy) and b2.size == 50
        del ids
        assert conn.ptr is not None  # b2 still held
        del b2
        assert conn.ptr is None and tmix.status(d.endpoint).trainers == 0


def test_threads():
    """Four threads share one client and hand their batches to a fifth that drops them (so
    releases happen while another thread is in tmix_next): every batch once, sequences
    1..40 without a gap, and every batch released at the end."""
    with Daemon() as d, tmix.Client(d.endpoint, group="t", batch_size=50) as c:
        batches, got = queue.Queue(), []

        def pull():
            for _ in range(10):
                batches.put(c.next())

        def drop():
            for _ in range(40):
                b = batches.get()
                got.append((b.sequence, b.epoch, b.index))
                del b

        threads = [threading.Thread(target=f) for f in (pull, pull, pull, pull, drop)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(s for s, _, _ in got) == list(range(1, 41))
        assert sorted((e, i) for _, e, i in got) == [(e, i) for e in (0, 1) for i in range(20)]
        conn = c._conn
        c.close()
        assert conn.ptr is None  # nothing held: closed at once


def test_errors():
    with tempfile.TemporaryDirectory() as tmp:
        nowhere = f"ipc://{tmp}/none.sock"
        e = expect_error(lambda: tmix.Client(nowhere, group="no spaces"), tmix.TmixError,
                         "TMIX_EINVAL", "group 'no spaces'")
        assert (e.code, e.name) == (-1, "TMIX_EINVAL")
        e = expect_error(lambda: tmix.Client(nowhere, timeout=0.3), tmix.TmixError,
                         "TMIX_ETIMEDOUT", nowhere)
        assert e.code == -20
        expect_error(lambda: tmix.Client(nowhere, mode="sharded"), ValueError, "'sharded'")
        expect_error(lambda: tmix.Client(nowhere, delivery="gpu"), ValueError,
                     "delivery 'gpu': expected one of None, 'inline', 'shm', 'cuda'")
        expect_error(lambda: tmix.Client(nowhere, timeout=0), ValueError, "timeout 0")
        with Daemon("--server.device=cpu") as d:
            e = expect_error(lambda: tmix.Client(d.endpoint, delivery="cuda"), tmix.TmixError,
                             "TMIX_ENOTSUP", "cuda delivery needs tmixd on a GPU")
            assert e.code == -8
        missing = os.path.join(tmp, "libtmix.so")
        p = subprocess.run([sys.executable, "-c", "import tmix; tmix.Client()"],
                           env=dict(os.environ, TMIX_LIBRARY=missing), capture_output=True,
                           text=True)
        assert p.returncode == 1 and f"Tried: {missing} ($TMIX_LIBRARY)" in p.stderr, p.stderr


FAKE_BUS = "0000:FA:CE.0"  # the fake GPU's PCI bus id (tests/fakecuda/fake_cuda.c)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PROT_READ, MAP_SHARED, MAP_FAILED = 1, 1, ctypes.c_void_p(-1).value


class ShmRuntime:
    """tmix._cuda's Runtime for the fake GPU's slots: a memory handle names a POSIX shared
    memory object, mapped read-only here; an event handle says "fake event"; streams wait for
    nothing: tmixd sends a batch once its slot is filled (the fake's fills are slow, so a
    batch sent earlier holds stale bytes)."""

    def __init__(self):
        self.sizes, self.waits = {}, 0

    def open_mem(self, handle):
        fd = os.open("/dev/shm" + handle.split(b"\0", 1)[0].decode(), os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            ptr = _libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        finally:
            os.close(fd)
        assert ptr not in (None, MAP_FAILED), os.strerror(ctypes.get_errno())
        self.sizes[ptr] = size
        return ptr

    def close_mem(self, ptr):
        assert _libc.munmap(ptr, self.sizes.pop(ptr)) == 0

    def open_event(self, handle):
        assert handle.startswith(b"fake event\0"), handle
        return 1

    def destroy_event(self, event):
        assert event == 1

    def stream_wait_event(self, stream, event):
        self.waits += 1

    def pci_bus_id(self, k):
        return FAKE_BUS

    @contextlib.contextmanager
    def device(self, k):
        yield


class DoneEvent:
    """An event whose work has completed (there is no GPU work)."""

    def query(self):
        return True

    def synchronize(self):
        pass


def slot_images(images):
    """A copy of the images a DeviceImages holds, read from its mapped slot."""
    nbytes = int(np.prod(images.shape)) * 4
    raw = (ctypes.c_char * nbytes).from_address(images._mapping.ptr)
    return np.frombuffer(raw, np.float32).reshape(images.shape).copy()


def cpu_batches(kw, n):
    """The first n batches a CPU tmixd with seed 3 makes for a Client of options kw:
    {(epoch, index): (images, sources, labels, weights)}, the fake GPU's reference."""
    with Daemon("--server.seed=3", "--server.device=cpu") as d, tmix.Client(d.endpoint, **kw) as c:
        return {(b.epoch, b.index): (b.images.copy(), b.sources.copy(), b.labels.copy(),
                                     b.weights.copy()) for b in (c.next() for _ in range(n))}


def test_cuda_fake():
    """CUDA delivery from a tmixd on the fake GPU (tests/fakecuda: the GPU paths with the CPU's
    ops, slots in shared memory), against a CPU tmixd with the same seed: every batch comes in
    a slot of the ring, holding the images the CPU made for that batch, for 40 batches (more
    than the ring's 16 slots: released ones come back); a kept batch's slot is not refilled; the trainer's GPU is checked by PCI bus
    id. The group's one member reads slots, so tmixd makes no host copy; a member that joins
    later inline gets the images read back from the slots. Once the trainers go, every slot
    is free."""
    need_dataset()
    kw = dict(group="g", mode="broadcast", batch_size=500)
    ref = cpu_batches(kw, 45)
    os.environ["TMIX_CUDA_PLUGIN"] = os.environ["FAKE_CUDA"]
    with Daemon("--server.seed=3", "--server.device=cuda", "--server.max_memory_mb=16",
                "--server.max_trainers=2") as d:
        expect_error(lambda: tmix.Client(d.endpoint, delivery="cuda",
                                         cuda_pci_bus_id="0000:FF:1F.7", **kw),
                     tmix.TmixError, "the trainer must be on tmixd's GPU")
        c = tmix.Client(d.endpoint, delivery="cuda", cuda_pci_bus_id=FAKE_BUS, **kw)
        info = c.info
        assert (info.delivery, info.cuda_pci_bus_id) == ("cuda", FAKE_BUS), info
        assert info.cuda_slots == 16 * 2**20 // (500 * 28 * 28 * 4) + 3 * 2, info  # < 40
        rt = ShmRuntime()
        ring = _cuda.DeviceRing(rt, 0, DoneEvent)
        for k in range(40):
            b = c.next()
            assert b.cuda is not None and b.images is None, f"batch {k} is not in a slot"
            images = ring.receive(b, "<f4")
            want = ref[b.epoch, b.index]
            assert np.array_equal(slot_images(images), want[0]), f"batch {k}'s slot"
            assert all(np.array_equal(x, y) for x, y in
                       zip((b.sources, b.labels, b.weights), want[1:])), f"batch {k}"
            if k == 0:
                kept, kept_images = images, want[0]
            del images, b
            ring.poll()  # the leases of the images gone go back
        assert np.array_equal(slot_images(kept), kept_images), "a kept batch's slot was refilled"
        late = tmix.Client(d.endpoint, **kw)
        for _ in range(5):
            b = late.next()
            assert b.images is not None and not b.in_shm
            assert np.array_equal(b.images, ref[b.epoch, b.index][0]), (b.epoch, b.index)
        del b, kept
        late.close()
        ring.close()
        c.close()
        assert rt.sizes == {}, "slots left mapped"
        # Batches made since for the group may still hold a slot for a moment.
        wait_for("free slots", lambda: slots_free(d.endpoint))


def slots_free(endpoint):
    """No trainer left and no device slot in use, in the daemon's one group."""
    s = tmix.status(endpoint)
    return s.trainers == 0 and s.groups[0].members == 0 and s.groups[0].cuda_slots_used == 0


def cuda_holder(endpoint):
    """A trainer on the fake GPU (a process of its own) that takes 3 batches in device slots,
    keeps them, says so and waits to be killed."""
    c = tmix.Client(endpoint, group="k", mode="broadcast", batch_size=50, delivery="cuda",
                    cuda_pci_bus_id=FAKE_BUS)
    kept = [c.next() for _ in range(3)]
    assert all(b.cuda is not None for b in kept)
    print("holding", flush=True)
    time.sleep(60)


def test_cuda_fake_kill():
    """A trainer SIGKILLed holding device slots: once its lease ends, the slots are free."""
    need_dataset()
    os.environ["TMIX_CUDA_PLUGIN"] = os.environ["FAKE_CUDA"]
    with Daemon("--server.device=cuda", "--server.lease_timeout_s=1") as d:
        p = subprocess.Popen([sys.executable, __file__, "_cuda_holder", d.endpoint],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline() == "holding\n", f"the holder exited {p.wait()}"
        g = tmix.status(d.endpoint).groups[0]
        assert g.members == 1 and g.cuda_slots_used >= 3, g
        p.kill()
        p.wait()
        wait_for("free slots", lambda: slots_free(d.endpoint))


def test_cuda_fake_slow_read():
    """A member that joins a group whose batches were made for cuda delivery alone gets their
    images read back from the device slots, off the event loop: with each read taking 1.5 s
    on the fake GPU, the daemon answers a Status at once while the joiner's first batch is
    being read, and that batch comes once read, holding the images the CPU made for it."""
    need_dataset()
    kw = dict(group="g", mode="shard", batch_size=500)
    ref = cpu_batches(kw, 12)
    os.environ["TMIX_CUDA_PLUGIN"] = os.environ["FAKE_CUDA"]
    os.environ["TMIX_FAKE_SLOW_READ_MS"] = "1500"
    try:
        with Daemon("--server.seed=3", "--server.device=cuda") as d:
            c = tmix.Client(d.endpoint, delivery="cuda", cuda_pci_bus_id=FAKE_BUS, **kw)
            c.next()  # the batches made from now on are for cuda delivery alone
            wait_for("batches made ahead", lambda: tmix.status(d.endpoint).groups[0].batches_ready)
            got = queue.Queue()

            def late_trainer():
                with tmix.Client(d.endpoint, **kw) as late:
                    t = time.monotonic()
                    b = late.next()
                    got.put((time.monotonic() - t, b.epoch, b.index, b.images.copy()))

            t = threading.Thread(target=late_trainer)
            t.start()
            time.sleep(0.3)  # its Next is with the daemon, its batch being read back
            start = time.monotonic()
            tmix.status(d.endpoint)
            status_s = time.monotonic() - start
            assert got.empty(), "the first batch came before the Status: no slow read to wait on"
            t.join()
            late_s, epoch, index, images = got.get()
            c.close()
    finally:
        del os.environ["TMIX_FAKE_SLOW_READ_MS"]
    assert status_s < 0.75, f"Status took {status_s:.2f} s: the loop waited for the read"
    assert late_s >= 1.5, f"the joiner's batch came in {late_s:.2f} s, without the slow read"
    assert np.array_equal(images, ref[epoch, index][0]), (epoch, index)


def test_packaged():
    """client/python/meson.build installs every module of tmix/: one left out (as _cuda.py
    was) breaks `import tmix.torch` wherever tmix is installed rather than run from the tree."""
    package = os.path.dirname(tmix.__file__)
    with open(os.path.join(package, "..", "meson.build")) as f:
        listed = set(re.findall(r"'tmix/(\w+\.py)'", f.read()))
    modules = {name for name in os.listdir(package) if name.endswith(".py")}
    assert modules == listed, (f"not installed: {sorted(modules - listed)}; installed but "
                               f"missing: {sorted(listed - modules)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["_trainer"]:
        trainer(*sys.argv[2:4])
    elif sys.argv[1:2] == ["_cuda_holder"]:
        cuda_holder(sys.argv[2])
    else:
        main({"iterate": test_iterate, "formats": test_formats, "coverage": test_coverage,
              "shm": test_shm, "inline_vs_shm": test_inline_vs_shm, "lifetime": test_lifetime,
              "threads": test_threads, "errors": test_errors, "cuda_fake": test_cuda_fake,
              "cuda_fake_kill": test_cuda_fake_kill, "cuda_fake_slow_read": test_cuda_fake_slow_read,
              "packaged": test_packaged})
