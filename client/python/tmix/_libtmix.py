"""libtmix through ctypes: finding the library, the structs of tmix.h and the prototypes.

The structs mirror tmix.h field for field; tests/python/abi_layout.c prints the C offsets
and tests/python/test_abi.py compares them with these.
"""
import ctypes
import ctypes.util
import math
import os
import threading

# The enums of tmix.h: position = value (0 is DEFAULT, which Python spells None).
MODES = (None, "shard", "broadcast")
DTYPES = (None, "float32", "float16", "uint8")
LAYOUTS = (None, "nchw", "nhwc")
DELIVERIES = (None, "inline", "shm", "cuda")


class Options(ctypes.Structure):
    _fields_ = [("group", ctypes.c_char_p), ("mode", ctypes.c_int),
                ("batch_size", ctypes.c_uint32), ("dtype", ctypes.c_int),
                ("layout", ctypes.c_int), ("timeout_ms", ctypes.c_int),
                ("delivery", ctypes.c_int), ("start", ctypes.c_uint64),
                ("cuda_device", ctypes.c_int), ("node_rank", ctypes.c_uint32),
                ("node_count", ctypes.c_uint32), ("cuda_pci_bus_id", ctypes.c_char_p)]


class Info(ctypes.Structure):
    _fields_ = [("session_id", ctypes.c_uint64), ("channels", ctypes.c_uint32),
                ("height", ctypes.c_uint32), ("width", ctypes.c_uint32),
                ("classes", ctypes.c_uint32), ("mix_n", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32), ("epoch_size", ctypes.c_uint64),
                ("batches_per_epoch", ctypes.c_uint64), ("mode", ctypes.c_int),
                ("dtype", ctypes.c_int), ("layout", ctypes.c_int),
                ("method", ctypes.c_char_p), ("delivery", ctypes.c_int),
                ("shm_name", ctypes.c_char_p), ("shm_base", ctypes.c_void_p),
                ("shm_bytes", ctypes.c_size_t), ("cuda_device", ctypes.c_int),
                ("cuda_slots", ctypes.c_uint32), ("mean", ctypes.c_float * 3),
                ("std", ctypes.c_float * 3), ("cuda_pci_bus_id", ctypes.c_char * 32)]


class Batch(ctypes.Structure):
    _fields_ = [("sequence", ctypes.c_uint64), ("epoch", ctypes.c_uint64),
                ("index", ctypes.c_uint64), ("dtype", ctypes.c_int), ("layout", ctypes.c_int),
                ("ndim", ctypes.c_uint32), ("shape", ctypes.c_int64 * 4),
                ("images", ctypes.c_void_p), ("images_bytes", ctypes.c_size_t),
                ("size", ctypes.c_uint32), ("mix_n", ctypes.c_uint32),
                ("sample_ids", ctypes.c_void_p), ("sources", ctypes.c_void_p),
                ("labels", ctypes.c_void_p), ("weights", ctypes.c_void_p),
                ("replaced_ids", ctypes.c_void_p), ("replaced_count", ctypes.c_size_t),
                ("cuda_in_slot", ctypes.c_int), ("cuda_slot", ctypes.c_uint32),
                ("cuda_mem", ctypes.c_ubyte * 64), ("cuda_event", ctypes.c_ubyte * 64)]


