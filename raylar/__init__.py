"""raylar: train particle classifiers on whole LArTPC event images with Ray.

Importing the package selects Ray Train's V1 API (see ``raylar.runtime``) before
anything imports ``ray.train``.
"""

from raylar import runtime as _runtime

_runtime.select_ray_train_v1()

__version__ = "0.1.0"
