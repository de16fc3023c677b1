"""DLPack export, with ctypes, of memory tmix does not own: a capsule holding a DLManagedTensor
(dlpack.h, version 0.x, which every consumer reads) whose deleter calls back into Python, so
that the memory's owner learns when the consumer (torch.utils.dlpack.from_dlpack) is done.
"""
import ctypes
import threading

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


_Deleter = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                            ("deleter", _Deleter)]

# Each exported DLManagedTensor by address: itself, its shape and strides, and on_delete. Kept
# here until its deleter runs (the consumer's storage going, on any thread).
_live = {}
_live_lock = threading.Lock()


def _delete(managed):
    with _live_lock:
        entry = _live.pop(ctypes.cast(managed, ctypes.c_void_p).value, None)
    if entry is not None:
        entry[2]()


_deleter = _Deleter(_delete)

NAME, USED_NAME = b"dltensor", b"used_dltensor"  # a capsule's, before and after consumption
_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# Called from the capsule's destructor, while the capsule is being freed: the capsule is passed
# as an address, never as a Python object (a new reference would free it twice).
_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", _api))
_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", _api))


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _capsule_destructor(capsule):
    # Still named "dltensor": no consumer took it, so the tensor is deleted with the capsule.
    if _is_valid(capsule, NAME):
        _delete(_get_pointer(capsule, NAME))


def capsule(data, device_type, device_id, shape, typestr, on_delete):
    """A "dltensor" capsule of the C-contiguous array at data (an address) on the device,
    `shape` of typestr's elements ("<f4", "<f2", "|u1"...); on_delete() runs once the consumer
    is done with it (or the capsule goes unconsumed)."""
    kind, size = typestr[1], int(typestr[2:])
    n = len(shape)
    strides, step = [0] * n, 1
    for k in reversed(range(n)):
        strides[k], step = step, step * shape[k]
    dims = (ctypes.c_int64 * (2 * n))(*shape, *strides)
    managed = DLManagedTensor()
    managed.dl_tensor = DLTensor(
        data, DLDevice(device_type, device_id), n, DLDataType(_CODES[kind], 8 * size, 1),
        ctypes.cast(dims, ctypes.POINTER(ctypes.c_int64)),
        ctypes.cast(ctypes.addressof(dims) + 8 * n, ctypes.POINTER(ctypes.c_int64)), 0)
    managed.deleter = _deleter
    address = ctypes.addressof(managed)
    with _live_lock:
        _live[address] = (managed, dims, on_delete)
    return _api.PyCapsule_New(address, NAME, ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def exported():
    """How many exported tensors wait for their deleter."""
    with _live_lock:
        return len(_live)
