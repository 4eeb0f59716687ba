"""Record the machine a benchmark ran on, so its numbers can be compared.

``machine_info()`` returns a JSON-serialisable dict: CPU model (from
``/proc/cpuinfo`` where it exists), logical and usable core counts, torch's
intra-op thread count, the load average (1, 5, 15 minutes: other jobs
sharing the machine skew timings), the versions of Python, torch, NumPy and
scikit-learn, and the CUDA device when one is available.
"""

import os
import platform

import numpy as np
import sklearn
import torch

__all__ = ["machine_info", "machine_line"]


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count()


def _cuda_device():
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def machine_info():
    """The machine, the libraries and the threading in use, as a dict."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda_device": _cuda_device(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
    }


def machine_line(info=None):
    """A one-line Markdown summary of :func:`machine_info`."""
    info = info or machine_info()
    gpu = info["cuda_device"] or "no CUDA device"
    return (
        f"{info['cpu_model']}, {info['usable_cores']} usable cores "
        f"(torch threads: {info['torch_threads']}), {gpu}; Python {info['python']}, "
        f"torch {info['torch']}, NumPy {info['numpy']}, "
        f"scikit-learn {info['sklearn']}"
    )


if __name__ == "__main__":
    print(machine_line())
