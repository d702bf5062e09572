"""An independent PyTorch implementation of diffusers' UNet2DModel, for the blocks a DDPM uses.

Written from diffusers' model source (src/diffusers/models/unets/unet_2d.py,
unet_2d_blocks.py, resnet.py, downsampling.py, upsampling.py,
attention_processor.py, embeddings.py; diffusers is not installed here and
nothing is imported from it). Module attribute names equal diffusers', so
state_dict() keys are the names of a diffusion_pytorch_model.safetensors written
by current diffusers (attention: to_q, to_k, to_v, to_out.0). It shares no code
with unet.py (the port-named reference), so that weights/ (Go) tests check the
diffusers naming by a forward pass, not only by a list of names.

Covered: down_block_types DownBlock2D / AttnDownBlock2D, up_block_types
UpBlock2D / AttnUpBlock2D, mid block UNetMidBlock2D, time_embedding_type
positional, resnet_time_scale_shift default, downsample_type / upsample_type
conv, no class embedding. Anything else raises.
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

# Attention names of diffusers < 0.14 (AttentionBlock), as in the published google/ddpm-* files,
# and the current ones; modeling_utils._convert_deprecated_attention_blocks maps old to new.
OLD_TO_NEW_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def timestep_embedding(t, dim, flip_sin_to_cos, freq_shift, max_period=10000):
    """embeddings.get_timestep_embedding, in float64."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - freq_shift)
    args = t.to(torch.float64)[:, None] * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear_1 = nn.Linear(cin, cout)
        self.linear_2 = nn.Linear(cout, cout)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, dropout, scale=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.scale = scale

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.scale


class Attention(nn.Module):
    """Attention(query_dim=C, heads, dim_head, norm_num_groups, residual_connection=True, bias=True)."""

    def __init__(self, c, heads, groups, eps, scale=1.0):
        super().__init__()
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, c, eps=eps, affine=True)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])
        self.scale = scale

    def forward(self, x):
        b, c, hh, ww = x.shape
        h = self.group_norm(x).view(b, c, hh * ww).transpose(1, 2)  # [B, HW, C]
        d = c // self.heads

        def split(z):
            return z.view(b, -1, self.heads, d).transpose(1, 2)  # [B, heads, HW, d]

        q, k, v = split(self.to_q(h)), split(self.to_k(h)), split(self.to_v(h))
        w = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)
        o = (w @ v).transpose(1, 2).reshape(b, hh * ww, c)
        o = self.to_out[1](self.to_out[0](o))
        return (o.transpose(1, 2).reshape(b, c, hh, ww) + x) / self.scale


class Downsample2D(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def heads_for(c, head_dim):
    return 1 if head_dim is None else c // head_dim


class DownBlock(nn.Module):
    def __init__(self, n, cin, cout, temb, attn, down, groups, eps, dropout, padding, head_dim):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock2D(cin if i == 0 else cout, cout, temb, groups, eps, dropout) for i in range(n)])
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, heads_for(cout, head_dim), groups, eps) for _ in range(n)])
        else:
            self.attentions = None
        self.downsamplers = nn.ModuleList([Downsample2D(cout, padding)]) if down else None

    def forward(self, h, temb):
        outs = ()
        for i, r in enumerate(self.resnets):
            h = r(h, temb)
            if self.attentions is not None:
                h = self.attentions[i](h)
            outs += (h,)
        if self.downsamplers is not None:
            h = self.downsamplers[0](h)
            outs += (h,)
        return h, outs


class UpBlock(nn.Module):
    def __init__(self, n, cin, cout, prev, temb, attn, up, groups, eps, dropout, head_dim):
        super().__init__()
        res = []
        for i in range(n):
            skip = cin if i == n - 1 else cout
            rin = prev if i == 0 else cout
            res.append(ResnetBlock2D(rin + skip, cout, temb, groups, eps, dropout))
        self.resnets = nn.ModuleList(res)
        if attn:
            self.attentions = nn.ModuleList([Attention(cout, heads_for(cout, head_dim), groups, eps) for _ in range(n)])
        else:
            self.attentions = None
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if up else None

    def forward(self, h, skips, temb):
        for i, r in enumerate(self.resnets):
            h = r(torch.cat([h, skips[-1]], dim=1), temb)
            skips = skips[:-1]
            if self.attentions is not None:
                h = self.attentions[i](h)
        if self.upsamplers is not None:
            h = self.upsamplers[0](h)
        return h


