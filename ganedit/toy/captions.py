"""Captions of toy images, and the word-level tokenizer of the toy CLIP.

A caption names some of an image's attributes and leaves the rest open: "a red star on a grey
background", "a red shape", "a star", "a shape". Which attributes a caption names is random (each of
shape, colour, background independently), so "a shape" fits every image, "a red shape" every red one,
and the toy CLIP learns words that compose: what "a shape" and "a red shape" differ by is "red".

Every caption is stored with the attributes it constrains (-1 = any), so a batch knows exactly which
images fit which captions (`matches`), which is what the toy CLIP's contrastive loss is trained on.

The tokenizer splits lower-cased text into words of letters; a word outside VOCABULARY becomes the
unknown token. Token ids: 0 padding, then the words, then unknown, start and end; the end token has
the highest id because open_clip's text tower pools the features at the argmax of the token ids.
"""

import re

import torch

from ganedit.toy.world import BACKGROUNDS, COLOURS, SHAPES

CONTEXT_LENGTH = 16
PREFIXES = ["", "a photo of ", "a picture of ", "an image of ", "a drawing of ", "a rendering of "]
FILLER = ["a", "an", "the", "photo", "picture", "image", "drawing", "rendering", "of", "on", "background", "shape"]
SYNONYMS = {"gray": "grey", "colour": "", "color": ""}
VOCABULARY = FILLER + SHAPES + COLOURS + BACKGROUNDS
PAD, UNKNOWN, START, END = 0, len(VOCABULARY) + 1, len(VOCABULARY) + 2, len(VOCABULARY) + 3
VOCABULARY_SIZE = END + 1
WORD_IDS = {word: index + 1 for index, word in enumerate(VOCABULARY)}

# Probability that a caption names each attribute.
NAME_SHAPE, NAME_COLOUR, NAME_BACKGROUND = 0.6, 0.6, 0.3


def caption(shape: int, colour: int, background: int) -> str:
    """The caption that names the given attributes (-1 = not named)."""
    words = [COLOURS[colour]] if colour >= 0 else []
    words.append(SHAPES[shape] if shape >= 0 else "shape")
    text = " ".join(words)
    article = "an" if text[0] in "aeiou" else "a"
    text = f"{article} {text}"
    if background >= 0:
        text += f" on a {BACKGROUNDS[background]} background"
    return text


def random_captions(
    shape: torch.Tensor, colour: torch.Tensor, background: torch.Tensor, generator: torch.Generator
) -> tuple[list[str], torch.Tensor]:
    """One random caption per image: (texts, constraints [N, 3] of shape, colour, background; -1 = any)."""
    n = len(shape)
    named = torch.rand(n, 3, generator=generator) < torch.tensor([NAME_SHAPE, NAME_COLOUR, NAME_BACKGROUND])
    constraints = torch.where(named, torch.stack([shape, colour, background], dim=1), torch.full((n, 3), -1))
    prefixes = torch.randint(len(PREFIXES), (n,), generator=generator)
    texts = [PREFIXES[int(p)] + caption(*(int(v) for v in row)) for p, row in zip(prefixes, constraints, strict=True)]
    return texts, constraints


def matches(attributes: torch.Tensor, constraints: torch.Tensor) -> torch.Tensor:
    """[N_images, N_captions] bool: image i has every attribute that caption j names.

    attributes [N_images, 3] and constraints [N_captions, 3] hold shape, colour, background indices.
    """
    fits = (constraints.unsqueeze(0) == -1) | (constraints.unsqueeze(0) == attributes.unsqueeze(1))
    return fits.all(dim=2)


def tokenize(texts: str | list[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """[N, context_length] long token ids: start, words (unknown ones as UNKNOWN), end, padding.

    Text longer than context_length - 2 words is cut (as open_clip's tokenizer cuts), keeping the end token.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokens = torch.full((len(texts), context_length), PAD, dtype=torch.long)
    for row, text in enumerate(texts):
        words = [SYNONYMS.get(word, word) for word in re.findall(r"[a-z]+", text.lower())]
        ids = [START] + [WORD_IDS.get(word, UNKNOWN) for word in words if word][: context_length - 2] + [END]
        tokens[row, : len(ids)] = torch.tensor(ids)
    return tokens


def known_words(text: str) -> tuple[list[str], list[str]]:
    """(words the toy CLIP knows, words it does not) in text."""
    words = [SYNONYMS.get(word, word) for word in re.findall(r"[a-z]+", text.lower())]
    words = [word for word in words if word]
    return [w for w in words if w in WORD_IDS], [w for w in words if w not in WORD_IDS]


def added_word(concept: str, neutral: str) -> str | None:
    """The one toy-world attribute word the concept adds to the neutral prompt ('red' for 'a red shape' vs
    'a shape'), or None."""
    from ganedit.toy.world import ATTRIBUTES

    names = {name for values in ATTRIBUTES.values() for name in values}
    added = [word for word in known_words(concept)[0] if word in names and word not in known_words(neutral)[0]]
    return added[0] if len(added) == 1 else None
