"""Distributed training on Ray Train (Horovod or Torch DDP backends)."""
