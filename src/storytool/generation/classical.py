"""Stories composed offline in the manner of 고전 소설, from the prompt, the tags and the nearest
corpus passages: no language model, no network.

A story opens with 화설 and its setting, then the writer's prompt read as a clause (or a noun
phrase, or a quotation; :mod:`storytool.generation.korean` decides), then the prompt's later
sentences as events, a scene for each tag's theme, corpus passages quoted whole, scenes of the
road; 각설 and 차설 turn some middle paragraphs, never the last; the ending suits the tags' mood.
A continuation opens with 각설 or 차설 and the writer's direction instead, keeps the hero and the
place of the story it continues and repeats none of its paragraphs.

Every choice comes from a generator seeded by the request's ``seed`` (the conversation id),
temperature, input, tags and length: the same conversation always gets the same story, each
variant of one input its own. No paragraph appears twice in a story. The refined story is the
draft with more paragraphs set between its middle ones; title and recommendations follow from the
same choices.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from storytool.generation import classical_phrases as phrases
from storytool.generation.korean import (
    Premise,
    as_happening,
    attach,
    fill,
    read_prompt,
    sentences_of,
)
from storytool.generation.modes import continued_direction
from storytool.generation.story import StoryExtras, StoryLength, StoryRequest

MIDDLES: dict[StoryLength, int] = {"short": 1, "medium": 3, "long": 6}
"""Middle paragraphs of a draft per length, at least (the prompt's sentences, the tags and the
passages may ask for more); the refine adds about half again."""
MAX_EVENTS = 5
"""Sentences of a prompt told as events; a longer prompt is a synopsis, not a script."""
TURN_SHARE = 0.4
"""About this share of the middle paragraphs turn the scene with 각설 or 차설."""
RECOMMENDATIONS = 3
TITLE_CHARS = 6
"""A hero's name (or a tag) this long or shorter makes a title (홍길동전); a longer one does
not."""
TITLE_PHRASE_CHARS = 20
"""A prompt that is a noun phrase this short is its own title (호랑이와 곶감)."""
_OPENING_WORDS = re.compile(r"^(?:화설|각설|차설)[.,]?\s+")


@dataclass(frozen=True, slots=True)
class _Cast:
    """What one story is made of: chosen once per request, shared by draft, refine and extras."""

    values: Mapping[str, str]
    """The fields the phrases fill: hero, helper, foe, era, place, season, scenery, time."""
    named: bool
    """The hero is named by the prompt (not :data:`phrases.SOMEONE`)."""
    place_short: str
    premises: list[Premise]
    """The prompt's sentences; for a continuation, its direction's (none without one)."""
    continuing: bool
    themes: list[phrases.Theme | str]
    """Each tag's theme, or the tag itself where no theme knows it."""
    sad: bool
    earlier: frozenset[str]
    """Paragraphs of the story a continuation continues: not to be told again."""


def _random(request: StoryRequest, purpose: str) -> random.Random:
    key = "\x1f".join(
        [
            purpose,
            request.seed,
            str(request.temperature),
            request.length,
            request.user_input,
            *request.tags,
        ]
    )
    return random.Random(hashlib.sha256(key.encode("utf-8")).digest())


def _premises(text: str) -> list[Premise]:
    return read_prompt(_bare(text.strip()))


def _theme(tag: str) -> phrases.Theme | str:
    return next((theme for theme in phrases.THEMES if tag in theme.tags), tag)


def _cast(request: StoryRequest) -> _Cast:
    rng = _random(request, "cast")
    direction = continued_direction(request.user_input)
    continuing = direction is not None
    premises = _premises(direction if direction is not None else request.user_input)
    earlier = request.history[-1].story if continuing and request.history else ""
    # A continuation's hero is the one of the story it continues (its direction may bring in
    # someone new); a new story's is whoever its prompt makes the subject.
    if continuing:
        told = [
            premise for turn in reversed(request.history) for premise in _premises(turn.user_input)
        ]
    else:
        told = premises
    hero = next((premise.subject for premise in told if premise.subject), None)
    place, place_short = next(
        (place for place in phrases.PLACES if place[0] in earlier), rng.choice(phrases.PLACES)
    )
    season, scenery = rng.choice(phrases.SEASONS)
    themes = [_theme(tag) for tag in request.tags]
    prompts = " ".join([request.user_input, *(turn.user_input for turn in request.history)])
    return _Cast(
        values={
            "hero": hero or phrases.SOMEONE,
            "helper": rng.choice(phrases.HELPERS),
            "foe": rng.choice(phrases.FOES),
            "era": rng.choice(phrases.ERAS),
            "place": place,
            "season": season,
            "scenery": scenery,
            "time": rng.choice(phrases.TIMES),
        },
        named=hero is not None,
        place_short=place_short,
        premises=premises,
        continuing=continuing,
        themes=themes,
        sad=any(isinstance(theme, phrases.Theme) and theme.sad for theme in themes)
        or any(word in prompts for word in phrases.SAD_WORDS),
        earlier=frozenset(map(_bare, earlier.split("\n\n"))),
    )