class MidBlock(nn.Module):
    def __init__(self, c, temb, groups, eps, dropout, head_dim, scale):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, temb, groups, eps, dropout, scale) for _ in range(2)])
        self.attentions = nn.ModuleList([Attention(c, heads_for(c, head_dim), groups, eps, scale)])

    def forward(self, h, temb):
        h = self.resnets[0](h, temb)
        h = self.attentions[0](h)
        return self.resnets[1](h, temb)


class UNet2DModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        get = cfg.get
        boc = list(get("block_out_channels", [224, 448, 672, 896]))
        down = list(get("down_block_types", ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]))
        up = list(get("up_block_types", ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]))
        for key, want in [("time_embedding_type", "positional"), ("resnet_time_scale_shift", "default"),
                          ("downsample_type", "conv"), ("upsample_type", "conv"), ("class_embed_type", None),
                          ("num_class_embeds", None), ("center_input_sample", False), ("act_fn", "silu"),
                          ("mid_block_type", "UNetMidBlock2D"), ("add_attention", True),
                          ("time_embedding_dim", None), ("attn_norm_num_groups", None)]:
            if get(key, want) != want:
                raise ValueError(f"{key}={get(key)} is not covered by this reference")
        groups, eps = get("norm_num_groups", 32), get("norm_eps", 1e-5)
        lpb, dropout = get("layers_per_block", 2), get("dropout", 0.0)
        head_dim = get("attention_head_dim", 8)
        self.flip, self.shift = get("flip_sin_to_cos", True), get("freq_shift", 0)
        ch = boc[0]
        temb = 4 * ch
        self.ch = ch
        self.conv_in = nn.Conv2d(get("in_channels", 3), ch, 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch, temb)
        L = len(boc)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(down):
            if kind not in ("DownBlock2D", "AttnDownBlock2D"):
                raise ValueError(kind)
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(lpb, cin, cout, temb, kind == "AttnDownBlock2D", i != L - 1,
                                              groups, eps, dropout, get("downsample_padding", 1), head_dim))
        self.mid_block = MidBlock(boc[-1], temb, groups, eps, dropout, head_dim, get("mid_block_scale_factor", 1))
        rev = boc[::-1]
        self.up_blocks = nn.ModuleList()
        cout = rev[0]
        for i, kind in enumerate(up):
            if kind not in ("UpBlock2D", "AttnUpBlock2D"):
                raise ValueError(kind)
            prev, cout = cout, rev[i]
            cin = rev[min(i + 1, L - 1)]
            self.up_blocks.append(UpBlock(lpb + 1, cin, cout, prev, temb, kind == "AttnUpBlock2D", i != L - 1,
                                          groups, eps, dropout, head_dim))
        self.conv_norm_out = nn.GroupNorm(groups, ch, eps=eps)
        self.conv_out = nn.Conv2d(ch, get("out_channels", 3), 3, padding=1)

    def forward(self, x, t):
        emb = self.time_embedding(timestep_embedding(t, self.ch, self.flip, self.shift).to(x.dtype))
        h = self.conv_in(x)
        skips = (h,)
        for b in self.down_blocks:
            h, outs = b(h, emb)
            skips += outs
        h = self.mid_block(h, emb)
        for b in self.up_blocks:
            n = len(b.resnets)
            h = b(h, skips[-n:], emb)
            skips = skips[:-n]
        assert not skips
        return self.conv_out(F.silu(self.conv_norm_out(h)))


def to_old_names(sd):
    """Current attention names → the names of the published google/ddpm-* files."""
    new_to_old = {v: k for k, v in OLD_TO_NEW_ATTN.items()}
    out = {}
    for k, v in sd.items():
        for new, old in new_to_old.items():
            if f".{new}." in k:
                k = k.replace(f".{new}.", f".{old}.")
        out[k] = v
    return out


def to_new_names(sd):
    """What diffusers' _convert_deprecated_attention_blocks does when it loads an old file."""
    out = {}
    for k, v in sd.items():
        for old, new in OLD_TO_NEW_ATTN.items():
            if f".{old}." in k:
                k = k.replace(f".{old}.", f".{new}.")
        out[k] = v
    return out
