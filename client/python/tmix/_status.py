"""tmix.status: what a daemon says about itself and its consumer groups (tmix_status)."""
import ctypes
import dataclasses

from . import _libtmix as C
from .client import _error, default_endpoint

__all__ = ["GroupStatus", "Status", "status"]


@dataclasses.dataclass(frozen=True)
class GroupStatus:
    name: str
    mode: str
    members: int
    batch_size: int
    epoch: int              # the epoch of the oldest unfinished batch
    batches_done: int       # acknowledged in that epoch
    batches_per_epoch: int
    batches_served: int     # since the daemon started
    shm_slots: int          # the group's shared-memory ring (0: none)
    shm_slots_used: int     # slots holding a batch not acknowledged yet
    cuda_slots: int         # the group's GPU ring (0: none)
    cuda_slots_used: int
    images_served: int
    batches_ready: int      # produced for the group and not yet taken
    batches_producing: int  # with the workers
    node_rank: int          # the group's part of each epoch, of node_count (1: all of it)
    node_count: int


@dataclasses.dataclass(frozen=True)
class Status:
    version: str
    uptime_s: int
    trainers: int
    batches_served: int
    backend: str
    dataset: str
    dataset_size: int
    method: str
    bad_samples: int
    memory_bytes: int
    groups: tuple  # of GroupStatus
    max_memory_bytes: int
    producer_jobs: int
    gpu_memory_used: int    # the daemon's GPU, every process (0, 0: none)
    gpu_memory_total: int
    next_p50_s: float       # seconds from a Next to its batch (upper bounds of buckets)
    next_p99_s: float
    read_mean_s: float      # seconds per batch, mean: reading, mixing
    mix_mean_s: float


def _text(b):
    return (b or b"").decode(errors="replace")


def status(endpoint=None, timeout=5.0):
    """The daemon's Status at endpoint (None: default_endpoint()); TmixError on failure."""
    lib = C.load()
    out = ctypes.POINTER(C.ServerStatus)()
    endpoint = endpoint if endpoint is not None else default_endpoint()
    rc = lib.tmix_status(endpoint.encode(), C.timeout_ms(timeout), ctypes.byref(out))
    if rc < 0:
        raise _error(lib, rc, None)
    try:
        s = out.contents
        groups = tuple(
            GroupStatus(_text(g.name), C.enum_name(C.MODES, g.mode), g.members, g.batch_size,
                        g.epoch, g.batches_done, g.batches_per_epoch, g.batches_served,
                        g.shm_slots, g.shm_slots_used, g.cuda_slots, g.cuda_slots_used,
                        g.images_served, g.batches_ready, g.batches_producing, g.node_rank,
                        g.node_count)
            for g in s.groups[:s.group_count])
        return Status(_text(s.version), s.uptime_s, s.trainers, s.batches_served,
                      _text(s.backend), _text(s.dataset), s.dataset_size, _text(s.method),
                      s.bad_samples, s.memory_bytes, groups, s.max_memory_bytes,
                      s.producer_jobs, s.gpu_memory_used, s.gpu_memory_total, s.next_p50_s,
                      s.next_p99_s, s.read_mean_s, s.mix_mean_s)
    finally:
        lib.tmix_status_free(out)
