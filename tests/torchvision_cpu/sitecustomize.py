"""Lets PyPI's torchvision import its Python transforms beside a CPU-only torch, for the parity test of
``preprocess_frames`` against transformers' native ``VideoLlama3VideoProcessor`` (which needs
torchvision's ``resize``).

PyPI's torchvision wheels are CUDA builds: beside torch's CPU build their compiled operators (``nms``,
image decoding) do not register, and ``torchvision/__init__`` then fails in its meta registrations of
those operators. The transforms the processor uses are plain torch and need none of them, so the meta
registrations module is replaced by an empty one. Python imports ``sitecustomize`` at startup from the
path, so this takes effect only where this folder is on ``PYTHONPATH``, as ``.ci/run`` puts it for that
one test (torchvision itself is installed outside the project's environment, with ``--target``).
"""

import sys
import types

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
