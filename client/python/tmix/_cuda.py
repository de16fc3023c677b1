"""CUDA delivery on the trainer's side: the CUDA runtime that PyTorch loaded (ctypes), and a
group's device ring, whose slots are opened by CUDA IPC once each and whose batches go back to
the daemon only when the GPU work that read them has completed.

No torch here: tmix.torch passes in the stream and how to record an event, so that the tests
drive the ring with a fake runtime and fake events, and the runtime with a fake libcudart.
"""
import collections
import contextlib
import ctypes
import os
import sys
import threading

from . import _dlpack, _libtmix

HANDLE_BYTES = 64  # cudaIpcMemHandle_t, cudaIpcEventHandle_t
IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1  # cudaIpcMemLazyEnablePeerAccess


class CudaError(RuntimeError):
    """A failed CUDA runtime call: `call` ("cudaIpcOpenMemHandle"), `code` (its cudaError_t)."""

    def __init__(self, call, code, text):
        super().__init__(f"tmix: {call} failed: {text} (cudaError {code})")
        self.call, self.code = call, code


class IpcHandle(ctypes.Structure):
    """cudaIpcMemHandle_t or cudaIpcEventHandle_t: 64 opaque bytes, passed BY VALUE (ctypes
    follows the platform's rule for such a struct: in memory on x86-64, by copy on arm64)."""
    _fields_ = [("reserved", ctypes.c_ubyte * HANDLE_BYTES)]


_ERR = ctypes.c_int  # cudaError_t
_PROTOTYPES = {
    # name: (restype, argtypes)
    "cudaIpcOpenMemHandle": (_ERR, [ctypes.POINTER(ctypes.c_void_p), IpcHandle, ctypes.c_uint]),
    "cudaIpcCloseMemHandle": (_ERR, [ctypes.c_void_p]),
    "cudaIpcOpenEventHandle": (_ERR, [ctypes.POINTER(ctypes.c_void_p), IpcHandle]),
    "cudaEventDestroy": (_ERR, [ctypes.c_void_p]),
    "cudaStreamWaitEvent": (_ERR, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]),
    "cudaGetDevice": (_ERR, [ctypes.POINTER(ctypes.c_int)]),
    "cudaSetDevice": (_ERR, [ctypes.c_int]),
    "cudaDeviceGetPCIBusId": (_ERR, [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]),
    "cudaGetErrorString": (ctypes.c_char_p, [_ERR]),
}


def mapped_cudart():
    """Paths of the libcudart mapped into this process (PyTorch's, once it loaded CUDA)."""
    paths = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            path = fields[5].strip() if len(fields) == 6 else ""
            if os.path.basename(path).startswith("libcudart.so") and path not in paths:
                paths.append(path)
    return paths


def _handle(data, what):
    if not isinstance(data, bytes) or len(data) != HANDLE_BYTES:
        raise ValueError(f"tmix: {what} handle {data!r:.40}: expected {HANDLE_BYTES} bytes")
    return IpcHandle.from_buffer_copy(data)  # all 64 bytes (c_char would stop at a NUL)


