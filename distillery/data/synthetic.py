"""A deterministic synthetic local-services marketplace (the embedded default data).

In the spirit of Meituan's query–service search: services (restaurants, hair salons, spas, clinics,
gyms, car washes…) with a category, attributes, a district and a price; queries that combine a
category intent with optional attribute, place and price intents.  The graded label follows from how
the service meets each intent:

- **Exact**: right category (or the named sub-type) and every attribute, place and price intent met;
- **Partial**: right category but at least one attribute/place/price intent missed, or a sibling
  category that could serve the need (a massage parlour for a spa query);
- **Irrelevant**: any other category.

A configurable share of labels is then flipped at random (annotator noise).  Same ``n`` and ``seed`` →
the same pairs, byte for byte.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from distillery.data.schema import Pair

CATEGORIES: dict[str, dict[str, list[str]]] = {
    "restaurant": {
        "types": ["sichuan", "cantonese", "hotpot", "sushi", "pizza", "bbq", "vegetarian", "dumpling"],
        "attrs": ["private rooms", "delivery", "open late", "kid friendly", "outdoor seating", "halal"],
        "words": ["Kitchen", "House", "Bistro", "Garden", "Diner", "Table"],
    },
    "hair salon": {
        "types": ["haircut", "hair coloring", "perm", "barber", "keratin treatment"],
        "attrs": ["walk-ins welcome", "women only", "kids cuts", "online booking", "open sunday"],
        "words": ["Studio", "Salon", "Cuts", "Hair Lab", "Styling"],
    },
    "spa": {
        "types": ["thai massage", "hot stone", "foot spa", "facial", "sauna"],
        "attrs": ["couples room", "open late", "private rooms", "free parking", "women only"],
        "words": ["Spa", "Wellness", "Retreat", "Oasis"],
    },
    "massage parlor": {
        "types": ["foot massage", "tuina", "deep tissue", "shoulder massage"],
        "attrs": ["open late", "walk-ins welcome", "free parking", "online booking"],
        "words": ["Massage", "Bodywork", "Relax Center"],
    },
    "dental clinic": {
        "types": ["teeth cleaning", "orthodontics", "dental implant", "teeth whitening", "pediatric dentist"],
        "attrs": ["insurance accepted", "weekend hours", "english speaking", "emergency care"],
        "words": ["Dental", "Smile Clinic", "Dentistry"],
    },
    "gym": {
        "types": ["yoga", "boxing", "crossfit", "swimming pool", "pilates"],
        "attrs": ["24 hours", "personal trainer", "women only", "free trial", "showers"],
        "words": ["Fitness", "Gym", "Athletic Club", "Studio"],
    },
    "car wash": {
        "types": ["hand wash", "detailing", "ceramic coating", "interior cleaning"],
        "attrs": ["open sunday", "pickup service", "membership", "24 hours"],
        "words": ["Auto Spa", "Car Care", "Wash"],
    },
    "pet grooming": {
        "types": ["dog grooming", "cat grooming", "pet bath", "nail trimming"],
        "attrs": ["pickup service", "online booking", "open sunday"],
        "words": ["Pet Salon", "Paws", "Grooming"],
    },
}
# Sibling categories that can partly serve each other's need.
SIBLINGS = {
    frozenset({"spa", "massage parlor"}),
    frozenset({"hair salon", "pet grooming"}),
}
DISTRICTS = ["Chaoyang", "Haidian", "Dongcheng", "Xicheng", "Wangjing", "Sanlitun", "Guomao", "Zhongguancun"]
NAME_STEMS = ["Golden", "Lucky", "Jade", "Sunny", "Blue Lotus", "Happy", "Red Lantern", "Silver Moon",
              "Green Leaf", "Pearl", "Harbor", "Maple", "Star", "Old Town", "Urban", "Bamboo"]
PRICE_LEVELS = {"cheap": (0, 60), "mid-range": (60, 200), "premium": (200, 1000)}
LABELS = ("Exact", "Partial", "Irrelevant")


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    category: str
    type: str
    attrs: tuple[str, ...]
    district: str
    price: int


@dataclass(frozen=True)
class Intent:
    """What a query asks for; ``None`` means the query does not constrain that aspect."""

    category: str
    type: str | None
    attr: str | None
    district: str | None
    price_level: str | None


def _make_service(rng: random.Random, idx: int) -> Service:
    category = rng.choice(sorted(CATEGORIES))
    spec = CATEGORIES[category]
    kind = rng.choice(spec["types"])
    attrs = tuple(sorted(rng.sample(spec["attrs"], k=rng.randint(1, min(3, len(spec["attrs"]))))))
    level = rng.choice(sorted(PRICE_LEVELS))
    lo, hi = PRICE_LEVELS[level]
    name = f"{rng.choice(NAME_STEMS)} {kind.title()} {rng.choice(spec['words'])}"
    return Service(f"svc{idx:05d}", name, category, kind, attrs, rng.choice(DISTRICTS), rng.randrange(lo, hi))


def _price_level(price: int) -> str:
    return next(k for k, (lo, hi) in PRICE_LEVELS.items() if lo <= price < hi)


def grade(intent: Intent, svc: Service) -> str:
    """The noise-free label of a service for a query intent (see the module docstring)."""
    if svc.category != intent.category:
        return "Partial" if frozenset({svc.category, intent.category}) in SIBLINGS else "Irrelevant"
    misses = [
        intent.type is not None and svc.type != intent.type,
        intent.attr is not None and intent.attr not in svc.attrs,
        intent.district is not None and svc.district != intent.district,
        intent.price_level is not None and _price_level(svc.price) != intent.price_level,
    ]
    return "Partial" if any(misses) else "Exact"


def _make_intent(rng: random.Random) -> Intent:
    category = rng.choice(sorted(CATEGORIES))
    spec = CATEGORIES[category]
    return Intent(
        category,
        rng.choice(spec["types"]) if rng.random() < 0.6 else None,
        rng.choice(spec["attrs"]) if rng.random() < 0.45 else None,
        rng.choice(DISTRICTS) if rng.random() < 0.5 else None,
        rng.choice(sorted(PRICE_LEVELS)) if rng.random() < 0.25 else None,
    )


def query_text(intent: Intent, rng: random.Random) -> str:
    head = intent.type if intent.type else intent.category
    if intent.type and rng.random() < 0.4:
        head = f"{intent.type} {intent.category}"
    parts = [intent.price_level, head] if intent.price_level else [head]
    if intent.attr:
        parts.append(rng.choice(["with", ""]) + " " + intent.attr)
    if intent.district:
        parts.append(rng.choice(["near", "in", ""]) + " " + intent.district.lower())
    return " ".join(" ".join(parts).split())


def _service_fields(svc: Service) -> dict[str, str]:
    return {
        "title": svc.name,
        "brand": svc.category,
        "attributes": f"{svc.type}; {', '.join(svc.attrs)}; {svc.district}; from ¥{svc.price}",
        "description": (
            f"{svc.name} is a {_price_level(svc.price)} {svc.category} in {svc.district} offering "
            f"{svc.type}. Features: {', '.join(svc.attrs)}. Average spend ¥{svc.price}."
        ),
    }


def _matches(intent: Intent, svc: Service) -> int:
    """How many of the query's intents a service meets (the retrieval score of the log simulator)."""
    return sum([
        svc.category == intent.category,
        intent.type is not None and svc.type == intent.type,
        intent.attr is not None and intent.attr in svc.attrs,
        intent.district is not None and svc.district == intent.district,
        intent.price_level is not None and _price_level(svc.price) == intent.price_level,
    ])


