"""Encoders and fusion on real public data (issue #3, "Must show" 1 and 2).

fashion-products: cosine k-NN (k=5, similarity-weighted) predicts ``articleType`` under
stratified 5-fold CV over the types with at least 5 items, from image embeddings, from text
embeddings of ``productDisplayName``, and from their fusion; every representation is fitted on
the training folds only (centring means, fusion weights). amazon-scientific-text and
amazon-gift-cards: text nearest neighbours are topically related (hand-checked pairs) and share
a category far more often than random pairs do.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from shopsight.features.fusion import ConcatFusion
from shopsight.features.image import ImageEncoder
from shopsight.features.text import TextEncoder

pytestmark = [pytest.mark.shared, pytest.mark.slow]

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
K = 5


def _need(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"../shared/data/{'/'.join(parts)} not present")
    return p


def read_styles(path: Path) -> list[dict[str, str]]:
    """styles.csv: 10 columns, but product names may contain commas (no quoting)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    assert header[-1] == "productDisplayName" and len(header) == 10
    rows = []
    for line in lines[1:]:
        parts = line.split(",")
        if len(parts) < 10 or not parts[0].strip().isdigit():
            continue  # a broken line would be visible in the row count below
        rows.append(
            {**dict(zip(header[:9], parts[:9], strict=True)), header[9]: ",".join(parts[9:])}
        )
    return rows


@pytest.fixture(scope="module")
def fashion(text_encoder: TextEncoder, image_encoder: ImageEncoder) -> dict:
    root = _need("fashion-products")
    rows = read_styles(root / "styles.csv")
    assert len(rows) == 1099
    images = image_encoder.encode([root / "images" / f"{r['id']}.jpg" for r in rows])
    assert images.stats["encoded"] == 1099, images.issues
    texts = text_encoder.encode([r["productDisplayName"] for r in rows])
    assert texts.mask.all()
    y = np.array([r["articleType"] for r in rows])
    counts = Counter(y)
    keep = np.array([counts[t] >= 5 for t in y])
    return {"image": images.vectors[keep], "text": texts.vectors[keep], "y": y[keep]}


def _cv(fashion: dict, modalities: list[str], weights: str | None = None) -> tuple[float, float]:
    """Accuracy and balanced accuracy of cosine k-NN over stratified 5-fold CV."""
    y = fashion["y"]
    pred = np.empty_like(y)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(y, y):
        fusion = ConcatFusion(weights=weights, k=K).fit(
            {m: (fashion[m][train], None) for m in modalities}, y[train]
        )
        xtr = fusion.transform({m: (fashion[m][train], None) for m in modalities}).vectors
        xte = fusion.transform({m: (fashion[m][test], None) for m in modalities}).vectors
        knn = KNeighborsClassifier(K, metric="cosine", weights="distance", algorithm="brute")
        pred[test] = knn.fit(xtr, y[train]).predict(xte)
    return float(accuracy_score(y, pred)), float(balanced_accuracy_score(y, pred))


def test_fashion_article_type_knn(fashion: dict) -> None:
    y = fashion["y"]
    assert len(set(y)) == 22 and len(y) == 1088  # the 22 types with >= 5 items
    image = _cv(fashion, ["image"])
    text = _cv(fashion, ["text"])
    fused = _cv(fashion, ["image", "text"], weights="auto")
    rng = np.random.default_rng(0)
    random = _cv({"random": rng.normal(size=(len(y), 1280)), "y": y}, ["random"])
    print(
        f"\nfashion articleType, cosine {K}-NN, stratified 5-fold ({len(y)} items, 22 types):"
        f"\n  image  acc {image[0]:.3f}  balanced {image[1]:.3f}"
        f"\n  text   acc {text[0]:.3f}  balanced {text[1]:.3f}"
        f"\n  fused  acc {fused[0]:.3f}  balanced {fused[1]:.3f}"
        f"\n  random acc {random[0]:.3f}  balanced {random[1]:.3f}"
    )
    assert image[0] >= 0.80 and image[1] >= 0.65, image
    assert text[0] >= 0.85 and text[1] >= 0.70, text
    assert fused[1] >= max(image[1], text[1]) + 0.03, (fused, image, text)
    assert fused[0] > max(image[0], text[0])
    assert random[1] < 0.10, random


