"""The dense (JishNet) and sparse (SCNet) classifiers of whole event images."""

from raylar.models.config import MIN_IMAGE_SIZE, ModelConfigError
from raylar.models.jishnet import JishNet
from raylar.models.registry import MODELS, build_model, describe_model
from raylar.models.scnet import SCNet

__all__ = [
    "MIN_IMAGE_SIZE",
    "MODELS",
    "JishNet",
    "ModelConfigError",
    "SCNet",
    "build_model",
    "describe_model",
]
