"""A product cut out of the box around it with OpenCV's GrabCut (a colour model of the box's product against the backdrop
around it, refined by a graph cut): where the backdrop is a real photo, the segmenter's 64-px mask leaves a halo of it,
and a proposal or a box drawn by hand says where the product is better than any mask found without one."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from .framing import mask_box, on_white, reduced

VERSION = "grabcut-1"  # part of Locator.version: change it when the cut changes
# Chosen on held-out real-photo backdrops of the calibrate part (117 photos whose proposals hold the product, IoU >= 0.3):
# the product found at rank 1 from 0.38 (the box as it is) to 0.55 with the box widened by a tenth of its side (proposals
# are tight: they cover 87 % of the product on average), at 200 px (0.48 at 128) and 2 iterations (27 ms; 4: 40 ms).
GROW = 0.1  # the box is widened by this share of its side on each side before the cut: GrabCut keeps nothing outside it
CONTEXT = 0.12  # and the photo around it, this share more, is what the backdrop's colour model learns from
WORK_SIDE = 200
ITERATIONS = 2
MIN_SHARE = 0.02  # a cut-out under this share of the analysed crop is not a product


def cut_in_box(photo: Image.Image, box, side: int | None = None) -> Image.Image | None:
    """The product inside `box` (left, top, right, bottom in `photo`'s pixels) cut out and re-centred on white, as
    catalogue photos are shot; None when GrabCut finds no product in it. `side`: as in framing.frame_product."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    grown = (max(0, x0 - GROW * w), max(0, y0 - GROW * h), min(photo.width, x1 + GROW * w), min(photo.height, y1 + GROW * h))
    pad_x, pad_y = max(4.0, CONTEXT * (grown[2] - grown[0])), max(4.0, CONTEXT * (grown[3] - grown[1]))
    outer = tuple(int(round(v)) for v in (max(0, grown[0] - pad_x), max(0, grown[1] - pad_y),
                                            min(photo.width, grown[2] + pad_x), min(photo.height, grown[3] + pad_y)))
    crop = photo.crop(outer)
    scale = min(1.0, WORK_SIDE / max(crop.size))
    small = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BILINEAR)
    arr = cv2.cvtColor(np.asarray(small, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    rh, rw = arr.shape[:2]
    left, top = max(1, round((grown[0] - outer[0]) * scale)), max(1, round((grown[1] - outer[1]) * scale))
    right, bottom = min(rw - 1, round((grown[2] - outer[0]) * scale)), min(rh - 1, round((grown[3] - outer[1]) * scale))
    if right - left < 4 or bottom - top < 4:
        return None
    mask = np.zeros((rh, rw), np.uint8)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: the same photo gives the same cut, and cache key
    try:
        cv2.grabCut(arr, mask, (left, top, right - left, bottom - top), np.zeros((1, 65)), np.zeros((1, 65)),
                    ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:  # a box of one colour: no product to model
        return None
    labels, n = ndimage.label((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
    if not n:
        return None
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    product = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    if product.mean() < MIN_SHARE:
        return None
    (l, t, r, b), in_crop = mask_box(product, crop.size)
    alpha = ndimage.gaussian_filter(product.astype(np.float32), 0.7)[t:b, l:r]  # a soft edge, as a studio cut-out has
    cut = crop.crop(in_crop)
    return on_white(reduced(cut, side) if side else cut, alpha)