def test_fashion_fusion_survives_missing_images(fashion: dict) -> None:
    """With a third of the photos missing, fusion still beats text alone on the rest."""
    y = fashion["y"]
    rng = np.random.default_rng(1)
    has_image = rng.random(len(y)) > 1 / 3
    fusion = ConcatFusion(weights={"image": 0.5, "text": 0.5})
    out = fusion.fit(
        {"image": (fashion["image"], has_image), "text": (fashion["text"], None)}
    ).transform({"image": (fashion["image"], has_image), "text": (fashion["text"], None)})
    assert out.mask.all() and not out.modality_mask[:, 0][~has_image].any()
    assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    # Items without a photo are represented by their text alone (not by a zero image).
    text_only = ConcatFusion().fit({"text": (fashion["text"], None)})
    t = text_only.transform({"text": (fashion["text"], None)}).vectors
    nz = ~has_image
    assert np.allclose(out.vectors[nz][:, -384:], t[nz], atol=1e-5)


# -- text neighbours on Amazon catalogues ------------------------------------------------------
SCI_TOP = [
    "Abrasive & Finishing Products",
    "Additive Manufacturing Products",
    "Commercial Door Products",
    "Cutting Tools",
    "Fasteners",
    "Filtration",
    "Food Service Equipment & Supplies",
    "Hydraulics, Pneumatics & Plumbing",
    "Industrial Electrical",
    "Industrial Hardware",
    "Industrial Power & Hand Tools",
    "Janitorial & Sanitation Supplies",
    "Lab & Scientific Products",
    "Material Handling Products",
    "Occupational Health & Safety Products",
    "Packaging & Shipping Supplies",
    "Power Transmission Products",
    "Professional Dental Supplies",
    "Professional Medical Supplies",
    "Raw Materials",
    "Retail Store Fixtures & Equipment",
    "Robotics",
    "Science Education",
    "Tapes, Adhesives & Sealants",
    "Test, Measure & Inspect",
]

# (item, a topically related item, an unrelated item), checked by reading the titles.
SCI_PAIRS = [
    # PORTER-CABLE 80-grit sanding roll / the same roll in 120 grit / 3D-printer PLA filament
    ("B0000223SI", "B0000223SK", "B01CM9II3C"),
    # nylon flat washer / stainless steel flat washer / heat-shrink tubing kit
    ("B009OLNO2M", "B000FMYYT6", "B00OZSL8UE"),
    # URBEST heat-shrink tubing / Vktech heat-shrink tubing / Gorilla glue
    ("B00OZSL8UE", "B00EXLRW5S", "B0000223UV"),
    # Taulman nylon 3D filament / USAFilament ABS filament / flat washer
    ("B00BGMM8TW", "B00LKL2E0W", "B009OLNO2M"),
]
GIFT_PAIRS = [
    # Quiznos gift card / Which Wich (another sandwich chain) / Amazon "Thank You" print card
    ("B00MOWF1IS", "B0172YGY56", "B004KNWWP4"),
    # Smashburger / Burger King (burgers, another brand) / Amazon "Thank You" print card
    ("B00F2RZAC4", "B00F2RZMEA", "B004KNWWP4"),
    # Amazon print card "Birthday Dog" / "Birthday Cat" / Quiznos
    ("B0145WHNXA", "B0145WHTES", "B00MOWF1IS"),
    # Amazon print card "Thank You" / "Give Thanks" / Smashburger
    ("B004KNWWP4", "B00G4IVVVE", "B00F2RZAC4"),
]


