"""Search the catalogue by words: "red casual shirt men" -> attribute values of the five heads (with synonyms) plus
words of the product names, ranked by the heads' probabilities; with a CLIP text tower, fused with the text ranking."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..config import HEADS, OTHER
from ..errors import VibeError

# words people type -> (head, catalogue values); plural and case are handled separately
SYNONYMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "navy": ("colour", ("Navy Blue",)), "sneakers": ("item_type", ("Sports Shoes", "Casual Shoes")),
    "sneaker": ("item_type", ("Sports Shoes", "Casual Shoes")), "trainers": ("item_type", ("Sports Shoes",)),
    "tee": ("item_type", ("Tshirts",)), "tees": ("item_type", ("Tshirts",)), "t-shirt": ("item_type", ("Tshirts",)),
    "t-shirts": ("item_type", ("Tshirts",)), "tshirt": ("item_type", ("Tshirts",)), "shoes": ("item_type", (
        "Casual Shoes", "Sports Shoes", "Formal Shoes")), "dress": ("item_type", ("Dresses",)), "jean": ("item_type", ("Jeans",)),
    "pants": ("item_type", ("Trousers", "Track Pants")), "trouser": ("item_type", ("Trousers",)),
    "bag": ("item_type", ("Handbags", "Backpacks", "Clutches")), "purse": ("item_type", ("Handbags", "Clutches", "Wallets")),
    "sunglass": ("item_type", ("Sunglasses",)), "shades": ("item_type", ("Sunglasses",)), "cap": ("item_type", ("Caps",)),
    "men": ("gender", ("Men",)), "mens": ("gender", ("Men",)), "man": ("gender", ("Men",)), "male": ("gender", ("Men",)),
    "gents": ("gender", ("Men",)), "women": ("gender", ("Women",)), "womens": ("gender", ("Women",)),
    "woman": ("gender", ("Women",)), "ladies": ("gender", ("Women",)), "female": ("gender", ("Women",)),
    "boy": ("gender", ("Boys",)), "girl": ("gender", ("Girls",)), "kids": ("gender", ("Boys", "Girls")),
    "grey": ("colour", ("Grey",)), "gray": ("colour", ("Grey",)), "golden": ("colour", ("Gold",)),
    "sport": ("style", ("Sports",)), "sporty": ("style", ("Sports",)), "office": ("style", ("Formal",)),
    "party": ("style", ("Party",)), "ethnic": ("style", ("Ethnic",)), "traditional": ("style", ("Ethnic",)),
    "autumn": ("season", ("Fall",)), "spring": ("season", ("Spring",)),
}
STOP = {"a", "an", "the", "for", "with", "and", "in", "of", "to", "on"}


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", word.lower())


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@dataclass
class Parsed:
    """What a query says: per head the catalogue values it asks for, and the words left for product names."""

    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)


def parse(query: str, vocabs: dict[str, list[str]]) -> Parsed:
    """Map the words of a query to the heads' values: whole values first, longest first ("sports shoes" before
    "shoes"), then synonyms, singular or plural alike; the rest are name words."""
    index: dict[str, tuple[str, str]] = {}
    for head in HEADS:
        for value in vocabs[head]:  # the catalogue's values (every label seen, rare ones too)
            if value != OTHER:
                key = " ".join(_singular(_norm(w)) for w in value.split())
                index.setdefault(key, (head, value))
    tokens = [_norm(w) for w in query.split() if _norm(w) and _norm(w) not in STOP]
    out = Parsed()
    i = 0
    while i < len(tokens):
        for n in (3, 2, 1):
            key = " ".join(_singular(t) for t in tokens[i:i + n])
            if len(tokens[i:i + n]) == n and key in index:
                head, value = index[key]
                out.attributes[head] = tuple(dict.fromkeys((*out.attributes.get(head, ()), value)))
                i += n
                break
        else:
            word = tokens[i]
            hit = SYNONYMS.get(word) or SYNONYMS.get(_singular(word))
            if hit and all(v in vocabs[hit[0]] for v in hit[1]):
                out.attributes[hit[0]] = tuple(dict.fromkeys((*out.attributes.get(hit[0], ()), *hit[1])))
            else:
                out.words.append(_singular(word))
            i += 1
    return out


LABEL_RELIABILITY = 0.9  # how often a catalogue label is taken to be right, as evidence next to the heads


def rank(probs: dict[str, np.ndarray], labels: dict[str, list], names: list[str], parsed: Parsed,
         vocabs: dict[str, list[str]], label_evidence: bool = True,
         name_hits: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """A score per catalogue item. For each attribute the query asks for: log p(one of the asked values) from the
    heads, which see the photo (an unlabelled or mislabelled item is still found), plus (with `label_evidence`) the
    catalogue label as evidence right 90 % of the time (log 0.9 when it is one of the asked values, log 0.1 when it is
    another, log 0.5 when missing). Then one point per query word found in the product name. Without label evidence
    the ranking comes from the photos and names alone: what a figure scored against the catalogue labels must use.
    `name_hits`: each query word's `in_names`, when the caller has them already."""
    if not parsed.attributes and not parsed.words:
        raise VibeError("Nothing to search for: type attributes (a colour, an item type, men/women, a usage) or words "
                        "of product names.")
    score = np.zeros(len(names), dtype=np.float64)
    for head, values in parsed.attributes.items():
        cols = [vocabs[head].index(v) for v in values if v in vocabs[head]]
        p = probs[head][:, cols].sum(1) if cols else np.full(len(names), 1e-6)
        score += np.log(np.clip(p, 1e-6, 1.0))
        if label_evidence:
            given = [0.5 if v is None else LABEL_RELIABILITY if v in values else 1 - LABEL_RELIABILITY for v in labels[head]]
            score += np.log(np.array(given))
    for word in parsed.words:
        score += name_hits[word] if name_hits is not None else in_names(word, names)
    return score


def in_names(word: str, names: list[str]) -> np.ndarray:
    """1.0 for each product name with a word starting with `word`, else 0.0."""
    pattern = re.compile(rf"\b{re.escape(word)}", re.IGNORECASE)
    return np.fromiter((1.0 if pattern.search(n) else 0.0 for n in names), dtype=np.float64, count=len(names))


def fuse(*rankings: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal rank fusion of several scores over the same items (higher is better): robust to their scales."""
    fused = np.zeros(len(rankings[0]))
    for scores in rankings:
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(1, len(order) + 1)
        fused += 1.0 / (k + ranks)
    return fused
