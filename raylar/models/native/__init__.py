"""JishNet's first block as one compiled CPU kernel (``fused_first_block``).

The C source next to this file computes convolution, max pooling and ReLU of
the one-channel image in one pass and the weight gradient from each window's
maximum only (see its header comment). It is compiled with the system's C
compiler the first time it is needed and cached per source, compiler flags
and CPU (model name and instruction-set flags) under ``$RAYLAR_NATIVE_CACHE`` (default
``~/.cache/raylar/native``). ``load_first_block`` returns ``None`` with a
logged reason when no compiler is found or the build fails; JishNet then
runs the block with PyTorch's operators.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from raylar.log import get_logger

log = get_logger(__name__)

SOURCE = Path(__file__).with_name("first_block.c")
FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=c99")
# Pooled rows per thread task: a full-size event (720 pooled rows) gives 90 tasks.
ROWS_PER_TASK = 8
MAX_WINDOW = 15  # the argmax of a window must fit in one byte

_lock = threading.Lock()
_library = None
_load_error: str | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("RAYLAR_NATIVE_CACHE", Path.home() / ".cache" / "raylar" / "native"))


def _cpu_model() -> str:
    """Return the CPU's model name and instruction-set flags, which ``-march=native`` depends on."""
    found = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key = line.split(":", 1)[0].strip()
                if key in ("model name", "flags") and key not in found:
                    found[key] = line.strip()
                if len(found) == 2:
                    break
    except OSError:
        pass
    return "\n".join(found.values()) or platform.processor()


def _build(compiler: str) -> Path:
    source = SOURCE.read_bytes()
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, check=False
    ).stdout
    key = hashlib.sha256(
        b"\0".join(
            part.encode() if isinstance(part, str) else part
            for part in (source, " ".join(FLAGS), version, _cpu_model(), platform.machine())
        )
    ).hexdigest()[:16]
    target = cache_dir() / key / "first_block.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build under a temporary name and rename, so that processes building at
    # the same time never load a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / "first_block.so"
        result = subprocess.run(
            [compiler, *FLAGS, "-o", str(built), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} exited with {result.returncode}: {result.stderr.strip()}")
        os.replace(built, target)
    return target


def load_first_block():
    """Return the compiled kernel library, building it on first use, or ``None`` if the build fails."""
    global _library, _load_error
    with _lock:
        if _library is not None or _load_error is not None:
            return _library
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        try:
            if compiler is None:
                raise RuntimeError("no C compiler found (set CC or install gcc)")
            path = _build(compiler)
            library = ctypes.CDLL(str(path))
        except (OSError, RuntimeError) as error:
            _load_error = str(error)
            log.warning(
                "fused_first_block: failed to build %s (%s), so JishNet's first block runs "
                "with PyTorch's operators instead",
                SOURCE.name,
                _load_error,
            )
            return None
        int64, pointer = ctypes.c_int64, ctypes.c_void_p
        library.raylar_first_block_forward.restype = ctypes.c_int
        library.raylar_first_block_forward.argtypes = [
            pointer, int64, int64, pointer, pointer, int64, int64, pointer, pointer, int64, int64
        ]
        library.raylar_first_block_backward.restype = None
        library.raylar_first_block_backward.argtypes = [
            pointer, int64, int64, int64, int64, pointer, pointer, pointer, pointer, pointer,
            int64, int64,
        ]
        _library = library
        log.info("fused_first_block: loaded the compiled kernel %s", path)
        return _library


def supported(images: torch.Tensor, conv: torch.nn.Conv2d, window: int) -> bool:
    """Return whether the compiled kernel can run this block on this input."""
    return (
        images.device.type == "cpu"
        and images.dtype == torch.float32
        and not images.requires_grad
        and conv.in_channels == 1
        and conv.kernel_size == (5, 5)
        and conv.padding == (2, 2)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.weight.dtype == torch.float32
        and window <= MAX_WINDOW
        and images.shape[-2] >= window
        and images.shape[-1] >= window
        and not torch.is_autocast_enabled("cpu")
        and load_first_block() is not None
    )


def _run_tasks(function, total_rows: int, make_arguments) -> list:
    """Call ``function`` on row ranges, in parallel over torch's intra-op thread count.

    ctypes releases the GIL during a foreign call, so the threads run the
    kernel at the same time.
    """
    bounds = [
        (start, min(start + ROWS_PER_TASK, total_rows))
        for start in range(0, total_rows, ROWS_PER_TASK)
    ]
    threads = max(1, min(torch.get_num_threads(), len(bounds)))
    if threads == 1:
        return [function(*make_arguments(0, 0, total_rows))]
    chunks = [bounds[i::threads] for i in range(threads)]

    def work(index):
        return [function(*make_arguments(index, first, last)) for first, last in chunks[index]]

    with ThreadPoolExecutor(threads) as pool:
        return [result for results in pool.map(work, range(threads)) for result in results]


class FirstBlockFunction(torch.autograd.Function):
    """relu(max_pool(conv2d(image, weight, bias, padding=2), window)) with the compiled kernel.

    Returns the pooled map in channels-last memory layout. The image gets no
    gradient (``supported`` rejects images that require one).
    """

    @staticmethod
    def forward(ctx, images, weight, bias, window: int):
        library = load_first_block()
        batch, _, rows, cols = images.shape
        channels = weight.shape[0]
        padded = F.pad(images.reshape(batch, rows, cols), (2, 2, 2, 2)).contiguous()
        weight_rows = weight.detach().reshape(channels, 25).contiguous()
        bias_values = (
            bias.detach().contiguous()
            if bias is not None
            else torch.zeros(channels, dtype=torch.float32)
        )
        pooled_rows, pooled_cols = rows // window, cols // window
        output = torch.empty(batch, pooled_rows, pooled_cols, channels)
        argmax = torch.empty(batch, pooled_rows, pooled_cols, channels, dtype=torch.uint8)
        statuses = _run_tasks(
            library.raylar_first_block_forward,
            batch * pooled_rows,
            lambda _, first, last: (
                padded.data_ptr(), rows, cols, weight_rows.data_ptr(), bias_values.data_ptr(),
                channels, window, output.data_ptr(), argmax.data_ptr(), first, last,
            ),
        )
        if any(statuses):
            raise MemoryError("fused_first_block: the kernel failed to allocate its row buffers (out of memory)")
        ctx.window = window
        ctx.shape = (rows, cols)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(padded, output, argmax)
        # (batch, rows, cols, channels) memory seen as NCHW with channels-last strides
        return output.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        library = load_first_block()
        padded, output, argmax = ctx.saved_tensors
        rows, cols = ctx.shape
        batch, pooled_rows, _, channels = output.shape
        gradient = grad_output.permute(0, 2, 3, 1).contiguous()
        threads = max(1, torch.get_num_threads())
        grad_weight = torch.zeros(threads, channels, 25)
        grad_bias = torch.zeros(threads, channels)
        _run_tasks(
            library.raylar_first_block_backward,
            batch * pooled_rows,
            lambda index, first, last: (
                padded.data_ptr(), rows, cols, channels, ctx.window, output.data_ptr(),
                argmax.data_ptr(), gradient.data_ptr(), grad_weight[index].data_ptr(),
                grad_bias[index].data_ptr(), first, last,
            ),
        )
        weight_gradient = grad_weight.sum(0).reshape(channels, 1, 5, 5)
        bias_gradient = grad_bias.sum(0) if ctx.has_bias else None
        return None, weight_gradient, bias_gradient, None
