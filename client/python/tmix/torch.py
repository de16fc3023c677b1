"""tmix.torch.Loader: batches from tmixd as (images, targets) torch tensors, one epoch per loop.

    import tmix.torch
    loader = tmix.torch.Loader(batch_size=128, device="cuda")
    for epoch in range(epochs):
        for images, targets in loader:        # targets: (N, classes) soft labels
            loss = torch.sum(-targets * F.log_softmax(model(images), 1), 1).mean()
"""
import collections
import dataclasses
import math
import os
import re
import warnings

import numpy as np
import torch
import torch.utils.dlpack

from . import _cuda
from .client import _TYPESTR, Client

__all__ = ["Loader", "LoaderBatch"]


@dataclasses.dataclass(frozen=True)
class LoaderBatch:
    """Where the last (images, targets) came from: batch `index` of epoch `epoch`, and the ids
    of its samples (a copy)."""
    epoch: int
    index: int
    sequence: int
    sample_ids: np.ndarray


@dataclasses.dataclass
class _Ddp:
    """Where this process stands in a torchrun job (one process, one node without one)."""
    rank: int = 0
    world_size: int = 1
    group: "str | None" = None  # the job's shard group on each node's daemon; None: no DDP
    node_rank: int = 0    # GROUP_RANK: this machine, whose daemon the local ranks share
    node_count: int = 1   # WORLD_SIZE / LOCAL_WORLD_SIZE machines, a daemon on each
    local_size: int = 1   # ranks on this machine: the members of the node's shard group


