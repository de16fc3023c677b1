"""tmix from Python: batches from tmixd, and the teacher and module files it reads.

- tmix.Client       a trainer's connection to tmixd: batches as numpy arrays (libtmix, ctypes)
- tmix.status()     the daemon's status and its groups' progress
- tmix.torch        Loader: (images, targets) torch tensors, DDP-aware (needs PyTorch)
- tmix.safetensors  read and write safetensors files (numpy only)
- tmix.zoo          the teacher architectures with tmix's state_dict names, and their CAMs
- tmix.export       `python -m tmix.export`: a PyTorch model or state_dict -> teacher file

`import tmix` needs numpy alone (libtmix is loaded by the first Client); the other
submodules are imported on demand, so that tmix.safetensors works without torch.
"""
from .client import Batch, Client, CudaSlot, Info, TmixError, default_endpoint
from ._status import GroupStatus, Status, status

__all__ = ["Batch", "Client", "CudaSlot", "GroupStatus", "Info", "Status", "TmixError",
           "default_endpoint", "status"]
