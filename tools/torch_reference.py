#!/usr/bin/env python3
"""A PyTorch re-implementation of RepUX-Net and 3D UX-Net, written from the papers' descriptions
(RepUX-Net: Lee et al., MICCAI 2023; 3D UX-Net: Lee et al., ICLR 2023; not copied from the
authors' code), used to write parity fixtures for the
Rust networks: weights (as torch.save .pth with the authors' state_dict key names, and
.safetensors), an input and the logits, for small configurations.

BFR here is the paper's intent: the forward pass uses delta * W, delta[i,j,k] = alpha / (d + alpha)
with d the Euclidean distance from the kernel centre; the stored W is never modified. reparam
"deploy" is the authors' evaluation network (deploy=True): the stored kernel is convolved as it
is, which is what their released checkpoints hold. `deploy_state_dict` turns a BFR network's
state dict into that form (W * delta, BatchNorm kept), as `repux model export` must.

Usage (needs torch, numpy, safetensors):
    python3 tools/torch_reference.py --out crates/nn/tests/fixtures
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def bfr_delta(k, alpha):
    c = (k - 1) / 2
    idx = torch.arange(k, dtype=torch.float64) - c
    d = torch.sqrt(idx[:, None, None] ** 2 + idx[None, :, None] ** 2 + idx[None, None, :] ** 2)
    return (alpha / (d + alpha)).float()


class LayerNormCF(nn.Module):
    """LayerNorm over channels of an N,C,D,H,W tensor (biased variance)."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class RepUXBlock(nn.Module):
    def __init__(self, c, k, alpha, reparam):
        super().__init__()
        self.dwconv = nn.Conv3d(c, c, k, padding=k // 2, groups=c)
        self.norm = nn.BatchNorm3d(c)
        self.reparam = reparam
        self.register_buffer("delta", bfr_delta(k, alpha), persistent=False)

    def forward(self, x):
        # "deploy" and "none": the stored kernel as it is.
        w = self.dwconv.weight * self.delta if self.reparam == "bfr" else self.dwconv.weight
        x = F.conv3d(x, w, self.dwconv.bias, padding=self.dwconv.padding, groups=self.dwconv.groups)
        return F.gelu(self.norm(x))


class UXBlock(nn.Module):
    def __init__(self, c, k):
        super().__init__()
        self.dwconv = nn.Conv3d(c, c, k, padding=k // 2, groups=c)
        self.norm = LayerNormCF(c)
        self.pwconv1 = nn.Conv3d(c, 4 * c, 1, groups=c)
        self.pwconv2 = nn.Conv3d(4 * c, c, 1, groups=c)
        self.gamma = nn.Parameter(1e-6 * torch.ones(c))

    def forward(self, x):
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma[:, None, None, None] * y


class Encoder(nn.Module):
    def __init__(self, cin, dims, depths, block):
        super().__init__()
        self.downsample_layers = nn.ModuleList([nn.Sequential(nn.Conv3d(cin, dims[0], 7, stride=2, padding=3), LayerNormCF(dims[0]))])
        for i in range(3):
            self.downsample_layers.append(nn.Sequential(LayerNormCF(dims[i]), nn.Conv3d(dims[i], dims[i + 1], 2, stride=2)))
        self.stages = nn.ModuleList([nn.Sequential(*[block(dims[i]) for _ in range(depths[i])]) for i in range(4)])
        for i in range(4):
            self.add_module(f"norm{i}", LayerNormCF(dims[i]))

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            outs.append(getattr(self, f"norm{i}")(x))
        return outs


class ConvLayer(nn.Module):  # holds `.conv` so keys read `convN.conv.weight` as MONAI's
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, k, padding=k // 2, bias=False)

    def forward(self, x):
        return self.conv(x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvLayer(cin, cout, 3)
        self.conv2 = ConvLayer(cout, cout, 3)
        self.downsample = cin != cout
        if self.downsample:
            self.conv3 = ConvLayer(cin, cout, 1)

    def forward(self, x):
        inorm = lambda t: F.instance_norm(t, eps=1e-5)
        a = F.leaky_relu(inorm(self.conv1(x)), 0.01)
        a = inorm(self.conv2(a))
        r = inorm(self.conv3(x)) if self.downsample else x
        return F.leaky_relu(a + r, 0.01)


class Wrap(nn.Module):  # MONAI's UnetrBasicBlock keeps its ResBlock under `.layer`
    def __init__(self, cin, cout):
        super().__init__()
        self.layer = ResBlock(cin, cout)

    def forward(self, x):
        return self.layer(x)


class TranspConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=False)

    def forward(self, x):
        return self.conv(x)


class UpBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.transp_conv = TranspConv(cin, cout)
        self.conv_block = ResBlock(2 * cout, cout)

    def forward(self, x, skip):
        return self.conv_block(torch.cat([self.transp_conv(x), skip], 1))


class OutConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Module()
        self.conv.conv = nn.Conv3d(cin, cout, 1)

    def forward(self, x):
        return self.conv.conv(x)


class Net(nn.Module):
    def __init__(self, arch, cin, cout, fs, hidden, k, alpha=1.0, reparam="bfr", depths=(2, 2, 2, 2)):
        super().__init__()
        block = (lambda c: RepUXBlock(c, k, alpha, reparam)) if arch == "repuxnet" else (lambda c: UXBlock(c, k))
        self.prefix = "repuxnet_3d" if arch == "repuxnet" else "uxnet_3d"
        setattr(self, self.prefix, Encoder(cin, fs, depths, block))
        self.encoder1 = Wrap(cin, fs[0])
        self.encoder2 = Wrap(fs[0], fs[1])
        self.encoder3 = Wrap(fs[1], fs[2])
        self.encoder4 = Wrap(fs[2], fs[3])
        self.encoder5 = Wrap(fs[3], hidden)
        self.decoder5 = UpBlock(hidden, fs[3])
        self.decoder4 = UpBlock(fs[3], fs[2])
        self.decoder3 = UpBlock(fs[2], fs[1])
        self.decoder2 = UpBlock(fs[1], fs[0])
        self.decoder1 = Wrap(fs[0], fs[0])
        self.out = OutConv(fs[0], cout)

    def forward(self, x):
        o = getattr(self, self.prefix)(x)
        e1 = self.encoder1(x)
        e2 = self.encoder2(o[0])
        e3 = self.encoder3(o[1])
        e4 = self.encoder4(o[2])
        e5 = self.encoder5(o[3])
        d = self.decoder5(e5, e4)
        d = self.decoder4(d, e3)
        d = self.decoder3(d, e2)
        d = self.decoder2(d, e1)
        return self.out(self.decoder1(d))


def deploy_state_dict(model):
    """The state dict the authors' deploy=True network loads: each BFR kernel times delta."""
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if isinstance(m, RepUXBlock) and m.reparam == "bfr":
            sd[f"{name}.dwconv.weight"] = (m.dwconv.weight * m.delta).detach().clone().contiguous()
    return sd


def randomise(model, gen):
    """Non-trivial values everywhere: norms, BN statistics and gamma included."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif p.dim() == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen) if name.endswith("weight") else 0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


CONFIGS = [
    # name, model config (repux's JSON schema), input shape, weight format, network form.
    # repux_k21: an authors'-style checkpoint (deploy=True network: the kernels are used as they
    # are); its JSON is repux's default RepUX-Net config (BFR), which must load it as the authors'
    # network. repux_k21_train: repux's own training form (raw W, BFR applied by the forward),
    # written as repux marks it, with the deploy state dict PyTorch computes from it beside.
    ("repux_k21", dict(arch="repuxnet", in_channels=1, out_channels=3, feature_size=[2, 4, 8, 16], hidden_size=32, kernel_size=21, alpha=1.0, reparam="bfr"), [1, 1, 64, 32, 48], "pth", "deploy"),
    ("repux_k21_train", dict(arch="repuxnet", in_channels=1, out_channels=2, feature_size=[2, 4, 8, 16], hidden_size=32, kernel_size=21, alpha=1.5, reparam="bfr"), [1, 1, 32, 32, 32], "safetensors", "bfr"),
    ("repux_k7_plain", dict(arch="repuxnet", in_channels=2, out_channels=4, feature_size=[4, 8, 16, 32], hidden_size=64, kernel_size=7, alpha=1.0, reparam="none"), [2, 2, 32, 32, 32], "safetensors", "none"),
    ("uxnet_k7", dict(arch="uxnet", in_channels=1, out_channels=3, feature_size=[4, 8, 16, 32], hidden_size=64, kernel_size=7, alpha=1.0, reparam="none"), [1, 1, 32, 48, 32], "pth", "none"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    from safetensors.torch import save_file
    for i, (name, cfg, shape, fmt, form) in enumerate(CONFIGS):
        gen = torch.Generator().manual_seed(100 + i)
        torch.manual_seed(100 + i)
        model = Net(cfg["arch"], cfg["in_channels"], cfg["out_channels"], cfg["feature_size"], cfg["hidden_size"], cfg["kernel_size"], cfg["alpha"], form)
        randomise(model, gen)
        model.eval()
        # Weights and input are float32 values; the reference forward runs in float64 on them.
        sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        with torch.no_grad():
            y = model.double()(x.double())
        plain = lambda d: {k: v for k, v in d.items() if not k.endswith("num_batches_tracked")}
        if fmt == "pth":
            torch.save(sd, os.path.join(a.out, f"{name}.pth"))
        elif form == "bfr":
            # repux's training form, marked as repux marks it; and PyTorch's deploy form of it.
            save_file(plain(sd), os.path.join(a.out, f"{name}.safetensors"), metadata={"repux.kernels": "training"})
            save_file(plain(deploy_state_dict(model.float())), os.path.join(a.out, f"{name}_deploy.safetensors"))
        else:
            save_file(plain(sd), os.path.join(a.out, f"{name}.safetensors"))
        np.save(os.path.join(a.out, f"{name}_input.npy"), x.numpy())
        np.save(os.path.join(a.out, f"{name}_logits.npy"), y.float().numpy())
        with open(os.path.join(a.out, f"{name}.json"), "w") as f:
            json.dump(dict(cfg, depths=[2, 2, 2, 2]), f, indent=1)
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters, input {shape}, logits {list(y.shape)}, |y| mean {y.abs().mean().item():.4f}")
        if name == "repux_k21":
            # The same network described with the authors' REPUXNET constructor names.
            authors = dict(in_chans=1, out_chans=3, depths=[2, 2, 2, 2], feat_size=[2, 4, 8, 16], hidden_size=32, ks=21, a=1, deploy=True, drop_path_rate=0, layer_scale_init_value=1e-6, spatial_dims=3)
            with open(os.path.join(a.out, f"{name}_authors.json"), "w") as f:
                json.dump(authors, f, indent=1)
    # Parameter counts of the paper configurations (5 classes), for `repux model summary`.
    for arch in ["repuxnet", "uxnet"]:
        m = Net(arch, 1, 5, [48, 96, 192, 384], 768, 21 if arch == "repuxnet" else 7)
        print(f"paper {arch}: {sum(p.numel() for p in m.parameters())} parameters")


if __name__ == "__main__":
    main()
