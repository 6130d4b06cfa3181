"""Deterministic benchmark data: labelled topic sentences (there is no text
corpus offline) and class folders of the image quickstart's demo drawings.

Sentences come from templates whose content slots are filled from the topic's
word lists, but each slot may instead take a word from another topic or a
neutral word. Some sentences thus carry as many clues for another topic as
for their own, so a classifier cannot reach 100% at once, and the same seed
always gives the same file.

Run: python benchmarks/bench_data.py OUT.csv COUNT [SEED]   (one topic CSV)
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from ftk import testing

TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "noun": "team coach striker goalkeeper league match season referee stadium tournament "
                "defender captain final title fans".split(),
        "verb": "won lost scored defended trained tackled celebrated qualified".split(),
        "adjective": "unbeaten injured athletic competitive tactical".split(),
    },
    "cooking": {
        "noun": "recipe oven sauce dough chef kitchen soup garlic butter pastry spices dinner "
                "flour salad dessert".split(),
        "verb": "baked simmered seasoned roasted whisked tasted chopped served".split(),
        "adjective": "crispy savoury creamy spicy tender".split(),
    },
    "technology": {
        "noun": "software laptop network server database startup processor battery app browser "
                "update algorithm robot chip cloud".split(),
        "verb": "installed debugged launched upgraded crashed encrypted downloaded coded".split(),
        "adjective": "wireless digital automated faster open-source".split(),
    },
    "travel": {
        "noun": "flight hotel passport beach museum tourist luggage train island itinerary "
                "guide harbour airport cruise village".split(),
        "verb": "booked visited explored departed landed wandered packed toured".split(),
        "adjective": "scenic remote crowded coastal historic".split(),
    },
    "finance": {
        "noun": "bank investor market stock budget loan pension inflation shares profit tax "
                "mortgage economy fund interest".split(),
        "verb": "invested borrowed saved traded audited lent repaid forecast".split(),
        "adjective": "profitable volatile fiscal quarterly risky".split(),
    },
}

NEUTRAL = {
    "noun": "people group report morning weekend city family result plan week story friend "
            "meeting photo problem".split(),
    "verb": "discussed noticed described mentioned prepared changed reviewed shared".split(),
    "adjective": "new busy small important unusual".split(),
}

SUBJECTS = "Our neighbour|The manager|My sister|A local reporter|Everyone|The new team|" \
           "Their friend|The committee|Our teacher|A small group".split("|")
TIMES = "last week|on Monday|yesterday|this morning|after lunch|over the weekend|" \
        "before the holidays|again|in the end|at last".split("|")

# {word} slots are filled per sentence; each is a content slot.
TEMPLATES = [
    "{subject} {verb} the {adjective} {noun} {time}.",
    "The {noun} was {adjective}, so {subject_lower} {verb} the {noun} {time}.",
    "{subject} said the {noun} and the {noun} were {adjective}.",
    "Nobody expected the {adjective} {noun} to be {verb} {time}.",
    "{subject} {verb} a {noun} near the {noun} {time}.",
    "Is the {noun} really {adjective}? {subject} {verb} it {time}.",
    "After the {noun}, {subject_lower} {verb} the {adjective} {noun}.",
    "{subject} wrote about a {adjective} {noun} and a {noun}.",
]

OWN_TOPIC, OTHER_TOPIC = 0.6, 0.25  # chances per content slot; the rest is neutral


def sentence(topic: str, rng: random.Random) -> str:
    """One sentence whose slots mostly, but not only, come from `topic`."""
    template = rng.choice(TEMPLATES)
    others = [name for name in TOPICS if name != topic]

    def word(kind: str) -> str:
        draw = rng.random()
        if draw < OWN_TOPIC:
            source = TOPICS[topic]
        elif draw < OWN_TOPIC + OTHER_TOPIC:
            source = TOPICS[rng.choice(others)]
        else:
            source = NEUTRAL
        return rng.choice(source[kind])

    pieces = template.split("{")
    text = pieces[0]
    for piece in pieces[1:]:
        slot, rest = piece.split("}", 1)
        if slot == "subject":
            value = rng.choice(SUBJECTS)
        elif slot == "subject_lower":
            value = rng.choice(SUBJECTS)
            value = value[0].lower() + value[1:]
        elif slot == "time":
            value = rng.choice(TIMES)
        else:
            value = word(slot)
        text += value + rest
    return text


def write_topic_csv(path: str | Path, count: int, seed: int) -> Path:
    """Write `count` rows (`text,label`), classes in turn, shuffled, to `path`."""
    rng = random.Random(seed)
    names = sorted(TOPICS)
    rows = [(sentence(names[index % len(names)], rng), names[index % len(names)])
            for index in range(count)]
    rng.shuffle(rows)
    return testing.write_text_csv(path, rows)


def write_text_splits(folder: Path, sizes: dict[str, int]) -> dict[str, Path]:
    """One topic CSV per split (`{split: rows}`), one seed per split."""
    return {split: write_topic_csv(folder / f"{split}.csv", count, seed)
            for seed, (split, count) in enumerate(sizes.items())}


def write_image_splits(folder: Path, sizes: dict[str, int]) -> dict[str, Path]:
    """A folder per split (`{split: images}`) with a subfolder per demo class,
    drawn by the image quickstart's own code, one seed per split."""
    import numpy as np
    from ftk.plugins.image_classification.demo import CLASSES, draw_example

    paths = {}
    for seed, (split, count) in enumerate(sizes.items()):
        rng = np.random.default_rng(1000 + seed)
        for name in CLASSES:
            target = folder / split / name
            target.mkdir(parents=True, exist_ok=True)
            for index in range(count // len(CLASSES)):
                draw_example(name, rng).save(target / f"{name}_{index:05d}.png")
        paths[split] = folder / split
    return paths


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("Usage: python benchmarks/bench_data.py OUT.csv COUNT [SEED]")
    write_topic_csv(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) == 4 else 0)