def _neighbours(vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k], sims


def _agreement(labels: np.ndarray, nn: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """Share of 10-NN with the item's label, and the same for random pairs (sum of p^2)."""
    got = float((labels[nn[rows]] == labels[rows, None]).mean())
    p = np.array(list(Counter(labels[rows]).values()), dtype=float) / len(rows)
    return got, float((p**2).sum())


def _check_pairs(ids: list[str], vectors: np.ndarray, pairs: list[tuple[str, str, str]]) -> None:
    index = {iid: i for i, iid in enumerate(ids)}
    nn, sims = _neighbours(vectors)
    for a, b, c in pairs:
        ia, ib, ic = index[a], index[b], index[c]
        assert ib in nn[ia], f"{b} is not among the 10 nearest neighbours of {a}"
        rank_c = int((sims[ia] > sims[ia, ic]).sum())
        assert rank_c >= 100, f"unrelated {c} ranks {rank_c} for {a}"


def test_scientific_text_neighbours(text_encoder: TextEncoder) -> None:
    path = _need("amazon-scientific-text", "Scientific.text")
    ids, titles, cats = [], [], []
    longest_first = sorted(SCI_TOP, key=len, reverse=True)
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        iid, _, text = line.partition("\t")
        # "<title>. Industrial & Scientific <category path>. <brand>." -> embed the title only,
        # so agreeing on the category is not just reading it back from the text.
        title, _, rest = text.partition(" Industrial & Scientific ")
        ids.append(iid)
        titles.append(title.rstrip(". "))
        cats.append(next((c for c in longest_first if rest.startswith(c)), ""))
    assert len(ids) == 4385
    # A seeded sample keeps the test quick; the hand-checked items are always in it.
    rng = np.random.default_rng(0)
    wanted = {x for pair in SCI_PAIRS for x in pair}
    pick = sorted(set(rng.choice(len(ids), 1500, replace=False)) | {ids.index(w) for w in wanted})
    ids = [ids[i] for i in pick]
    labels = np.array([cats[i] for i in pick])
    vectors = text_encoder.encode([titles[i] for i in pick]).vectors
    _check_pairs(ids, vectors, SCI_PAIRS)
    nn, _ = _neighbours(vectors)
    got, random = _agreement(labels, nn, np.flatnonzero(labels != ""))
    print(f"\nscientific: 10-NN category agreement {got:.3f} vs random {random:.3f}")
    assert got >= 0.5 and got >= 5 * random


def test_gift_card_text_neighbours(text_encoder: TextEncoder) -> None:
    path = _need("amazon-gift-cards", "meta_Gift_Cards.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        meta = [json.loads(line) for line in f if line.strip()]
    assert len(meta) == 1547
    ids = [m["asin"] for m in meta]
    # Titles only: descriptions are long boilerplate ("redeemable at...") and slow to embed.
    vectors = text_encoder.encode([m.get("title") for m in meta]).vectors
    _check_pairs(ids, vectors, GIFT_PAIRS)
    nn, _ = _neighbours(vectors)
    # Almost everything is "Gift Cards"; the second category level splits off accessories
    # (holders, boxes). Their neighbours should be accessories far above the 2% base rate.
    sub = np.array(
        [(m.get("category") or ["", ""])[1:2] == ["Gift Card Accessories"] for m in meta]
    )
    acc_rate = float(sub[nn[sub]].mean())
    brand = np.array([(m.get("brand") or "").strip() for m in meta])
    got, random = _agreement(brand, nn, np.flatnonzero(brand != ""))
    print(
        f"\ngift cards: accessories' 10-NN that are accessories {acc_rate:.3f} "
        f"(base rate {sub.mean():.3f}); brand agreement {got:.3f} vs random {random:.3f}"
    )
    assert acc_rate >= 10 * sub.mean()
    assert got >= 5 * random