def _candidates(rng: random.Random, intent: Intent, by_cat: dict[str, list[Service]],
                services: list[Service], k: int) -> list[Service]:
    """A retrieval-like candidate list: the best-matching services of the asked category first,
    then others of that category, then a few off-category results (as a real search log has)."""
    same = sorted(by_cat[intent.category], key=lambda s: (-_matches(intent, s), rng.random()))
    n_top = max(1, int(k * 0.35))
    out = same[:n_top]
    rest = same[n_top:]
    out += rng.sample(rest, k=min(len(rest), max(0, int(k * 0.35))))
    while len(out) < k:
        out.append(rng.choice(services))
    seen: set[str] = set()
    return [s for s in out if not (s.id in seen or seen.add(s.id))]  # type: ignore[func-returns-value]


def generate(n: int, seed: int = 0, noise: float = 0.05, pairs_per_query: int = 12) -> list[Pair]:
    """``n`` labelled pairs of the synthetic marketplace (deterministic in ``n``, ``seed``, ``noise``)."""
    if n <= 0:
        raise ValueError(f"synthetic: n={n}: must be a positive number of pairs")
    rng = random.Random(seed)
    services = [_make_service(rng, i) for i in range(max(60, n // 4))]
    by_cat: dict[str, list[Service]] = {c: [] for c in CATEGORIES}
    for s in services:
        by_cat[s.category].append(s)
    for cat, members in by_cat.items():  # every category must be retrievable
        if not members:
            members.append(Service(f"svc-{cat}", f"{cat.title()} Center", cat, CATEGORIES[cat]["types"][0],
                                   (CATEGORIES[cat]["attrs"][0],), DISTRICTS[0], 100))
    pairs: list[Pair] = []
    q = 0
    while len(pairs) < n:
        intent = _make_intent(rng)
        text = query_text(intent, rng)
        qid = f"q{seed:03d}-{q:05d}"
        q += 1
        for svc in _candidates(rng, intent, by_cat, services, pairs_per_query):
            truth = grade(intent, svc)
            label = truth
            if rng.random() < noise:
                label = rng.choice([x for x in LABELS if x != truth])
            pairs.append(Pair(
                query_id=qid, query=text, item_id=svc.id, label=label, label_source="human",
                meta={"true_label": truth, "intent": dataclasses.asdict(intent),
                      "service": dataclasses.asdict(svc)},
                **_service_fields(svc),
            ))
            if len(pairs) == n:
                break
    return pairs