def _ddp_env():
    """The _Ddp of torchrun's environment (RANK, WORLD_SIZE, MASTER_PORT, and on several
    machines GROUP_RANK and LOCAL_WORLD_SIZE)."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return _Ddp()
    rank, world = int(env.get("RANK", "0")), int(env["WORLD_SIZE"])
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"tmix.torch: RANK={rank} WORLD_SIZE={world}: expected "
                         "0 <= RANK < WORLD_SIZE")
    local = int(env.get("LOCAL_WORLD_SIZE", world))
    nodes = world // local if local >= 1 else 0
    node = int(env.get("GROUP_RANK", "0"))
    if nodes < 1 or nodes * local != world or not 0 <= node < nodes:
        raise ValueError(f"tmix.torch: WORLD_SIZE={world} LOCAL_WORLD_SIZE={local} "
                         f"GROUP_RANK={node}: expected WORLD_SIZE = nodes x LOCAL_WORLD_SIZE "
                         "and 0 <= GROUP_RANK < nodes")
    # One job's ranks share MASTER_PORT; two jobs on one daemon do not.
    port = re.sub(r"[^A-Za-z0-9._-]", "", env.get("MASTER_PORT", ""))
    return _Ddp(rank, world, f"ddp-{port}" if port else "ddp", node, nodes, local)


class Loader:
    """(images, targets) torch tensors from a tmixd consumer group; one `for` loop is one epoch.

    endpoint, batch_size, timeout      as tmix.Client
    group     None: with WORLD_SIZE in the environment (torchrun), "ddp-$MASTER_PORT" (or
              "ddp") in shard mode, so that the job's ranks share the epoch; else "default".
              On several machines (GROUP_RANK, LOCAL_WORLD_SIZE) each rank talks to the
              daemon of its own machine (endpoint), and the daemons, which must share
              [server] seed and the data set, split every epoch by node: part GROUP_RANK of
              WORLD_SIZE / LOCAL_WORLD_SIZE.
    mode      "shard" | "broadcast" | None (shard under DDP, else the daemon's choice)
    dtype     "float32" | "float16" | "uint8" (pixels, NHWC as asked); layout "nchw" | "nhwc"
    delivery  "inline" | "shm" | "cuda" | None; "cuda" needs device "cuda[:k]", the daemon's GPU
    device    "cpu" or "cuda[:k]": where the tensors are (the loader copies them there, but
              for delivery "cuda")
    targets   "dense": (N, classes) float32 soft labels, the weights of each sample's sources
              summed per label; "sparse": (labels int64 (N, n), weights float32 (N, n))

    On the CPU the images tensor is a zero-copy view of the batch, in the daemon's
    shared-memory ring with delivery "shm": it is read-only (writing into it kills the
    process with SIGSEGV), so copy it (`images.clone()`) before changing it in place. The
    batch goes back to the daemon when the tensor is gone.

    With delivery "cuda" the images tensor is the batch's slot in the daemon's GPU memory
    (CUDA IPC, taken by DLPack with no copy; when every slot is taken the daemon sends a batch
    inline, and it is copied). The current stream waits for the daemon's copy before reading
    it. When the
    tensor is gone, an event is recorded on the current stream and the slot goes back once it
    has completed (checked at each next batch and at close()): work reading the images on
    another stream must be synchronised with the current one before the tensor is dropped.
    Change a clone, not the tensor: the slot is the daemon's to refill.

    A loop stops at the first batch of the next epoch, which starts the next loop (unless the
    session expired in between, an evaluation longer than the daemon's lease: its slot then
    holds other images, and the batch comes again, from the group in shard mode, from a new
    session that starts there in broadcast). len() is
    the epoch's batches for this rank: in shard mode ceil(batches_per_epoch / the ranks of
    this machine) (the node's part of the epoch; the daemon hands batches to whoever asks
    first, so a rank may get one more or less), batches_per_epoch in broadcast. `batch` says
    where the last pair came from.
    state_dict() / load_state_dict() resume: in broadcast mode at the next stream position
    (Hello's start); in shard mode the daemon keeps the group's progress itself.
    """

    def __init__(self, endpoint=None, group=None, mode=None, batch_size=0, dtype="float32",
                 layout="nchw", delivery=None, device="cpu", targets="dense", timeout=60.0):
        if targets not in ("dense", "sparse"):
            raise ValueError(f"tmix.torch: targets {targets!r}: expected 'dense' or 'sparse'")
        ddp = _ddp_env()
        self.rank, self.world_size, self._local_size = ddp.rank, ddp.world_size, ddp.local_size
        if group is None:
            group = ddp.group or "default"
            if ddp.group and mode is None:
                mode = "shard"
        self.device = torch.device(device)
        if delivery == "cuda" and self.device.type != "cuda":
            raise ValueError(f"tmix.torch: delivery 'cuda' with device {device!r}: expected "
                             "device 'cuda' or 'cuda:k' (the daemon's GPU)")
        self.targets = targets
        self.group = group
        self._options = dict(endpoint=endpoint, group=group, mode=mode, batch_size=batch_size,
                             dtype=dtype, layout=layout, delivery=delivery, timeout=timeout,
                             node_rank=ddp.node_rank,
                             node_count=ddp.node_count if ddp.node_count > 1 else 0)
        self._client = None
        self._ring = None        # delivery "cuda": the session's device slots
        self._held = collections.deque()  # batches for the next loop: of the next epoch
        self._start = 0          # broadcast: the stream position to say Hello with
        self._next_position = 0  # the stream position after the last batch yielded
        self.batch = None

    @property
    def client(self):
        """The tmix.Client (connected on first use)."""
        if self._client is None:
            cuda = self._options["delivery"] == "cuda"
            if cuda and self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            k = self.device.index or 0
            bus = None
            if cuda:
                torch.cuda.init()  # maps PyTorch's libcudart, which _cuda.runtime() looks for
                rt = _cuda.runtime()
                bus = rt.pci_bus_id(k)  # the daemon's GPU whatever CUDA_VISIBLE_DEVICES says
                self._ring = _cuda.DeviceRing(
                    rt, k, lambda: torch.cuda.current_stream(k).record_event())
            self._client = Client(**self._options, start=self._start, cuda_device=k,
                                  cuda_pci_bus_id=bus)
        return self._client

    @property
    def info(self):
        return self.client.info

    def __len__(self):
        info = self.info
        if info.mode == "shard":
            return math.ceil(info.batches_per_epoch / self._local_size)
        return info.batches_per_epoch

    def __iter__(self):
        epoch = None
        while True:
            if self._ring is not None:
                self._ring.poll()
            if not self._held:
                b = self.client.next()
            elif epoch is None:
                b = self._take_held()
            else:
                b = self._held.popleft()
            if epoch is None:
                epoch = b.epoch
            elif b.epoch > epoch:  # an older epoch's batch (a lease given back) still counts
                self._held.appendleft(b)
                return
            self._next_position = self._position(b) + 1
            self.batch = LoaderBatch(b.epoch, b.index, b.sequence, b.sample_ids.copy())
            pair = self._tensors(b)
            del b  # the tensors alone keep the batch
            yield pair

    def _position(self, b):
        """Batch b's stream position: epoch * batches_per_epoch + index."""
        return b.epoch * self.info.batches_per_epoch + b.index

    def _take_held(self):
        """The batch that ended the last loop, if its images are still its own. A loop ends and
        the next starts after the trainer's evaluation: when that took longer than the lease,
        the daemon dropped the silent session and gave the slots it held to other batches.
        Asking for the next batch tells: if the client had to say Hello again, the held batch
        is of the old session. A shard group gives the batch to someone again (the new
        session's is taken); a broadcast session starts again at the held batch's position."""
        client, held = self.client, self._held[0]
        if held.cuda is None and not held.in_shm:
            return self._held.popleft()  # its images came in the message: its own copy
        session = client.info.session_id
        after = client.next()  # on failure the held batch stays held
        if client.info.session_id == session:
            self._held.popleft()
            self._held.appendleft(after)
            return held
        self._held.clear()
        if client.info.mode != "broadcast":
            return after
        self._start = self._position(held)
        del held, after
        self.close()  # the next use says Hello at the held batch's position
        return self.client.next()

    def _host_images(self, b):
        with warnings.catch_warnings():
            # The arrays are read-only views; torch warns that it cannot mark tensors so.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writ")
            return torch.from_numpy(b.images)

    def _tensors(self, b):
        if b.cuda is not None:  # the current stream waits for the daemon's copy
            images = torch.utils.dlpack.from_dlpack(self._ring.receive(b, _TYPESTR[b.dtype]))
        else:
            images = self._host_images(b)
        labels = torch.from_numpy(b.labels.astype(np.int64))
        weights = torch.from_numpy(b.weights.copy())
        if self.targets == "dense":
            targets = torch.zeros(b.size, self.client.info.classes, dtype=torch.float32)
            targets.scatter_add_(1, labels, weights)
        else:
            targets = (labels, weights)
        if self.device.type != "cpu":
            images = images.to(self.device)  # no copy when already there
            targets = targets.to(self.device) if self.targets == "dense" else \
                tuple(t.to(self.device) for t in targets)
        return images, targets

    def state_dict(self):
        """Where to resume: the stream position of the next batch to train on and its epoch."""
        if self._held:
            pos = self._position(self._held[0])
        else:
            pos = self._next_position
        bpe = self.info.batches_per_epoch
        return {"group": self.group, "mode": self.info.mode, "position": pos,
                "epoch": pos // bpe, "index": pos % bpe}

    def load_state_dict(self, state):
        """Resumes at state["position"]: a broadcast loader reconnects to start there."""
        self._start = self._next_position = int(state["position"])
        self._held.clear()
        if state.get("mode") == "broadcast" or self._options["mode"] == "broadcast":
            self.close()  # the next use says Hello with the new start

    def close(self):
        """Ends the session once every tensor of its batches is gone (delivery "cuda": waits
        for the GPU work on the batches whose images are gone)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._held.clear()
