"""The TFLite form of BERT input (FastBertTokenizer, packed with builtin ops)
gives the ids training gave (BertTokenizer through ftk's packing)."""

from __future__ import annotations

import random

import numpy as np
import pytest

# Latin with accents, ligatures, German sharp s, Greek, Cyrillic, CJK, Hangul,
# Thai, Arabic, emoji, digits, punctuation, control and zero-width characters.
ALPHABET = ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
            "éèêëÉàâäÀçÇñÑöÖüÜßŒœﬁ" "αβγΔΩ" "привет" "中文字漢日本語" "한국어" "ไทย" "مرحبا"
            "😀👍" ".,;:!?'\"()[]{}-_/@#$%&*+=<>|~`^"
            "\t\n\u00a0\u200b\u3000")
WORDS = ["the", "film", "great", "goal", "café", "naïve", "über", "straße", "東京", "日本",
         "[CLS]", "hello", "world", "don't", "e-mail", "co-op", "x" * 120]


def vocabulary() -> list[str]:
    """Special tokens, whole words, and every character alone and as a suffix,
    lower-cased and stripped as an uncased model's vocab is."""
    import unicodedata

    def plain(text: str) -> str:
        decomposed = unicodedata.normalize("NFD", text.lower())
        return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")

    pieces = {plain(c) for c in ALPHABET if not c.isspace()} | {c for c in ALPHABET}
    words = {plain(w) for w in WORDS} | {"film", "great"}
    tokens = sorted(p for p in pieces | words if p and not p.isspace())
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *tokens, *(f"##{t}" for t in tokens)]


UNICODE_SPACES = "\u00a0\u3000"


def texts(count: int, seed: int = 0, unicode_spaces: bool = True) -> list[str]:
    rng = random.Random(seed)
    alphabet = ALPHABET if unicode_spaces else ALPHABET.translate({ord(c): None for c in UNICODE_SPACES})
    drawn = ["", " ", "A", "Café Über STRASSE", "東京は日本の首都です", "don't stop", "\u200b",
             "x" * 300, " ".join(WORDS), "[CLS] [SEP]", "a\tb\nc", "ＦＵＬＬ width"]
    while len(drawn) < count:
        parts = [rng.choice(WORDS) if rng.random() < 0.4 else
                 "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))
                 for _ in range(rng.randint(1, 12))]
        drawn.append(" ".join(parts))
    return drawn


@pytest.mark.parametrize("lower_case", [True, False])
def test_fast_input_gives_the_ids_training_gave(tmp_path, lower_case):
    import tensorflow as tf

    from ftk.text.preprocessors import VocabBertPreprocessor

    vocab = vocabulary()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    training = VocabBertPreprocessor(str(tmp_path / "vocab.txt"), lower_case, seq_length=48)
    fast = training.extra_inputs()["tflite"][1]
    # Cased, BertTokenizer keeps spaces other than ASCII ones inside words
    # (see the next test); uncased, both split there.
    batch = tf.constant(texts(600, unicode_spaces=lower_case))
    expected = training(batch)  # trimmed to the longest text, rounded up
    given = fast(batch)
    width = expected["input_word_ids"].shape[1]
    for key in ("input_word_ids", "input_mask", "input_type_ids"):
        np.testing.assert_array_equal(given[key][:, :width].numpy(), expected[key].numpy(), key)
        assert not given[key][:, width:].numpy().any()  # only padding past the longest
    unknown = vocab.index("[UNK]")
    assert (expected["input_word_ids"].numpy() == unknown).any()  # the test meets unknowns


@pytest.mark.parametrize("lower_case, text", [(True, "hello\u2028world"),
                                               (False, "hello\u00a0world")])
def test_the_known_differences_are_spaces(tmp_path, lower_case, text):
    """U+2028 and U+2029 (uncased and cased), and for cased vocabularies other
    Unicode spaces (U+00A0, U+3000), separate words for FastBertTokenizer;
    BertTokenizer keeps them inside a word, which then is unknown."""
    import tensorflow as tf

    from ftk.text.preprocessors import VocabBertPreprocessor

    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary()) + "\n", encoding="utf-8")
    training = VocabBertPreprocessor(str(tmp_path / "vocab.txt"), lower_case, seq_length=16)
    fast = training.extra_inputs()["tflite"][1]
    batch = tf.constant([text])
    assert training(batch)["input_mask"].numpy().sum() == 3  # [CLS] [UNK] [SEP]
    assert fast(batch)["input_mask"].numpy().sum() == 4  # [CLS] hello world [SEP]
