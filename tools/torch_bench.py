#!/usr/bin/env python3
"""PyTorch-CPU timings of the shapes `repux bench kernels` and `repux bench model` time, for
the kernels issue's "at least 2x faster than PyTorch CPU" targets: run it on the same machine,
with the same thread count, next to the repux commands.

    python3 tools/torch_bench.py --threads 2                 # kernels + tiny model at 48x48x32
    python3 tools/torch_bench.py --threads 2 --model paper --size 96   # the paper network, 2 x 96^3
    python3 tools/torch_bench.py --threads 2 --model swinunetr --size 96 --no-kernels  # MONAI
    python3 tools/torch_bench.py --threads 2 --model paper --size 96 --no-kernels --precision bf16  # autocast
    python3 tools/torch_bench.py --device cuda --model paper --size 96   # PyTorch + cuDNN (tools/gpu_bench.sh)

Prints one JSON array: kernel records with repux's keys (op, channels, size, kernel, pass,
torch_s) and model records (model, patch, batch, pass, torch_s, peak_rss_mib). The network is
tools/torch_reference.py's independent PyTorch RepUX-Net (BFR forward), or MONAI's SwinUNETR
for the swinunetr presets, trained with torch.optim.AdamW and MONAI's Dice + CE written out.
Each time: one warm-up run, then the median of --repeats runs; the warm-up alone where it took
> --warm-only-s (default 30 s; kernels: > 5 s), the rule `repux bench model` uses.
With --device cuda everything runs on the GPU with cuDNN's autotuner on
(torch.backends.cudnn.benchmark), each time ends with torch.cuda.synchronize(), and model
records add peak_device_mib (torch.cuda.max_memory_allocated).
Needs torch (and numpy; monai + einops for SwinUNETR).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import Net  # noqa: E402

PRESETS = {
    "paper": ((48, 96, 192, 384), 768),
    "small": ((16, 32, 64, 128), 256),
    "tiny": ((8, 16, 32, 64), 128),
    "micro": ((4, 8, 16, 32), 64),
}
# repux's SwinUNETR presets: MONAI's SwinUNETR with this feature_size.
SWIN = {"swinunetr": 48, "swinunetr-small": 24, "swinunetr-tiny": 12}


WARM_ONLY_S = 30.0  # --warm-only-s: the same rule as `repux bench model`
DEV = torch.device("cpu")  # --device


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats, once_above=None):
    """One warm-up run, then the median of `repeats` runs; the warm-up alone where it took
    longer than `once_above` seconds (default: --warm-only-s)."""
    if once_above is None:
        once_above = WARM_ONLY_S
    sync()
    t = time.perf_counter()
    fn()
    sync()
    warm = time.perf_counter() - t
    if warm > once_above:
        return warm
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def kernel_records(repeats):
    recs = []

    def run(op, x_shape, w_shape, conv, **meta):
        for pass_, back in (("forward", False), ("forward_backward", True)):
            x = torch.randn(*x_shape, device=DEV, requires_grad=back)
            w = (0.1 * torch.randn(*w_shape, device=DEV)).requires_grad_(back)

            def f():
                y = conv(x, w)
                if back:
                    y.sum().backward()

            # Like `repux bench kernels` with burn: one run where it takes > 5 s.
            recs.append(dict(op=op, pass_=pass_, torch_s=timed(f, repeats, once_above=5.0), **meta))

    for k in (21, 7):
        for c, s in ((48, 48), (96, 24), (192, 12), (384, 6)):
            run("depthwise", (1, c, s, s, s), (c, 1, k, k, k), lambda x, w, c=c, k=k: F.conv3d(x, w, padding=k // 2, groups=c), channels=c, size=[s, s, s], kernel=k)
    for cin, cout, s, k, st, p in ((1, 48, 96, 3, 1, 1), (48, 48, 96, 3, 1, 1), (96, 48, 96, 3, 1, 1), (1, 48, 96, 7, 2, 3), (48, 96, 48, 2, 2, 0)):
        run("conv", (1, cin, s, s, s), (cout, cin, k, k, k), lambda x, w, st=st, p=p: F.conv3d(x, w, stride=st, padding=p), channels=cin, out_channels=cout, size=[s, s, s], kernel=k, stride=st)
    run("conv_transpose", (1, 96, 48, 48, 48), (96, 48, 2, 2, 2), lambda x, w: F.conv_transpose3d(x, w, stride=2), channels=96, out_channels=48, size=[48, 48, 48], kernel=2, stride=2)
    # The UNETR blocks' InstanceNorm + LeakyReLU (`repux bench kernels --device gpu`); w unused.
    for c, s in ((48, 96), (96, 48)):
        run("instance_norm_act", (1, c, s, s, s), (1,), lambda x, w: F.leaky_relu(F.instance_norm(x, eps=1e-5), 0.01), channels=c, size=[s, s, s])
    # SwinUNETR's attention softmax at its largest (`repux bench kernels`: the first stage of a
    # 2 x 96^3 step, 2*7^3 windows of 7^3 tokens, 3 heads, the shifted blocks' mask), as MONAI's
    # WindowAttention computes it; w is the position bias, which wants its gradient.
    n, nw = 343, 343
    mask = torch.zeros(nw, n, n, device=DEV)
    mask[torch.rand(nw, n, n, device=DEV) < 0.3] = -100.0

    def attn_softmax(x, w):
        a = x + w.unsqueeze(0)
        a = a.view(-1, nw, 3, n, n) + mask.unsqueeze(1).unsqueeze(0)
        return torch.softmax(a.view(-1, 3, n, n), dim=-1)

    run("window_softmax", (2 * nw, 3, n, n), (3, n, n), attn_softmax, channels=48, size=[48, 48, 48], heads=3, window=7, batch=2, masked=True)
    for r in recs:
        r["pass"] = r.pop("pass_")
    return recs


def dice_ce(logits, target):
    p = logits.softmax(1).flatten(2)
    t = F.one_hot(target, logits.shape[1]).movedim(-1, 1).flatten(2).float()
    dice = (2 * (p * t).sum(2) + 1e-5) / (p.sum(2) + t.sum(2) + 1e-5)
    return (1 - dice).mean() + F.cross_entropy(logits, target)


def model_records(name, patch, batch, repeats, train=True, bf16=False):
    if name in SWIN:
        from monai.networks.nets import SwinUNETR  # needs monai (and einops)

        net = SwinUNETR(in_channels=1, out_channels=5, feature_size=SWIN[name])
    else:
        fs, hidden = PRESETS[name]
        net = Net("repuxnet", 1, 5, fs, hidden, 21)
    net = net.to(DEV)
    x = torch.randn(batch, 1, *patch, device=DEV)
    y = torch.randint(0, 5, (batch, *patch), device=DEV)
    recs = []
    precision = "bf16" if bf16 else "fp32"
    # bf16: torch.autocast on the CPU (bf16 conv/matmul operands, fp32 master weights), the
    # anchor of `repux bench model --precision bf16`.
    autocast = lambda: torch.autocast(DEV.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731

    def memory(rec):
        if DEV.type == "cuda":
            rec["peak_device_mib"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        return rec

    net.eval()
    with torch.no_grad(), autocast():
        recs.append(memory(dict(model=name, patch=list(patch), batch=batch, precision=precision, device=str(DEV), **{"pass": "forward"}, torch_s=timed(lambda: net(x), repeats), peak_rss_mib=peak_rss_mib())))
    if not train:
        return recs
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = net(x)
        dice_ce(logits.float(), y).backward()
        opt.step()

    recs.append(memory(dict(model=name, patch=list(patch), batch=batch, precision=precision, device=str(DEV), **{"pass": "train_step"}, torch_s=timed(step, repeats), peak_rss_mib=peak_rss_mib())))
    return recs


def peak_rss_mib():
    """Peak resident set of this process so far (monotonic: read right after the pass)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="tiny", choices=sorted(PRESETS) + sorted(SWIN))
    ap.add_argument("--size", type=int, help="cubic patch side (default 48x48x32)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warm-only-s", type=float, default=30.0, help="model: a warm-up above this many seconds is the measurement")
    ap.add_argument("--no-kernels", action="store_true")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--forward-only", action="store_true", help="model: only the eval forward (no training step)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="model: bf16 runs under torch.autocast(device, bfloat16)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: PyTorch + cuDNN on the GPU")
    a = ap.parse_args()
    global DEV, WARM_ONLY_S
    DEV = torch.device(a.device)
    WARM_ONLY_S = a.warm_only_s
    if DEV.type == "cuda":
        # cuDNN's autotuner on; TF32 as PyTorch ships it (on for cuDNN convs): the peer users run.
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    patch = (a.size,) * 3 if a.size else (48, 48, 32)
    recs = [] if a.no_kernels else kernel_records(a.repeats)
    if not a.no_model:
        recs += model_records(a.model, patch, a.batch, a.repeats, train=not a.forward_only, bf16=a.precision == "bf16")
    print(json.dumps(recs, indent=1))


if __name__ == "__main__":
    main()