class _Teller:
    """Fills phrases for one story, never the same paragraph twice."""

    def __init__(self, cast: _Cast, rng: random.Random, told: Iterable[str] = ()) -> None:
        self.cast = cast
        self.rng = rng
        self._told = set(cast.earlier) | set(map(_bare, told))
        self._decks: dict[tuple[str, ...], list[str]] = {}

    def deal(self, pool: tuple[str, ...]) -> str:
        """The next of ``pool`` in a shuffled order: none again until all have been dealt."""
        deck = self._decks.get(pool)
        if not deck:
            deck = self._decks[pool] = self.rng.sample(pool, len(pool))
        return deck.pop()

    def tell(self, templates: Sequence[str], **fields: str) -> str | None:
        """One of ``templates``, filled, that the story has not told yet (None when all are)."""
        values = {**self.cast.values, **fields}
        for template in self.rng.sample(templates, len(templates)):
            text = fill(template, values).strip()
            if text not in self._told:
                self._told.add(text)
                return text
        return None

    def event(self, premise: Premise, lead: str) -> str | None:
        """A sentence of the prompt told as something that happens; ``lead`` before it unless
        it says when itself (``어느 날 …``)."""
        if premise.text.startswith(phrases.TIME_WORDS):
            lead = ""
        cons = self.deal(phrases.EVENT_CONSEQUENCES)
        if premise.kind == "clause":
            template = phrases.EVENT_CLAUSE
        elif premise.kind == "noun":
            template = phrases.EVENT_NOUN
        else:
            template = phrases.EVENT_QUESTION if premise.kind == "question" else phrases.EVENT_QUOTE
        fields = {"clause": premise.text, "noun": premise.text, "quote": _unquoted(premise.text)}
        return self.tell([template], lead=lead, cons=cons, **fields)

    def opening(self) -> str:
        if self.cast.continuing:
            turn = self.rng.choice(phrases.TURN_WORDS)
            time = self.cast.values["time"]
            if self.cast.premises:
                body = self.event(self.cast.premises[0], lead=time)
            else:
                body = self.tell(phrases.CONTINUE_WITHOUT_DIRECTION)
                body = body and f"{time} {body}"
            return f"{turn}. {body or time}"
        setting = fill(self.rng.choice(phrases.SETTINGS), self.cast.values)
        if not self.cast.premises:  # a prompt of punctuation only
            return f"{phrases.OPENING_WORD}. {setting}"
        premise = self.cast.premises[0]
        fields = {"setting": setting, "quote": _unquoted(premise.text)}
        happening = as_happening(premise.text) if premise.kind == "noun" else None
        if premise.kind == "clause":
            cons = self.rng.choice(phrases.OPENING_CONSEQUENCES)
            body = self.tell([phrases.OPENING_CLAUSE], clause=premise.text, cons=cons, **fields)
        elif happening is not None:
            body = self.tell([phrases.OPENING_TOLD], noun=happening, **fields)
        elif premise.kind == "noun":
            body = self.tell(phrases.OPENING_NOUNS, noun=premise.text, **fields)
        elif premise.kind == "question":
            body = self.tell([phrases.OPENING_QUESTION], **fields)
        else:
            body = self.tell([phrases.OPENING_QUOTE], **fields)
        return f"{phrases.OPENING_WORD}. {body or setting}"

    def middles(self, request: StoryRequest) -> list[str]:
        # The first sentence (or direction) is the opening's.
        events = [
            self.event(premise, lead=self.deal(phrases.EVENT_LEADS))
            for premise in self.cast.premises[1:MAX_EVENTS]
        ]
        scenes = [*self._themes(), *self._quotes(request.passages, request.length)]
        while len(events) + len(scenes) < MIDDLES[request.length]:
            scenes.append(self.tell(phrases.SCENES))
        self.rng.shuffle(scenes)
        told = [text for text in [*events, *scenes] if text]
        return self._turned(told)

    def _themes(self) -> list[str | None]:
        scenes = []
        for theme in self.cast.themes[: phrases.MAX_TAG_SCENES]:
            if isinstance(theme, phrases.Theme):
                scenes.append(self.tell(theme.scenes) or self.tell(phrases.SCENES))
            else:
                scenes.append(self.tell([self.deal(phrases.TAG_SCENES)], tag=theme))
        rest = [theme if isinstance(theme, str) else theme.tags[0] for theme in self.cast.themes]
        rest = rest[phrases.MAX_TAG_SCENES :]
        if rest:
            scenes.append(self.tell([phrases.MORE_TAGS], tags=_listing(rest)))
        return scenes

    def _quotes(self, passages: Sequence[str], length: StoryLength) -> list[str | None]:
        """The nearest passage always, more in a longer story, each quoted by a whole sentence."""
        quotes = []
        for passage in passages[: 1 + MIDDLES[length] // 3]:
            sentences = map(_unquoted, sentences_of(" ".join(passage.split())))
            sentence = next(
                (text for text in sentences if 0 < len(text) <= phrases.MAX_QUOTE_CHARS), None
            )
            if sentence is not None:
                quotes.append(self.tell(phrases.QUOTES, quote=sentence))
        return quotes

    def _turned(self, paragraphs: list[str]) -> list[str]:
        """각설 or 차설 before some paragraphs (never two in a row): the scene turns."""
        turned, previous = [], False
        for paragraph in paragraphs:
            turn = not previous and self.rng.random() < TURN_SHARE
            turned.append(f"{self.deal(phrases.TURN_WORDS)}. {paragraph}" if turn else paragraph)
            previous = turn
        return turned

    def ending(self) -> str:
        mood = phrases.SAD_ENDINGS if self.cast.sad else phrases.BRIGHT_ENDINGS
        return self.tell([*mood, *phrases.PLAIN_ENDINGS]) or fill(
            phrases.PLAIN_ENDINGS[0], self.cast.values
        )


def _bare(paragraph: str) -> str:
    """A paragraph without the word that opens or turns it."""
    return _OPENING_WORDS.sub("", paragraph)


def _unquoted(sentence: str) -> str:
    """A sentence as it can stand in quotation marks: no opening word, no final stop, no
    quotation marks of its own."""
    return _bare(sentence.strip()).rstrip(" .。").replace("'", '"')


def _listing(words: Sequence[str]) -> str:
    """``A, B와 C``: a list of nouns joined the Korean way."""
    if len(words) == 1:
        return words[0]
    return f"{', '.join([*words[:-2], attach(words[-2], '과')])} {words[-1]}"


def compose_base_story(request: StoryRequest) -> str:
    """The draft: an opening, the middles, an ending."""
    cast = _cast(request)
    teller = _Teller(cast, _random(request, "draft"))
    return "\n\n".join([teller.opening(), *teller.middles(request), teller.ending()])


def compose_refined_story(request: StoryRequest, base_story: str) -> str:
    """``base_story`` told at greater length: a few more paragraphs set between its middle ones,
    the opening and the ending kept."""
    paragraphs = base_story.split("\n\n")
    cast = _cast(request)
    rng = _random(request, "refine")
    teller = _Teller(cast, rng, told=paragraphs)
    added = [
        text
        for text in (teller.tell(phrases.FLOURISHES) for _ in range(max(1, len(paragraphs) // 2)))
        if text
    ]
    head, middle, tail = paragraphs[:1], paragraphs[1:-1], paragraphs[1:][-1:]
    after = sorted(rng.choices(range(len(middle) + 1), k=len(added)))
    story = list(head)
    for index in range(len(middle) + 1):
        story += [text for text, place in zip(added, after, strict=True) if place == index]
        if index < len(middle):
            story.append(middle[index])
    return "\n\n".join(story + tail)


def _title(cast: _Cast, rng: random.Random, tags: Sequence[str]) -> str:
    hero = cast.values["hero"]
    first = cast.premises[0] if cast.premises else None
    if cast.named and 1 < len(hero) <= TITLE_CHARS:
        options = [f"{hero}전"]
        if not cast.continuing:
            options.append(f"{cast.place_short} {hero}전")
            options += [f"{hero} {tag}록" for tag in tags[:1] if len(tag) <= TITLE_CHARS]
    elif cast.continuing:
        options = [f"{cast.place_short} 기담"]
    elif first is not None and first.kind == "noun" and len(first.text) <= TITLE_PHRASE_CHARS:
        options = [first.text]
    else:
        options = [f"{cast.place_short} 기담", *(f"{tag}기" for tag in tags[:1])]
    title = rng.choice(options)
    return fill(phrases.TITLE_SEQUEL, {"title": title}) if cast.continuing else title


def compose_extras(request: StoryRequest) -> StoryExtras:
    """A title (bare: clients add their own brackets) and where the story might go next, as
    directions a writer can send on as the next prompt."""
    cast = _cast(request)
    rng = _random(request, "extras")
    teller = _Teller(cast, rng)
    directions = [
        teller.tell([theme.next])
        if isinstance(theme, phrases.Theme)
        else teller.tell([phrases.TAG_NEXT], tag=theme)
        for theme in cast.themes[:1]
    ]
    directions += [teller.tell(phrases.NEXT_DIRECTIONS) for _ in range(RECOMMENDATIONS)]
    return StoryExtras(
        title=_title(cast, rng, request.tags),
        recommendations=[text for text in directions if text][:RECOMMENDATIONS],
    )
