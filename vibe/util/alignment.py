"""Do two photos show the very same shot? OpenCV's ORB keypoints matched under one similarity transform (crops,
borders, rescaling and re-encoding keep them), then the colours compared pixel by pixel once aligned, after fitting a
bounded global tone change (what a retouch does, not a recolour): over the product (90th percentile) and in its worst
small patch (a recoloured trim or print); last, the fine structure (edges) compared once aligned, because a second shot
of one pose (a model standing the same way in another shirt) aligns as a whole but not edge for edge. The duplicate
audit's check of every candidate pair: the embedding and the perceptual hash propose, this decides."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

SIDE = 256  # photos are compared at this size on their long side (keypoints), colours at a sixth of it
KEYPOINTS = 500
MIN_INLIERS = 20  # keypoint matches one similarity transform explains (two unrelated photos: a handful)
MAX_COLOUR = 10.0  # CIE Lab distance, 90th percentile over the product after the tone fit (8-15 tried on seeds 0-2)
MAX_PATCH = 12.5  # CIE Lab distance a 3x3 patch of the product keeps at half size (planted copies: up to 12.2)
#   (coarser where one photo is a downscaled copy: at half the detail it holds)
BORDER_STEP = 64  # of 255: a retouch moves a backdrop less (a white balance of +-18 %: 46)
MIN_STRUCTURE = 0.80  # correlation of the two photos' edges (Laplacians) over the product once aligned, and
CLOSE_COLOUR = 5.0  # the colour distance under which edges that agree less are forgiven: a second shot of one pose is
#   off in both (white shirts on one model in the shared catalogue, stripes under a pixel wide: edges 0.55-0.67,
#   colour 7.3-9.5); a resampled copy in its edges alone (2,520 copies of six kinds, seeds 0-3 of the shared
#   catalogue and 4-6 of the sample: the 7 with edges under 0.85 keep colour 3.5 at most); the shared catalogue's 8
#   photos uploaded twice keep edges 0.90-0.98
TONE_BOUNDS = ([0.75] * 3 + [-0.3, -40.0], [1.33] * 3 + [0.3, 40.0])  # gains, share of grey, offset (of 255)


@dataclass(frozen=True)
class Shot:
    points: np.ndarray  # (k, 2) keypoint positions in `rgb`
    descriptors: np.ndarray | None  # (k, 32) uint8 ORB descriptors
    rgb: np.ndarray  # (h, w, 3) uint8, the photo resized to SIDE on its long side
    native: int  # the photo's own long side: how much detail `rgb` really holds


def shot(image: Image.Image) -> Shot:
    import cv2

    image = image.convert("RGB")
    scale = SIDE / max(image.size)  # every photo at one size, up or down: a halved copy keeps its keypoints
    rgb = np.asarray(image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                                  Image.LANCZOS))
    keypoints, descriptors = cv2.ORB_create(nfeatures=KEYPOINTS).detectAndCompute(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return Shot(np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors, rgb, max(image.size))


@dataclass(frozen=True)
class Agreement:
    inliers: int  # keypoint matches one similarity transform explains (0: no transform found)
    colour: float  # 90th percentile of the Lab distance over the product once aligned (inf: not compared)
    patch: float = 0.0  # the largest Lab distance a small patch of the product keeps throughout (a recoloured part)
    structure: float = 1.0  # correlation of the photos' edges over the product once aligned (another shot: lower;
    #   measured only where it decides: colours within the limits, not close)

    @property
    def same_shot(self) -> bool:
        return self.inliers >= MIN_INLIERS and self.colour <= MAX_COLOUR and self.patch <= MAX_PATCH \
            and (self.structure >= MIN_STRUCTURE or self.colour <= CLOSE_COLOUR)


def _reduced(a: np.ndarray, b_on_a: np.ndarray, inside: np.ndarray, corner_b: np.ndarray, div: int):
    """Both photos at 1/div size as float RGB, where b covers a, and the product: what differs from the backdrop in
    both photos (each photo's own corner colour), so a copy's added border or re-toned backdrop is not compared."""
    import cv2

    h, w = a.shape[:2]
    small = (max(1, w // div), max(1, h // div))
    pa, pb = (cv2.resize(x, small, interpolation=cv2.INTER_AREA).astype(np.float32) for x in (a, b_on_a))
    inside = cv2.resize(inside.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0
    in_a = np.abs(pa - pa[0, 0]).max(2) > 24
    in_b = np.abs(pb - corner_b).max(2) > 24
    product = inside & in_a & in_b
    return pa, pb, inside, in_a == in_b, product if product.sum() >= 20 else inside


def _tone_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Coefficients of one tone change taking x's pixels (k, 3) to y's, fitted in RGB where retouches are linear: a
    gain per channel (brightness, contrast, white balance), a share of grey (saturation), one offset for all channels.
    Bounded (TONE_BOUNDS) so the fit cannot wash both photos to grey, which would make black and navy one colour;
    solved on the 5x5 normal equations, whatever the number of pixels."""
    from scipy.optimize import lsq_linear

    grey = x.mean(1, keepdims=True)
    design = np.concatenate([np.stack([np.diag(v) for v in x]), np.repeat(grey[:, None], 3, 1),
                             np.ones((len(x), 3, 1))], axis=2).reshape(-1, 5).astype(np.float64)
    normal = design.T @ design + 1e-6 * np.eye(5)
    root = np.linalg.cholesky(normal)  # |D c - y|^2 = |root^T c - root^-1 D^T y|^2 + a constant
    return lsq_linear(root.T, np.linalg.solve(root, design.T @ y.reshape(-1)), bounds=TONE_BOUNDS).x


def _lab_distance(pa: np.ndarray, pb: np.ndarray, coef: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    fitted = pb * coef[:3] + coef[3] * pb.mean(2, keepdims=True) + coef[4]
    return np.linalg.norm(rgb2lab(np.clip(fitted, 0, 255) / 255.0) - rgb2lab(pa / 255.0), axis=2)


def agreement(a: Shot, b: Shot) -> Agreement:
    import cv2

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
    if inliers < MIN_INLIERS:  # not one shot whatever the colours: skip comparing them
        return Agreement(inliers, float("inf"))
    # a tone change runs from the original to the copy (a copy's clipped highlights cannot be toned back): both ways
    # a downscaled copy holds less detail: the patches are measured at half the detail the coarser photo holds, so the
    # sharper one's edges are not taken for a recolour
    div = max(2, round(2 * max(a.native, b.native) / min(a.native, b.native)))
    found = Agreement(inliers, *_colours(a.rgb, b.rgb, transform, div))
    if not found.same_shot:
        back = Agreement(inliers, *_colours(b.rgb, a.rgb, cv2.invertAffineTransform(transform), div))
        found = min(found, back, key=lambda g: max(g.colour / MAX_COLOUR, g.patch / MAX_PATCH))
    if CLOSE_COLOUR < found.colour <= MAX_COLOUR and found.patch <= MAX_PATCH:  # colours pass, not close: edges?
        found = replace(found, structure=_structure(a, b, transform, div))
    return found


def _structure(a: Shot, b: Shot, transform: np.ndarray, div: int) -> float:
    """Correlation of the two photos' Laplacians over the product (what differs from either photo's backdrop), b
    aligned on a by `transform` or by its ECC refinement (`cv2.findTransformECC`, affine), whichever agrees better,
    both at 1/div size: the half detail the coarser photo holds. A copy agrees edge for edge; a second shot of the
    same pose aligns as a whole, its edges a pixel or two apart, and its colours differ a little too (see
    MIN_STRUCTURE)."""
    import cv2

    h, w = a.rgb.shape[:2]
    grey_a, grey_b = (cv2.cvtColor(x.rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    candidates = [transform.astype(np.float32)]
    try:
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
        candidates.append(cv2.findTransformECC(grey_a, grey_b, transform.astype(np.float32).copy(),
                                               cv2.MOTION_AFFINE, criteria, None, 3)[1])
    except cv2.error:  # ECC did not converge: the keypoints' transform alone
        pass
    small = (max(1, w // div), max(1, h // div))
    area = cv2.INTER_AREA
    ra = cv2.resize(a.rgb, small, interpolation=area).astype(np.float32)
    best, warp = -1.0, cv2.WARP_INVERSE_MAP
    for t in candidates:
        b_on_a = cv2.warpAffine(b.rgb, t, (w, h), flags=warp | area)
        covered = cv2.warpAffine(np.full(b.rgb.shape[:2], 255, np.uint8), t, (w, h), flags=warp)
        covered = cv2.erode((cv2.resize(covered, small, interpolation=cv2.INTER_NEAREST) > 0).astype(np.uint8),
                            np.ones((3, 3), np.uint8)) > 0
        rb = cv2.resize(b_on_a, small, interpolation=area).astype(np.float32)
        # the product in both photos (not a border one of them added across the other's product)
        inside = covered & (np.abs(ra - ra[0, 0]).max(2) > 24) & (np.abs(rb - b.rgb[0, 0].astype(np.float32)).max(2) > 24)
        if inside.sum() < 20:
            continue
        edges_a, edges_b = (cv2.Laplacian(cv2.cvtColor(x.astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32),
                                          cv2.CV_32F)[inside] for x in (ra, rb))
        if edges_a.std() > 0 and edges_b.std() > 0:
            best = max(best, float(np.corrcoef(edges_a, edges_b)[0, 1]))
    return best if best > -1.0 else 1.0  # nothing to compare (a blank product): the colours decide


def _colours(a: np.ndarray, b: np.ndarray, transform: np.ndarray, div: int) -> tuple[float, float]:
    """(colour, patch) of photo b toned to photo a once `transform` (a's points onto b's) aligns them, the tone fitted
    and the patches measured at 1/div size; inf when b mostly falls outside a."""
    import cv2

    h, w = a.shape[:2]
    warp = cv2.WARP_INVERSE_MAP  # b's pixels in a's frame: transform maps a's points onto b's
    b_on_a = cv2.warpAffine(b, transform, (w, h), flags=warp | cv2.INTER_AREA)
    covered = cv2.warpAffine(np.full(b.shape[:2], 255, np.uint8), transform, (w, h), flags=warp) > 0
    corner = b[0, 0].astype(np.float32)
    pa, pb, inside, _, product = _reduced(a, b_on_a, covered, corner, 6)
    if inside.sum() < 0.5 * inside.size:  # the transform maps b mostly outside a: not one shot
        return float("inf"), float("inf")
    # the tone change is fitted over the product and the backdrop both photos share (not a border one of them added):
    # a retouch or a white balance moves the backdrop with the product; a recolour of the product does not, so it
    # stays in the residual
    ha, hb, h_inside, h_agree, h_product = _reduced(a, b_on_a, covered, corner, div)
    # (a pixel that changed by more than BORDER_STEP in a channel is not what a retouch does, but one photo's added
    # border over the other's backdrop or a recoloured part: left out of the fit, measured below)
    fit = h_inside & h_agree & (np.abs(ha - hb).max(2) <= BORDER_STEP)
    if fit.sum() < 20:
        fit = h_inside
    coef = _tone_fit(hb[fit].reshape(-1, 3), ha[fit].reshape(-1, 3))
    colour = float(np.percentile(_lab_distance(pa, pb, coef)[product], 90))
    # a recoloured part too thin for the 90th percentile (a waistband, a print, a shoe's accents): the distance that a
    # 3x3 patch at half size (about 2 % of the photo across) keeps throughout, away from the edge b covers
    edge_free = cv2.erode(h_inside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    distance = np.where(edge_free & h_product, _lab_distance(ha, hb, coef), 0).astype(np.float32)
    patch = float(cv2.erode(distance, np.ones((3, 3), np.uint8)).max())
    return colour, patch
