"""Independent PyTorch reference of the DDPM U-Net (Ho, Jain & Abbeel 2020).

Written from the architecture description in shared/notes/ddpm-reference.md.
Module attribute names are chosen so that ``state_dict()`` keys equal the
interchange names used by DDPM Studio (the naming of the PyTorch port):

    temb.dense.{0,1}, conv_in,
    down.{i}.block.{j}.{norm1,conv1,temb_proj,norm2,conv2,nin_shortcut},
    down.{i}.attn.{j}.{norm,q,k,v,proj_out}, down.{i}.downsample.conv,
    mid.{block_1,attn_1,block_2},
    up.{i}.block.{j}, up.{i}.attn.{j}, up.{i}.upsample.conv,
    norm_out, conv_out

(each with .weight and .bias; convolutions OIHW, dense layers [out, in]).
``up`` is indexed by resolution level (up.0 is full resolution) but is run
from the coarsest level to the finest.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

CONFIG_KEYS = ("resolution", "in_channels", "out_ch", "ch", "ch_mult",
               "num_res_blocks", "attn_resolutions", "dropout")

PRESETS = {
    "tiny": dict(resolution=16, in_channels=1, out_ch=1, ch=32, ch_mult=[1, 2],
                 num_res_blocks=1, attn_resolutions=[8], dropout=0.1),
    "mnist": dict(resolution=28, in_channels=1, out_ch=1, ch=32, ch_mult=[1, 2, 2],
                  num_res_blocks=2, attn_resolutions=[14], dropout=0.1),
    "cifar32": dict(resolution=32, in_channels=3, out_ch=3, ch=64, ch_mult=[1, 2, 2],
                    num_res_blocks=2, attn_resolutions=[16], dropout=0.1),
    "cifar10": dict(resolution=32, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 2, 2],
                    num_res_blocks=2, attn_resolutions=[16], dropout=0.1),
    "celebahq256": dict(resolution=256, in_channels=3, out_ch=3, ch=128,
                        ch_mult=[1, 1, 2, 2, 4, 4], num_res_blocks=2,
                        attn_resolutions=[16], dropout=0.0),
}


def swish(x):
    return x * torch.sigmoid(x)


def group_norm(channels):
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def timestep_embedding(t, dim):
    """Sinusoidal embedding [sin(t f_i), cos(t f_i)], f_i = 10000^(-i/(half-1)).

    Computed in float64 regardless of the model dtype, then cast by the caller.
    """
    assert t.dim() == 1
    half = dim // 2
    scale = math.log(10000.0) / (half - 1)
    freqs = torch.exp(-scale * torch.arange(half, dtype=torch.float64, device=t.device))
    args = t.to(torch.float64)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    def __init__(self, ch, temb_ch):
        super().__init__()
        self.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])

    def forward(self, emb):
        return self.dense[1](swish(self.dense[0](emb)))


class ResnetBlock(nn.Module):
    def __init__(self, in_ch, out_ch, temb_ch, dropout):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=1, padding=1)
        self.temb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=1, padding=0)
        else:
            self.nin_shortcut = None

    def forward(self, x, temb):
        h = self.conv1(swish(self.norm1(x)))
        h = h + self.temb_proj(swish(temb))[:, :, None, None]
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions."""

    def __init__(self, channels):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        n, c, hh, ww = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(n, c, hh * ww)  # [N, C, P]
        k = self.k(h).reshape(n, c, hh * ww)
        v = self.v(h).reshape(n, c, hh * ww)
        # logits[n, i, j] = sum_c q[n,c,i] k[n,c,j] / sqrt(C); softmax over keys j.
        logits = torch.einsum("nci,ncj->nij", q, k) * (float(c) ** -0.5)
        w = torch.softmax(logits, dim=2)
        # out[n, c, i] = sum_j v[n,c,j] w[n,i,j]
        out = torch.einsum("ncj,nij->nci", v, w).reshape(n, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        # Zero-pad one column on the right and one row at the bottom (TF "SAME" for stride 2).
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Model(nn.Module):
    def __init__(self, resolution, in_channels, out_ch, ch, ch_mult, num_res_blocks,
                 attn_resolutions, dropout):
        super().__init__()
        ch_mult = tuple(ch_mult)
        attn_resolutions = tuple(attn_resolutions)
        self.ch = ch
        self.temb_ch = 4 * ch
        self.num_levels = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution

        self.temb = TimeEmbedding(ch, self.temb_ch)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, stride=1, padding=1)

        # Down path; record the channel count of every tensor pushed to the skip stack.
        skip_channels = [ch]
        cur_ch = ch
        res = resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(cur_ch, ch * mult, self.temb_ch, dropout))
                cur_ch = ch * mult
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(cur_ch))
                skip_channels.append(cur_ch)
            if level != self.num_levels - 1:
                stage.downsample = Downsample(cur_ch)
                skip_channels.append(cur_ch)
                res = res // 2
            self.down.append(stage)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(cur_ch, cur_ch, self.temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(cur_ch)
        self.mid.block_2 = ResnetBlock(cur_ch, cur_ch, self.temb_ch, dropout)

        # Up path, built coarse-to-fine, stored by level index.
        up_stages = [None] * self.num_levels
        for level in reversed(range(self.num_levels)):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            out_c = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(cur_ch + skip_channels.pop(), out_c,
                                               self.temb_ch, dropout))
                cur_ch = out_c
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(cur_ch))
            if level != 0:
                stage.upsample = Upsample(cur_ch)
                res = res * 2
            up_stages[level] = stage
        assert not skip_channels
        self.up = nn.ModuleList(up_stages)

        self.norm_out = group_norm(cur_ch)
        self.conv_out = nn.Conv2d(cur_ch, out_ch, 3, stride=1, padding=1)

    def forward(self, x, t):
        emb = timestep_embedding(t, self.ch).to(x.dtype)
        temb = self.temb(emb)

        hs = [self.conv_in(x)]
        for level in range(self.num_levels):
            stage = self.down[level]
            for j in range(self.num_res_blocks):
                h = stage.block[j](hs[-1], temb)
                if len(stage.attn) > 0:
                    h = stage.attn[j](h)
                hs.append(h)
            if level != self.num_levels - 1:
                hs.append(stage.downsample(hs[-1]))

        h = hs[-1]
        h = self.mid.block_1(h, temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        for level in reversed(range(self.num_levels)):
            stage = self.up[level]
            for j in range(self.num_res_blocks + 1):
                h = stage.block[j](torch.cat([h, hs.pop()], dim=1), temb)
                if len(stage.attn) > 0:
                    h = stage.attn[j](h)
            if level != 0:
                h = stage.upsample(h)
        assert not hs

        return self.conv_out(swish(self.norm_out(h)))


def model_from_config(cfg):
    missing = [k for k in CONFIG_KEYS if k not in cfg]
    extra = [k for k in cfg if k not in CONFIG_KEYS]
    if missing or extra:
        raise ValueError(f"config keys: missing {missing}, unexpected {extra}")
    return Model(**{k: cfg[k] for k in CONFIG_KEYS})


def num_params(model):
    return sum(p.numel() for p in model.parameters())
