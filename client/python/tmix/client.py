"""tmix.Client: a trainer's connection to tmixd through libtmix (ctypes), batches as numpy.

    with tmix.Client(group="run-3", mode="shard", batch_size=128) as c:
        for batch in c:                  # endless: the group's stream, epoch after epoch
            step(batch.images, batch.labels, batch.weights)

Every array of a Batch is a read-only view of libtmix's memory: the message for inline
delivery, the shared-memory ring itself for shm (no copy). The batch goes back to the daemon
(acknowledged with the next request) once the Batch and every array taken from it are gone,
so an array that is kept is never overwritten; the connection, and the shm mapping, stay
open while any batch lives, even after close(). With delivery "cuda" the images lie in a slot
of device memory instead (Batch.cuda: the CUDA IPC handles to open; tmix.torch does that).
"""
import ctypes
import dataclasses
import math
import os
import threading
from typing import NamedTuple

import numpy as np

from . import _libtmix as C

__all__ = ["Client", "Batch", "CudaSlot", "Info", "TmixError", "default_endpoint"]

_TYPESTR = {"float32": "<f4", "float16": "<f2", "uint8": "|u1"}


class TmixError(Exception):
    """A libtmix failure: `code` (negative TMIX_E* number), `name` ("TMIX_ETIMEDOUT") and
    `message`, libtmix's sentence (it starts with the endpoint)."""

    def __init__(self, code, name, message):
        super().__init__(f"{name}: {message}")
        self.code, self.name, self.message = code, name, message


def _error(lib, code, client_ptr):
    return TmixError(code, lib.tmix_err_name(code).decode(),
                     lib.tmix_client_error(client_ptr).decode(errors="replace"))


