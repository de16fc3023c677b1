"""tmix from Python: teacher and module files that move between PyTorch and tmixd.

- tmix.safetensors  read and write safetensors files (numpy only)
- tmix.zoo          the teacher architectures with tmix's state_dict names, and their CAMs
- tmix.export       `python -m tmix.export`: a PyTorch model or state_dict -> teacher file

Submodules are imported on demand so that tmix.safetensors works without torch.
"""
