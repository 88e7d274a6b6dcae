"""Do two photos show the very same shot? OpenCV's ORB keypoints matched under one similarity transform (crops,
borders, rescaling and re-encoding keep them), then the colours compared pixel by pixel once aligned, after fitting a
global tone change (what a retouch does, not a recolour). The duplicate audit's check of every candidate pair: the
embedding and the perceptual hash propose, this decides."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SIDE = 256  # photos are compared at this size on their long side (keypoints), colours at a sixth of it
KEYPOINTS = 500
MIN_INLIERS = 20  # keypoint matches one similarity transform explains (two unrelated photos: a handful)
MAX_COLOUR = 10.0  # CIE Lab distance, 90th percentile over the product after the tone fit (8-15 tried on seeds 0-2)


@dataclass(frozen=True)
class Shot:
    points: np.ndarray  # (k, 2) keypoint positions in `rgb`
    descriptors: np.ndarray | None  # (k, 32) uint8 ORB descriptors
    rgb: np.ndarray  # (h, w, 3) uint8, the photo resized to SIDE on its long side


def shot(image: Image.Image) -> Shot:
    import cv2

    image = image.convert("RGB")
    scale = SIDE / max(image.size)  # every photo at one size, up or down: a halved copy keeps its keypoints
    rgb = np.asarray(image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                  Image.LANCZOS))
    keypoints, descriptors = cv2.ORB_create(nfeatures=KEYPOINTS).detectAndCompute(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return Shot(np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors, rgb)


@dataclass(frozen=True)
class Agreement:
    inliers: int  # keypoint matches one similarity transform explains (0: no transform found)
    colour: float  # 90th percentile of the Lab distance over the product once aligned (inf: not compared)

    @property
    def same_shot(self) -> bool:
        return self.inliers >= MIN_INLIERS and self.colour <= MAX_COLOUR


def agreement(a: Shot, b: Shot) -> Agreement:
    import cv2
    from skimage.color import rgb2lab

    if a.descriptors is None or b.descriptors is None or len(a.points) < 4 or len(b.points) < 4:
        return Agreement(0, float("inf"))
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(a.descriptors, b.descriptors)
    if len(matches) < 4:
        return Agreement(0, float("inf"))
    transform, mask = cv2.estimateAffinePartial2D(a.points[[m.queryIdx for m in matches]],
                                                  b.points[[m.trainIdx for m in matches]],
                                                  method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if transform is None:
        return Agreement(0, float("inf"))
    inliers = int(mask.sum())
    h, w = a.rgb.shape[:2]
    small = (max(1, w // 6), max(1, h // 6))
    warp = cv2.WARP_INVERSE_MAP  # b's pixels in a's frame: transform maps a's points onto b's
    b_on_a = cv2.warpAffine(b.rgb, transform, (w, h), flags=warp | cv2.INTER_AREA)
    inside = cv2.warpAffine(np.full(b.rgb.shape[:2], 255, np.uint8), transform, (w, h), flags=warp) > 0
    pa, pb = (cv2.resize(x, small, interpolation=cv2.INTER_AREA).astype(np.float32) for x in (a.rgb, b_on_a))
    inside = cv2.resize(inside.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    if inside.sum() < 0.5 * inside.size:  # the transform maps b mostly outside a: not one shot
        return Agreement(inliers, float("inf"))
    # the product: what differs from the backdrop in both photos (each photo's own corner colour), so a copy's added
    # border or re-toned backdrop is not compared, the product's colours are
    in_a = np.abs(pa - pa[0, 0]).max(2) > 24
    in_b = np.abs(pb - b.rgb[0, 0].astype(np.float32)).max(2) > 24
    product = inside & in_a & in_b
    if product.sum() < 20:
        product = inside
    # one tone change over the product and the backdrop both photos share (not a border one of them added), fitted in
    # RGB where retouches are linear: a gain per channel (brightness, contrast, white balance), a share of grey
    # (saturation), one offset for all channels. A retouch or a white balance moves the backdrop with the product; a
    # recolour of the product does not, so it stays in the residual
    fit = inside & (in_a == in_b)
    x, y = pb[fit].reshape(-1, 3), pa[fit].reshape(-1, 3)
    grey = x.mean(1, keepdims=True)
    design = np.concatenate([np.stack([np.diag(v) for v in x]), np.repeat(grey[:, None], 3, 1),
                             np.ones((len(x), 3, 1))], axis=2).reshape(-1, 5)
    coef = np.linalg.lstsq(design, y.reshape(-1), rcond=None)[0]
    fitted = pb * coef[:3] + coef[3] * pb.mean(2, keepdims=True) + coef[4]
    distance = np.linalg.norm(rgb2lab(np.clip(fitted, 0, 255) / 255.0) - rgb2lab(pa / 255.0), axis=2)
    return Agreement(inliers, float(np.percentile(distance[product], 90)))