def default_endpoint():
    """tmixctl's default: ipc://$XDG_RUNTIME_DIR/tmix/tmixd.sock, ipc:///run/tmix/tmixd.sock
    as root or without XDG_RUNTIME_DIR."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() == 0 or not run:
        return "ipc:///run/tmix/tmixd.sock"
    return f"ipc://{run}/tmix/tmixd.sock"


@dataclasses.dataclass(frozen=True)
class Info:
    """What the daemon resolved in its Welcome (tmix_info); enums as strings."""
    session_id: int
    channels: int
    height: int
    width: int
    classes: int
    mix_n: int
    batch_size: int
    epoch_size: int
    batches_per_epoch: int
    mode: str
    dtype: str
    layout: str
    method: str
    delivery: str
    shm_name: str  # "" unless delivery is "shm"
    shm_base: int  # address of the read-only mapping of the group's ring (0: none)
    shm_bytes: int
    cuda_device: int  # delivery "cuda": the GPU holding the slots
    cuda_slots: int   # delivery "cuda": slots of the group's device ring
    cuda_pci_bus_id: str  # delivery "cuda": that GPU's PCI bus id
    mean: tuple       # float outputs are (pixel / 255 - mean[c]) / std[c], per channel
    std: tuple

    @staticmethod
    def _from_c(ci):
        return Info(ci.session_id, ci.channels, ci.height, ci.width, ci.classes, ci.mix_n,
                    ci.batch_size, ci.epoch_size, ci.batches_per_epoch,
                    C.enum_name(C.MODES, ci.mode), C.enum_name(C.DTYPES, ci.dtype),
                    C.enum_name(C.LAYOUTS, ci.layout), (ci.method or b"").decode(),
                    C.enum_name(C.DELIVERIES, ci.delivery), (ci.shm_name or b"").decode(),
                    ci.shm_base or 0, ci.shm_bytes, ci.cuda_device, ci.cuda_slots,
                    ci.cuda_pci_bus_id.decode(), tuple(ci.mean[:ci.channels]),
                    tuple(ci.std[:ci.channels]))


class _Connection:
    """One tmix_client, its lock, and the batches it has handed out.

    Batches are released from finalizers, which may run on any thread, even inside one of
    this connection's calls: a release is queued, and whoever holds the lock (or takes it
    next) passes the queue to libtmix. tmix_close waits until close() was asked and no batch
    is held."""

    def __init__(self, lib, ptr):
        self.lib, self.ptr = lib, ptr
        self._lock = threading.Lock()
        self._releases = []  # tmix_batch pointers whose leases are gone
        self._held = 0
        self._closing = False

    def release_later(self, bptr):
        self._releases.append(bptr)  # atomic: safe from any finalizer
        if self._lock.acquire(blocking=False):
            self._unlock()

    def _unlock(self):
        while True:
            while self._releases:
                bptr = self._releases.pop()
                if self.ptr:
                    self.lib.tmix_release(self.ptr, bptr)
                self._held -= 1
            if self._closing and self._held == 0 and self.ptr:
                self.lib.tmix_close(self.ptr)
                self.ptr = None
            self._lock.release()
            # A release queued after the loop above but before the unlock: take it too.
            if not self._releases or not self._lock.acquire(blocking=False):
                return

    def next(self):
        """(tmix_batch pointer, Info as of that batch); TmixError on failure."""
        self._lock.acquire()
        try:
            if not self.ptr or self._closing:
                raise ValueError("tmix: the client is closed")
            out = ctypes.POINTER(C.Batch)()
            rc = self.lib.tmix_next(self.ptr, ctypes.byref(out))
            if rc < 0:
                raise _error(self.lib, rc, self.ptr)
            self._held += 1
            return out, Info._from_c(self.lib.tmix_get_info(self.ptr).contents)
        finally:
            self._unlock()

    def set_ahead(self, on):
        self._lock.acquire()
        try:
            if self.ptr and not self._closing:
                self.lib.tmix_set_ahead(self.ptr, 1 if on else 0)
        finally:
            self._unlock()

    def close(self):
        self._lock.acquire()
        self._closing = True
        self._unlock()


class _Lease:
    """Holds one C batch; its finalizer gives the batch back. Every array of the batch refers
    to it (through its base), and so does the Batch."""
    __slots__ = ("_conn", "_bptr")

    def __init__(self, conn, bptr):
        self._conn, self._bptr = conn, bptr

    def __del__(self):
        try:
            self._conn.release_later(self._bptr)
        except Exception:  # an interpreter shutting down: the process frees everything
            pass


class _View:
    """The base of one array: libtmix's memory described by __array_interface__, read-only,
    keeping the lease alive."""
    __slots__ = ("__array_interface__", "_lease")

    def __init__(self, lease, address, shape, typestr):
        self.__array_interface__ = {"version": 3, "shape": tuple(shape), "typestr": typestr,
                                    "data": (address, True)}
        self._lease = lease


def _array(lease, address, shape, typestr):
    if math.prod(shape) == 0 or not address:
        a = np.empty(shape, dtype=typestr)
        a.flags.writeable = False
        return a
    return np.asarray(_View(lease, address, shape, typestr))


class CudaSlot(NamedTuple):
    """Where a batch's images lie with delivery "cuda": at the start of device slot `slot` on
    Info.cuda_device, (shape) of the Batch's dtype. `mem` and `event` are the slot's
    cudaIpcMemHandle_t and cudaIpcEventHandle_t (64 bytes each, the same for a slot within a
    session): open them once, make the reading stream wait for the event, and keep the Batch
    until the GPU work reading the slot has completed (the daemon refills it once released)."""
    slot: int
    mem: bytes
    event: bytes
    shape: tuple


class Batch:
    """One mixed batch of N samples, each mixed from n sources.

    images        (N, C, H, W) or (N, H, W, C) as laid out; float32, float16 or uint8
    sample_ids    (N,) uint64
    sources       (N, n) uint64 sample ids; sources[:, 0] is the sample itself
    labels        (N, n) uint32, the sources' labels
    weights       (N, n) float32 label weights, each row sums to 1
    replaced_ids  (k,) uint64 unreadable samples the daemon replaced
    epoch, index  batch `index` of epoch `epoch` of the group's stream
    sequence      1, 2, ... within the client's session
    in_shm        whether images lie in the shared-memory ring (else in the message)
    cuda          a CudaSlot when the images lie in a device slot (images is then None);
                  None otherwise (with delivery "cuda" too, when every slot was taken)
    """

    def __init__(self, conn, bptr, info):
        b = bptr.contents
        lease = _Lease(conn, bptr)
        self._lease = lease
        self.sequence, self.epoch, self.index = b.sequence, b.epoch, b.index
        self.size, self.mix_n = b.size, b.mix_n
        self.dtype = C.enum_name(C.DTYPES, b.dtype)
        self.layout = C.enum_name(C.LAYOUTS, b.layout)
        cells = (b.size, b.mix_n)
        shape = tuple(b.shape[:b.ndim])
        self.cuda = self.images = None
        if b.cuda_in_slot:
            self.cuda = CudaSlot(b.cuda_slot, bytes(b.cuda_mem), bytes(b.cuda_event), shape)
        else:
            self.images = _array(lease, b.images, shape, _TYPESTR[self.dtype])
        self.sample_ids = _array(lease, b.sample_ids, (b.size,), "<u8")
        self.sources = _array(lease, b.sources, cells, "<u8")
        self.labels = _array(lease, b.labels, cells, "<u4")
        self.weights = _array(lease, b.weights, cells, "<f4")
        self.replaced_ids = _array(lease, b.replaced_ids, (b.replaced_count,), "<u8")
        self.in_shm = bool(info.shm_bytes) and \
            info.shm_base <= (b.images or 0) < info.shm_base + info.shm_bytes

    def release(self):
        """Lets the batch go now: the Batch's arrays are dropped, and the daemon gets the
        batch back with the next request unless an array taken from it is still referenced
        (then when the last one goes)."""
        for name in ("images", "sample_ids", "sources", "labels", "weights", "replaced_ids",
                     "_lease"):
            self.__dict__.pop(name, None)

    def __repr__(self):
        return (f"<tmix.Batch epoch {self.epoch} index {self.index} sequence {self.sequence}"
                f" size {self.size}>")


class Client:
    """A trainer's session with tmixd (libtmix's tmix_connect, tmix_next, tmix_close).

    endpoint    ipc://PATH or tcp://HOST:PORT; None: default_endpoint()
    group       consumer group name, [A-Za-z0-9._-]{1,64}
    mode        "shard" | "broadcast" | None (the daemon's choice)
    batch_size  0: the daemon's
    dtype       "float32" | "float16" | "uint8" | None
    layout      "nchw" | "nhwc" | None
    delivery    "inline" | "shm" | "cuda" | None (inline)
    cuda_device delivery "cuda": the trainer's GPU, which must be the daemon's
    cuda_pci_bus_id
                delivery "cuda": the same GPU by PCI bus id, or None; what the daemon compares
                when given (ordinals follow each process's CUDA_VISIBLE_DEVICES)
    timeout     seconds one request waits for its reply; None: forever
    start       broadcast: the stream position (epoch * batches_per_epoch + index) to begin at
    node_rank, node_count
                several machines, a daemon on each (same seed and data set): this node
                gets part node_rank of node_count of every epoch; 0, 0: one node

    Iterating yields Batch objects without end (the group's stream, epoch after epoch).
    Failures raise TmixError; the calls of one client are serialised by a lock.
    """

    def __init__(self, endpoint=None, group="default", mode=None, batch_size=0, dtype=None,
                 layout=None, delivery=None, timeout=60.0, start=0, cuda_device=0,
                 cuda_pci_bus_id=None, node_rank=0, node_count=0):
        self._conn = None
        self.endpoint = endpoint if endpoint is not None else default_endpoint()
        self.group = group
        o = C.Options()
        lib = C.load()
        lib.tmix_options_init(ctypes.byref(o))
        group_bytes = group.encode()  # kept alive until tmix_connect copied it
        o.group = group_bytes
        bus_bytes = cuda_pci_bus_id.encode() if cuda_pci_bus_id else None  # the same
        o.cuda_pci_bus_id = bus_bytes
        o.mode = C.enum_value("mode", C.MODES, mode)
        o.batch_size = batch_size
        o.dtype = C.enum_value("dtype", C.DTYPES, dtype)
        o.layout = C.enum_value("layout", C.LAYOUTS, layout)
        o.delivery = C.enum_value("delivery", C.DELIVERIES, delivery)
        o.timeout_ms = C.timeout_ms(timeout)
        o.start = start
        o.cuda_device = cuda_device
        o.node_rank = node_rank
        o.node_count = node_count
        ptr = ctypes.c_void_p()
        rc = lib.tmix_connect(ctypes.byref(ptr), self.endpoint.encode(), ctypes.byref(o))
        if rc < 0:
            raise _error(lib, rc, None)
        self._conn = _Connection(lib, ptr.value)
        self.info = Info._from_c(lib.tmix_get_info(ptr.value).contents)

    def next(self):
        """The next batch of the group's stream (waits up to the timeout)."""
        if self._conn is None:
            raise ValueError("tmix: the client is closed")
        bptr, self.info = self._conn.next()
        return Batch(self._conn, bptr, self.info)

    def set_ahead(self, on):
        """Whether next() asks for the batch after the one it returns (on by default), so
        that it waits here while the trainer trains; turn it off before the last batch of a
        known count, so that none waits leased to this client, unused, until close()."""
        if self._conn is None:
            raise ValueError("tmix: the client is closed")
        self._conn.set_ahead(on)

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def close(self):
        """Says Bye and closes, once every batch handed out is gone."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()
