#!/usr/bin/env python3
"""MONAI's whole-volume prediction of the volume `repux bench predict` times, for its ratio:
run it on the same machine with the same thread count, right after the repux command.

    target/release/repux bench predict --model-config paper --shape 192,192,128 --overlap 0.5 --json
    python3 tools/monai_predict_bench.py --model paper --shape 192,192,128 --overlap 0.5 --threads 2
    python3 tools/monai_predict_bench.py ... --precision bf16     # under torch.autocast("cpu", bfloat16)

The same synthetic volume (the formula of `synthetic_volume` in crates/cli/src/bench.rs), the
same network (tools/torch_reference.py's RepUX-Net in the authors' deploy form: the stored
21³ kernels convolved as they are, BatchNorm in eval), freshly initialised, and the same
settings: MONAI's `sliding_window_inference` with a 96³ window, one window per call, the
overlap given, Gaussian weighting with σ = patch/8 (nnU-Net's, as repux uses), no mirroring;
then softmax and arg-max over the classes. Prints one JSON record with repux's keys: seconds,
peak_rss_bytes (the process's, torch included), precision, isa (torch's CPU capability),
windows (network calls counted).
Needs torch and monai (PyPI), numpy.
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import PRESETS  # noqa: E402  (repux's RepUX-Net presets)
from torch_reference import Net  # noqa: E402


def synthetic_volume(shape):
    """repux's `synthetic_volume`: computed in float64, stored as float32, C order."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    return (np.sin(0.05 * i) * np.cos(0.07 * j) + 0.5 * np.sin(0.11 * k)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="paper", choices=sorted(PRESETS))
    ap.add_argument("--shape", default="192,192,128")
    ap.add_argument("--patch", default="96,96,96")
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(a.threads)
    shape = tuple(int(v) for v in a.shape.split(","))
    patch = tuple(int(v) for v in a.patch.split(","))
    fs, hidden = PRESETS[a.model]
    net = Net("repuxnet", 1, a.classes, fs, hidden, 21, 1.0, "deploy").eval()
    image = torch.from_numpy(synthetic_volume(shape))[None, None]
    calls = []

    def predictor(x):
        calls.append(x.shape[0])
        return net(x)

    t = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        logits = sliding_window_inference(image, patch, 1, predictor, overlap=a.overlap, mode="gaussian", sigma_scale=0.125)
        labels = torch.softmax(logits.float(), 1).argmax(1)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "precision": a.precision,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "windows": sum(calls),
        "model": a.model,
        "shape": list(shape),
        "patch": list(patch),
        "overlap": a.overlap,
        "classes": a.classes,
        "threads": torch.get_num_threads(),
        "foreground_voxels": int((labels > 0).sum()),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
