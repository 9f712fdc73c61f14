"""A CLIP vocabulary written locally: one token for every word of the shapes world, and
the byte-level alphabet for everything else.

CLIP's tokenizer splits a prompt into words and rebuilds each from its characters by
applying merges in rank order. The merges here are learnt the way byte-pair encoding
learns them (the commonest adjacent pair first, ties broken by order) over the world's
words until each is one symbol; replaying merges learnt that way rebuilds every word it
saw exactly, which hand-written merges would not guarantee ("triangle" contains "ri",
the start of "ring"). A word from outside the world still tokenizes, letter by letter.
"""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

from strata.core.models.tiny import byte_level_alphabet

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def learn_merges(words: tuple[str, ...]) -> list[tuple[str, str]]:
    """Byte-pair merges that turn each of `words` into a single symbol."""
    spelled = {word: [*word[:-1], word[-1] + "</w>"] for word in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for symbols in spelled.values()
                        for pair in pairwise(symbols))
        if not pairs:
            return merges
        # Sorting first makes the choice among equally common pairs reproducible.
        best = max(sorted(pairs), key=lambda pair: pairs[pair])
        merges.append(best)
        for word, symbols in spelled.items():
            spelled[word] = _merge(symbols, best)


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    merged: list[str] = []
    index = 0
    while index < len(symbols):
        if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == pair:
            merged.append(symbols[index] + symbols[index + 1])
            index += 2
        else:
            merged.append(symbols[index])
            index += 1
    return merged


def write_vocabulary(folder: Path, words: tuple[str, ...]) -> None:
    """Write vocab.json and merges.txt for a CLIPTokenizer into `folder`."""
    alphabet = sorted(byte_level_alphabet())
    merges = learn_merges(words)
    tokens = [*alphabet, *(symbol + "</w>" for symbol in alphabet)]
    known = set(tokens)
    for left, right in merges:
        if left + right not in known:
            known.add(left + right)
            tokens.append(left + right)
    tokens += SPECIAL_TOKENS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(
        json.dumps({token: index for index, token in enumerate(tokens)}, ensure_ascii=False),
        encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges),
        encoding="utf-8")