class GroupStatus(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("mode", ctypes.c_int),
                ("members", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
                ("epoch", ctypes.c_uint64), ("batches_done", ctypes.c_uint64),
                ("batches_per_epoch", ctypes.c_uint64), ("batches_served", ctypes.c_uint64),
                ("shm_slots", ctypes.c_uint32), ("shm_slots_used", ctypes.c_uint32),
                ("cuda_slots", ctypes.c_uint32), ("cuda_slots_used", ctypes.c_uint32),
                ("images_served", ctypes.c_uint64), ("batches_ready", ctypes.c_uint32),
                ("batches_producing", ctypes.c_uint32), ("node_rank", ctypes.c_uint32),
                ("node_count", ctypes.c_uint32)]


class ServerStatus(ctypes.Structure):
    _fields_ = [("version", ctypes.c_char_p), ("uptime_s", ctypes.c_uint64),
                ("trainers", ctypes.c_uint32), ("batches_served", ctypes.c_uint64),
                ("backend", ctypes.c_char_p), ("dataset", ctypes.c_char_p),
                ("dataset_size", ctypes.c_uint64), ("method", ctypes.c_char_p),
                ("bad_samples", ctypes.c_uint64), ("memory_bytes", ctypes.c_uint64),
                ("group_count", ctypes.c_size_t), ("groups", ctypes.POINTER(GroupStatus)),
                ("max_memory_bytes", ctypes.c_uint64), ("producer_jobs", ctypes.c_uint32),
                ("gpu_memory_used", ctypes.c_uint64), ("gpu_memory_total", ctypes.c_uint64),
                ("next_p50_s", ctypes.c_double), ("next_p99_s", ctypes.c_double),
                ("read_mean_s", ctypes.c_double), ("mix_mean_s", ctypes.c_double)]


_PROTOTYPES = {
    # name: (restype, argtypes)
    "tmix_err_name": (ctypes.c_char_p, [ctypes.c_int]),
    "tmix_options_init": (None, [ctypes.POINTER(Options)]),
    "tmix_connect": (ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                    ctypes.POINTER(Options)]),
    "tmix_get_info": (ctypes.POINTER(Info), [ctypes.c_void_p]),
    "tmix_next": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(Batch))]),
    "tmix_set_ahead": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
    "tmix_release": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(Batch)]),
    "tmix_close": (None, [ctypes.c_void_p]),
    "tmix_client_error": (ctypes.c_char_p, [ctypes.c_void_p]),
    "tmix_status": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_int,
                                   ctypes.POINTER(ctypes.POINTER(ServerStatus))]),
    "tmix_status_free": (None, [ctypes.POINTER(ServerStatus)]),
}

_lib = None
_lib_lock = threading.Lock()


def _candidates():
    """(where, name-or-path) in the order tried: $TMIX_LIBRARY, the installed path, the
    loader's search."""
    env = os.environ.get("TMIX_LIBRARY")
    if env:
        return [("$TMIX_LIBRARY", env)]
    found = []
    try:
        from . import _paths  # written by meson at install time
        found.append(("the installed path", _paths.LIBTMIX))
    except ImportError:
        pass
    name = ctypes.util.find_library("tmix")
    if name:
        found.append(("ctypes.util.find_library('tmix')", name))
    found.append(("the loader's search path", "libtmix.so.0"))
    return found


def load():
    """The loaded libtmix with its prototypes set; loaded once per process."""
    global _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        lib, _ = open_first(_candidates(), "tmix: libtmix not found; set TMIX_LIBRARY to its path")
        _lib = set_prototypes(lib, _PROTOTYPES)
        return lib


def open_first(candidates, missing):
    """(ctypes.CDLL, name) of the first (where, name-or-path) of candidates that opens; else
    OSError: the sentence `missing`, then each try and why it failed."""
    tried = []
    for where, name in candidates:
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            tried.append(f"{name} ({where}): {e}")
    raise OSError(f"{missing}. Tried: " + "; ".join(tried))


def set_prototypes(lib, prototypes):
    """Sets restype and argtypes from {function name: (restype, argtypes)}; returns lib."""
    for fn, (restype, argtypes) in prototypes.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = restype, argtypes
    return lib


def enum_value(kind, names, value):
    """The C value of a string choice (None: DEFAULT); ValueError naming the choices."""
    if value not in names:
        choices = ", ".join(repr(n) for n in names)
        raise ValueError(f"tmix: {kind} {value!r}: expected one of {choices}")
    return names.index(value)


def timeout_ms(timeout):
    """libtmix's timeout_ms for seconds (None: 0, forever)."""
    if timeout is None:
        return 0
    if not timeout > 0:
        raise ValueError(f"tmix: timeout {timeout!r}: expected seconds > 0 or None")
    return max(1, math.ceil(timeout * 1000))


def enum_name(names, value):
    return names[value] if 0 <= value < len(names) else f"?{value}"