class Runtime:
    """The calls of the CUDA runtime that CUDA delivery needs; each raises CudaError.

    path None: the libcudart this process has mapped (PyTorch's), else the loader's
    libcudart.so (.12, .11.0)."""

    def __init__(self, path=None):
        if path:
            candidates = [("the path given", path)]
        else:
            candidates = [("mapped by this process", p) for p in mapped_cudart()] + [
                ("the loader's search path", name)
                for name in ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0")]
        lib, self.path = _libtmix.open_first(candidates,
                                             "tmix: the CUDA runtime (libcudart) not found")
        self._lib = _libtmix.set_prototypes(lib, _PROTOTYPES)

    def _call(self, fn, *args):
        rc = getattr(self._lib, fn)(*args)
        if rc != 0:
            text = self._lib.cudaGetErrorString(rc) or b"unknown error"
            raise CudaError(fn, rc, text.decode(errors="replace"))

    def open_mem(self, handle):
        """The device pointer of a cudaIpcMemHandle_t's memory, on the current device."""
        ptr = ctypes.c_void_p()
        self._call("cudaIpcOpenMemHandle", ctypes.byref(ptr), _handle(handle, "memory"),
                   IPC_MEM_LAZY_ENABLE_PEER_ACCESS)
        return ptr.value

    def close_mem(self, ptr):
        self._call("cudaIpcCloseMemHandle", ptr)

    def open_event(self, handle):
        """The cudaEvent_t of a cudaIpcEventHandle_t."""
        event = ctypes.c_void_p()
        self._call("cudaIpcOpenEventHandle", ctypes.byref(event), _handle(handle, "event"))
        return event.value

    def destroy_event(self, event):
        self._call("cudaEventDestroy", event)

    def stream_wait_event(self, stream, event):
        """Work queued on stream (a cudaStream_t; 0: the legacy default) after this call waits
        for the event's last record."""
        self._call("cudaStreamWaitEvent", stream, event, 0)

    def pci_bus_id(self, k):
        """Device k's PCI bus id ("0000:65:00.0"): the same GPU in every process."""
        buf = ctypes.create_string_buffer(32)
        self._call("cudaDeviceGetPCIBusId", buf, len(buf), k)
        return buf.value.decode()

    @contextlib.contextmanager
    def device(self, k):
        """Makes device k current for the block (IPC handles open on the current device)."""
        old = ctypes.c_int()
        self._call("cudaGetDevice", ctypes.byref(old))
        if old.value != k:
            self._call("cudaSetDevice", k)
        try:
            yield
        finally:
            if old.value != k:
                self._call("cudaSetDevice", old.value)


_runtime = None
_runtime_lock = threading.Lock()


def runtime():
    """The process's Runtime, loaded on first use (after PyTorch initialised CUDA, so that its
    libcudart is the one found)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


class Mapping:
    """One slot opened: its handles (bytes), device pointer, event, and the batches using it.
    A retired mapping (its slot came with other handles, or the ring closed) is closed when
    its last batch goes."""
    __slots__ = ("mem", "event_handle", "ptr", "event", "users", "retired")

    def __init__(self, mem, event_handle, ptr, event):
        self.mem, self.event_handle, self.ptr, self.event = mem, event_handle, ptr, event
        self.users, self.retired = 0, False


class DeviceImages:
    """A batch's images in its device slot, exported once by DLPack without a copy
    (torch.utils.dlpack.from_dlpack): the consumer's stream waits for the daemon's copy, and
    when the consumer lets the memory go (the DLPack deleter), the ring holds the batch's
    lease until the GPU is done with it. Images never exported give it back when they go."""
    __slots__ = ("_ring", "_mapping", "_lease", "shape", "typestr")

    def __init__(self, ring, mapping, lease, shape, typestr):
        self._ring, self._mapping, self._lease = ring, mapping, lease
        self.shape, self.typestr = tuple(shape), typestr

    def __dlpack_device__(self):
        return (_dlpack.KDL_CUDA, self._ring.device)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule of the images (unversioned, "dltensor", whatever max_version
        says), after making stream wait for the slot's event: a cudaStream_t, 1 or 2 for the
        legacy or per-thread default stream, None for the default one, -1 for none (the
        consumer synchronises). No copy: copy=True or another dl_device is a BufferError."""
        ring, mapping, lease = self._ring, self._mapping, self._lease
        if lease is None:
            raise BufferError("tmix: a batch's images are exported once")
        if copy or (dl_device is not None and tuple(dl_device) != self.__dlpack_device__()):
            raise BufferError(f"tmix: the images lie on cuda:{ring.device}, exported without "
                              "a copy")
        if stream != -1:
            ring.wait(mapping, 0 if stream is None else stream)
        self._lease = None  # the capsule's now
        return _dlpack.capsule(mapping.ptr, _dlpack.KDL_CUDA, ring.device, self.shape,
                               self.typestr, lambda: ring.defer(mapping, lease))

    def __del__(self):
        if self._lease is not None and not sys.is_finalizing():  # at exit all is freed
            self._ring.defer(self._mapping, self._lease)


class DeviceRing:
    """The device slots of one session on GPU `device`, and the batches whose images are gone
    but whose GPU work may still be running.

    runtime       a Runtime (or a fake with the same methods)
    record_event  () -> an event recorded now on the stream that reads the images, with
                  query() (completed?) and synchronize(); torch.cuda.Event in tmix.torch

    Leases are handed over from finalizers on any thread; they are released at poll() (the
    loader's next batch) or close(), whichever thread holds the lock: once closed, a lease
    handed over is released after waiting for its event."""

    def __init__(self, runtime, device, record_event):
        self._runtime, self.device, self._record_event = runtime, device, record_event
        self.slots = {}                       # slot number -> its current Mapping
        self._pending = collections.deque()   # (event, lease, mapping), oldest first
        self._lock = threading.Lock()         # held by whoever releases
        self._closed = False

    def receive(self, batch, typestr):
        """DeviceImages for batch (a tmix.Batch whose cuda is set; typestr its dtype's)."""
        if self._closed:
            raise ValueError("tmix: the device ring is closed")
        cuda = batch.cuda
        with self._lock:
            m = self.slots.get(cuda.slot)
            if m is None or (m.mem, m.event_handle) != (cuda.mem, cuda.event):
                if m is not None:  # another session's handles: the daemon restarted
                    self._retire(m)
                m = self.slots[cuda.slot] = self._open(cuda)
            m.users += 1
        return DeviceImages(self, m, batch._lease, cuda.shape, typestr)

    def wait(self, mapping, stream):
        """Makes stream (a cudaStream_t) wait for the last copy into mapping's slot."""
        # On the ring's device: a default stream (0, 1, 2) means the current device's.
        with self._runtime.device(self.device):
            self._runtime.stream_wait_event(stream, mapping.event)

    def defer(self, mapping, lease):
        """The images of lease's batch are gone: keep it until the GPU work queued so far on
        the reading stream has completed."""
        self._pending.append((self._record_event(), lease, mapping))
        if self._closed:
            self._release(wait=True)

    def poll(self):
        """Releases the batches whose GPU work has completed."""
        self._release(wait=False)

    def close(self):
        """Waits for the GPU work of the batches handed over, releases them, and closes the
        mappings (those of batches whose images still live when their last one goes)."""
        self._closed = True
        self._release(wait=True)

    @property
    def pending(self):
        return len(self._pending)

    def _open(self, cuda):
        rt = self._runtime
        with rt.device(self.device):
            ptr = rt.open_mem(cuda.mem)
            try:
                event = rt.open_event(cuda.event)
            except BaseException:
                rt.close_mem(ptr)
                raise
        return Mapping(cuda.mem, cuda.event, ptr, event)

    def _release(self, wait):
        while self._lock.acquire(blocking=False):
            try:
                if self._closed:
                    while self.slots:
                        self._retire(self.slots.popitem()[1])
                for _ in range(len(self._pending)):
                    item = self._pending.popleft()
                    if wait:
                        item[0].synchronize()
                    elif not item[0].query():
                        self._pending.append(item)
                        continue
                    self._unuse(item[2])
                    del item  # the lease goes: tmix gives the batch back
            finally:
                self._lock.release()
            # A lease handed over after close while another thread held the lock: take it.
            if not (wait and self._pending):
                return

    def _unuse(self, m):
        m.users -= 1
        if m.retired and m.users == 0:
            self._close_mapping(m)

    def _retire(self, m):
        m.retired = True
        if m.users == 0:
            self._close_mapping(m)

    def _close_mapping(self, m):
        rt = self._runtime
        with rt.device(self.device):  # a mapping is closed on the device that opened it
            try:
                rt.close_mem(m.ptr)
            finally:
                rt.destroy_event(m.event)
