"""Straightforward PyTorch versions of the mixup family, written the way the papers' code does it
(parameters drawn on the host with numpy, one draw per batch, masks built on the host, a Python
loop where the paper has one). They are what ``benchmarks/family.py`` times fastmix against when
OpenMixup does not install (it needs mmcv built against the local torch). Each takes ``(x, y)``
with class indices ``y`` and returns ``(mixed, soft_targets)``; ``x`` is not written to.
Written for this benchmark from the papers' descriptions, not copied from their repositories.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(y, num_classes).float()


def ricap(x, y, num_classes: int, beta: float = 0.3):
    """RICAP (Takahashi et al.): a boundary (w, h) from Beta(β, β), four random permutations, one
    random crop position per quadrant for the whole batch, the quadrants concatenated."""
    b, _, height, width = x.shape
    w = int(np.round(width * np.random.beta(beta, beta)))
    h = int(np.round(height * np.random.beta(beta, beta)))
    sizes = [(h, w), (h, width - w), (height - h, w), (height - h, width - w)]
    crops, target = [], 0.0
    for ph, pw in sizes:
        index = torch.randperm(b, device=x.device)
        y0 = np.random.randint(0, height - ph + 1)
        x0 = np.random.randint(0, width - pw + 1)
        crops.append(x[index][:, :, y0:y0 + ph, x0:x0 + pw])
        target = target + one_hot(y[index], num_classes) * (ph * pw / (height * width))
    top = torch.cat([crops[0], crops[1]], 3)
    bottom = torch.cat([crops[2], crops[3]], 3)
    return torch.cat([top, bottom], 2), target


def dirichlet_mixup(x, y, num_classes: int, alpha: float = 1.0, k: int = 3):
    """k-way Mixup: weights from Dirichlet(α·1_k) for the batch, the batch and k-1 permutations."""
    w = np.random.dirichlet([alpha] * k)
    out, target = x * float(w[0]), one_hot(y, num_classes) * float(w[0])
    for j in range(1, k):
        index = torch.randperm(x.shape[0], device=x.device)
        out = out + x[index] * float(w[j])
        target = target + one_hot(y[index], num_classes) * float(w[j])
    return out, target


def _fourier_mask(height: int, width: int, lam: float, decay_power: float) -> np.ndarray:
    """FMix's mask on the host: complex Gaussian noise shaped by 1/f^δ, inverse FFT, the top
    λ·H·W pixels set to 1."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fy * fy + fx * fx)
    scale = 1.0 / np.maximum(freq, 1.0 / max(height, width)) ** decay_power
    spectrum = (np.random.randn(*freq.shape) + 1j * np.random.randn(*freq.shape)) * scale
    grey = np.fft.irfft2(spectrum, s=(height, width))
    order = np.argsort(grey.reshape(-1))[::-1]
    mask = np.zeros(height * width, dtype=np.float32)
    mask[order[:int(round(lam * height * width))]] = 1.0
    return mask.reshape(height, width)


def fmix(x, y, num_classes: int, alpha: float = 1.0, decay_power: float = 3.0):
    """FMix (Harris et al.): one λ and one mask per batch, built on the host, moved to the device."""
    b, _, height, width = x.shape
    lam = float(np.random.beta(alpha, alpha))
    mask = torch.from_numpy(_fourier_mask(height, width, lam, decay_power)).to(x.device)
    index = torch.randperm(b, device=x.device)
    out = x * mask + x[index] * (1.0 - mask)
    share = float(mask.mean())
    return out, one_hot(y, num_classes) * share + one_hot(y[index], num_classes) * (1.0 - share)


def resizemix(x, y, num_classes: int, scope=(0.1, 0.8), mode: str = "nearest"):
    """ResizeMix (Qin et al.): τ ~ U(scope), the permuted batch resized to τH × τW and pasted at a
    uniform position (one per batch)."""
    b, _, height, width = x.shape
    tau = float(np.random.uniform(*scope))
    h, w = max(1, int(round(tau * height))), max(1, int(round(tau * width)))
    y0, x0 = np.random.randint(0, height - h + 1), np.random.randint(0, width - w + 1)
    index = torch.randperm(b, device=x.device)
    small = F.interpolate(x[index], size=(h, w), mode=mode)
    out = x.clone()
    out[:, :, y0:y0 + h, x0:x0 + w] = small
    kept = 1.0 - h * w / (height * width)
    return out, one_hot(y, num_classes) * kept + one_hot(y[index], num_classes) * (1.0 - kept)


def _saliency_peak(image: torch.Tensor) -> tuple:
    """Spectral-residual saliency (Hou & Zhang) of one image on the host; the argmax pixel."""
    grey = image.float().mean(0).cpu().numpy()
    spectrum = np.fft.fft2(grey)
    log_amp, phase = np.log(np.abs(spectrum) + 1e-8), np.angle(spectrum)
    padded = np.pad(log_amp, 1, mode="edge")
    smooth = sum(padded[i:i + grey.shape[0], j:j + grey.shape[1]] for i in range(3) for j in range(3)) / 9.0
    saliency = np.abs(np.fft.ifft2(np.exp(log_amp - smooth + 1j * phase))) ** 2
    peak = int(np.argmax(saliency))
    return divmod(peak, grey.shape[1])


def saliencymix(x, y, num_classes: int, beta: float = 1.0):
    """SaliencyMix (Uddin et al.): λ ~ Beta(β, β), a CutMix box centred on the saliency peak of
    the first permuted image, pasted from the permuted batch at the same place."""
    b, _, height, width = x.shape
    lam = float(np.random.beta(beta, beta))
    index = torch.randperm(b, device=x.device)
    cy, cx = _saliency_peak(x[index[0]])
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    y0, y1 = np.clip(cy - ch // 2, 0, height), np.clip(cy + ch // 2, 0, height)
    x0, x1 = np.clip(cx - cw // 2, 0, width), np.clip(cx + cw // 2, 0, width)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[index][:, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    return out, one_hot(y, num_classes) * kept + one_hot(y[index], num_classes) * (1.0 - kept)


def manifold_mixup_features(h, y, num_classes: int, alpha: float = 2.0):
    """Manifold Mixup's mix of one hidden layer's output, as the official code writes it inline."""
    lam = float(np.random.beta(alpha, alpha))
    index = torch.randperm(h.shape[0], device=h.device)
    return lam * h + (1 - lam) * h[index], one_hot(y, num_classes) * lam + one_hot(y[index], num_classes) * (1 - lam)


def patchup_features(h, y, num_classes: int, block_size: int = 7, gamma: float = 0.9):
    """PatchUp (hard): DropBlock-style blocks of a feature map swapped with the permuted batch's;
    the targets weighted by the unchanged fraction (λ drives only the soft mode)."""
    b, c, height, width = h.shape
    seed_rate = gamma * height * width / (block_size ** 2 * (height - block_size + 1) * (width - block_size + 1))
    seeds = torch.bernoulli(torch.full((b, c, height, width), min(seed_rate, 1.0), device=h.device))
    blocks = F.max_pool2d(seeds, block_size, stride=1, padding=block_size // 2)[..., :height, :width]
    index = torch.randperm(b, device=h.device)
    out = h * (1 - blocks) + h[index] * blocks
    changed = float(blocks.mean())
    target_a, target_b = one_hot(y, num_classes), one_hot(y[index], num_classes)
    return out, target_a * (1 - changed) + target_b * changed


BASELINES = {"RICAP": ricap, "DirichletMixup": dirichlet_mixup, "FMix": fmix, "ResizeMix": resizemix,
             "SaliencyMix": saliencymix}
