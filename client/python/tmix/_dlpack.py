"""DLPack export, with ctypes, of memory tmix does not own: a capsule holding a DLManagedTensor
(dlpack.h, version 0.x, which every consumer reads) whose deleter calls back into Python, so
that the memory's owner learns when the consumer (torch.utils.dlpack.from_dlpack) is done.

A consumer may call the deleter from any thread, from inside a garbage collection, or while
the interpreter exits (a tensor that outlives this module): so the structs live in C memory,
the two callbacks are never freed, the deleter takes no lock (dict operations are atomic
under the GIL), and during exit it does nothing (the process frees everything).
"""
import ctypes
import ctypes.util
import sys

KDL_CPU, KDL_CUDA = 1, 2  # DLDeviceType
_CODES = {"i": 0, "u": 1, "f": 2}  # DLDataTypeCode of a typestr's kind


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


_Deleter = ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # void (*)(DLManagedTensor *)
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _Deleter)]

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.malloc.restype, _libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
_libc.free.restype, _libc.free.argtypes = None, [ctypes.c_void_p]

# on_delete of each exported DLManagedTensor, by its address, until its deleter runs.
_live = {}


def _delete(address, live=_live, free=_libc.free, finalizing=sys.is_finalizing):
    if finalizing():
        return
    on_delete = live.pop(address, None)
    if on_delete is not None:
        free(address)
        on_delete()


_deleter = _Deleter(_delete)

NAME, USED_NAME = b"dltensor", b"used_dltensor"  # a capsule's, before and after consumption
_new_capsule = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))
# Called from the capsule's destructor, while the capsule is being freed: the capsule is passed
# as an address, never as a Python object (a new reference would free it twice).
_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", ctypes.pythonapi))
_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def _destroy_capsule(capsule, is_valid=_is_valid, get_pointer=_get_pointer, name=NAME,
                     delete=_delete):
    # Still named "dltensor": no consumer took it, so the tensor is deleted with the capsule.
    if is_valid(capsule, name):
        delete(get_pointer(capsule, name))


_destructor = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_destroy_capsule)
# The C code of both callbacks must outlive every tensor, which may outlive this module.
for _callback in (_deleter, _destructor):
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(_callback))


def capsule(data, device_type, device_id, shape, typestr, on_delete):
    """A "dltensor" capsule of the C-contiguous array at data (an address) on the device,
    `shape` of typestr's elements ("<f4", "<f2", "|u1"...); on_delete() runs once the consumer
    is done with it (or the capsule goes unconsumed), unless the interpreter is exiting."""
    kind, size = typestr[1], int(typestr[2:])
    n = len(shape)
    strides, step = [0] * n, 1
    for k in reversed(range(n)):
        strides[k], step = step, step * shape[k]
    address = _libc.malloc(ctypes.sizeof(DLManagedTensor) + 16 * n)
    if not address:
        raise MemoryError("tmix: a DLPack tensor")
    dims = (ctypes.c_int64 * (2 * n)).from_address(address + ctypes.sizeof(DLManagedTensor))
    dims[:] = list(shape) + strides
    managed = DLManagedTensor.from_address(address)
    managed.dl_tensor = DLTensor(
        data, DLDevice(device_type, device_id), n, DLDataType(_CODES[kind], 8 * size, 1),
        ctypes.cast(ctypes.addressof(dims), ctypes.POINTER(ctypes.c_int64)),
        ctypes.cast(ctypes.addressof(dims) + 8 * n, ctypes.POINTER(ctypes.c_int64)), 0)
    managed.manager_ctx = None
    managed.deleter = _deleter
    _live[address] = on_delete
    try:
        return _new_capsule(address, NAME, ctypes.cast(_destructor, ctypes.c_void_p))
    except BaseException:
        _live.pop(address, None)
        _libc.free(address)
        raise


def exported():
    """How many exported tensors wait for their deleter."""
    return len(_live)
