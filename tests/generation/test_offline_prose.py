"""Offline stories read like 고전 소설: 50 prompts of every shape (clauses, noun phrases,
questions, requests, outlines; short and long; ending in a vowel, a consonant, ㄹ; Latin and
digits; with tags known and unknown, many or none; with corpus passages and without), each told
as a new story, as a variant and as a continuation, with and without a direction.

Every story, title and recommendation is checked for what a reader of the old template filling
met: a clause glued before a particle (``떠나니의``), a particle in the wrong form for the word
before it, the writer's or the system's instructions echoed, a paragraph told twice, 화설 after the
start or an opening word at the end, a passage cut mid-sentence, a variant identical to its parent.
The particles are checked with a final-consonant test of this file's own, not the composer's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import cache

import httpx
import pytest

from storytool.generation import classical_phrases as phrases
from storytool.generation.classical import (
    compose_base_story,
    compose_extras,
    compose_refined_story,
)
from storytool.generation.korean import attach, connective, fill, read_prompt, read_sentence
from storytool.generation.modes import (
    CONTINUE_INPUT,
    STORY_SO_FAR,
    continuation_prompt,
    continued_direction,
)
from storytool.generation.story import StoryExtras, StoryLength, StoryRequest, Turn
from tests.generation.conftest import Database, generate, story_of
from tests.search.conftest import SAMPLE_CORPUS

PROMPTS: list[tuple[str, list[str], str]] = [
    ("한 선비가 길을 떠나니", [], "선비"),
    ("가난한 선비가 과거를 보러 가다", ["충효", "모험"], "선비"),
    ("산속에서 길을 잃은 아이가 산적을 만나니", ["신이"], "아이"),
    ("용왕의 딸을 만나다", ["용왕"], "그 사람"),
    ("나무꾼이 선녀의 옷을 감추었다", ["사랑"], "나무꾼"),
    ("청운이 서울로 간다", [], "청운"),
    ("여우가 선비를 돕습니다", ["보은"], "여우"),
    (
        "효녀 심청이 아버지를 위해 몸을 판다. 심청이 인당수에 빠진다. 용왕이 심청을 구한다.",
        ["효"],
        "심청",
    ),
    ("홍길동이 도술을 부려 탐관오리를 혼내 주었다", ["도술", "권선징악"], "홍길동"),
    ("춘향이 옥중에서 이 도령을 기다리더라", ["정절", "사랑"], "춘향"),
    ("선비가 노래를 듣는다", [], "선비"),
    ("그 사람이 집을 짓다", [], "사람"),
    ("하늘이 파랗다", [], "그 사람"),
    ("늙은 어부가 큰 잉어를 잡았으나 놓아 주었다", ["보은"], "어부"),
    ("장수가 오랑캐를 물리치고 돌아왔다", ["전쟁", "영웅"], "장수"),
    ("도깨비가 금방망이로 부자가 된다", ["해학"], "도깨비"),
    ("두 형제가 재산을 두고 다투다가 화해하였다", ["우애", "탐욕"], "형제"),
    ("밤이 깊었어요", [], "그 사람"),
    ("젊은 과부가 시어머니를 극진히 모시니", ["효"], "과부"),
    ("한 소년이 호랑이를 만나 꾀로 살아남는다", ["지혜"], "소년"),
    ("호랑이와 곶감", [], "호랑이"),
    ("과거 보러 떠나는 아들과 눈물로 이별하는 어머니", ["이별"], "어머니"),
    (
        "여우가 자고 있는 선비를 해치려다가 선비가 잠결에 엄마 걱정하는 소리를 듣고 "
        "손을 멈추는 이야기",
        ["여우"],
        "여우",
    ),
    (
        "주인 아들이 열이 펄펄 끓는데 돈이 없어서 종이 자기 머리를 잘라 팔아 약을 사 온 장면",
        ["충"],
        "아들",
    ),
    ("심청", [], "심청"),
    ("푸른 바다", [], "그 사람"),
    ("선녀와 나무꾼", ["사랑"], "선녀"),
    ("구미호", ["요괴"], "구미호"),
    ("달밤의 이별", ["이별", "슬픔"], "그 사람"),
    ("사또의 금송아지", ["해학", "풍자"], "그 사람"),
    ("춘향이 이몽룡을 만나면 어떻게 될까?", [], "춘향"),
    ("용이 나오는 이야기를 써 주세요", ["용"], "용"),
    ("어머니가 보고 싶어요", ["가족"], "어머니"),
    ("도적을 만난 선비는 어찌할꼬?", [], "그 사람"),
    ("흥부가 박을 타는 이야기를 지어 줘", ["보은", "해학"], "흥부"),
    ("한 선비가 산적을 만나니", ["산적", "밤", "가을", "바람"], "선비"),
    ("어린 종이 주인을 구하다", ["신이", "충효", "모험", "우정", "해학", "비밀"], "종"),
    ("선비가 책을 읽다", ["AI"], "선비"),
    ("한 노인이 바둑을 두다", ["10년"], "노인"),
    ("소녀가 꽃을 심으니", ["희망", "나비"], "소녀"),
    (
        "옛날 경상도 어느 고을에 마음씨 착한 나무꾼이 살았다. 어느 날 나무를 하러 산에 "
        "갔다가 다친 사슴을 만났다. 나무꾼은 사슴을 숨겨 주었다. 사슴은 은혜를 갚겠다며 "
        "선녀들이 내려오는 연못을 알려 주었다. 나무꾼은 선녀의 날개옷을 감추었다. 선녀는 "
        "하늘로 돌아가지 못하였다.",
        ["보은", "사랑", "이별"],
        "나무꾼",
    ),
    (
        "첫째 줄거리: 한 도령이 과거에 급제한다\n"
        "둘째 줄거리: 도령이 암행어사가 되어 고향에 돌아온다\n셋째: 탐관오리를 벌한다",
        ["출세"],
        "도령",
    ),
    ("용", [], "용"),
    ("A scholar meets a fox", [], "그 사람"),
    ("화설 한 선비가 길을 떠나더라", [], "선비"),
    ("선비가 짐을 싣고 떠나고", [], "선비"),
    ("아이가 우물에 빠졌습니다", [], "아이"),
    ("할머니", [], "할머니"),
    ("마을 사람들이 잔치를 벌이매", ["웃음"], "사람들"),
    ("왕이 죽었다. 왕비가 슬퍼하였다.", ["비극"], "왕"),
]
"""Each prompt, its tags, and who the story should be about (그 사람 when the prompt names
nobody who could be)."""

LENGTHS: tuple[StoryLength, ...] = ("short", "medium", "long")
PASSAGES = [json.loads(line)["text"] for line in SAMPLE_CORPUS.read_text().splitlines()]
DIRECTIONS = (
    "",
    "호랑이가 나타나니",
    "선비가 서울에 이르렀다",
    "꿈속에서 어머니를 만나는 이야기",
    "원수는 어디로 갔을까?",
    "밤이 깊어 달이 밝으니. 멀리서 피리 소리가 들린다.",
)
"""What a writer asks of a continuation; "" is none."""

INSTRUCTIONS = (
    CONTINUE_INPUT,
    CONTINUE_INPUT.rstrip("."),
    STORY_SO_FAR,
    "이어서 쓰",
    "쓰시오",
    "줄거리:",
    "태그:",
    "분량:",
    "보소서",
    "써 보",
    "지어 보",
    "자 남짓",
    "써 주세요",
    "지어 줘",
)
"""Instructions, to the model or to the writer, that no story, title or recommendation shows."""

CLAUSE_ENDINGS = ("니", "다", "요", "까", "며", "매", "고")
NOUNS_ENDING_SO = ("어머니", "할머니", "바다", "저마다")
GLUED = re.compile(r"(?<!\S)(\S+?)(?:의|에 얽힌|[을를] 두고|[이가] 전하니)(?=\s)")
"""A word before 의 (or a noun phrase's frame): never a clause (``떠나니의``, ``가다의``)."""
OPENING_WORDS = ("화설", "각설", "차설")


def has_final(word: str) -> bool:
    """The word's last syllable has a final consonant (this file's own test)."""
    return (ord(word[-1]) - 0xAC00) % 28 != 0


def ends_in_rieul(word: str) -> bool:
    return (ord(word[-1]) - 0xAC00) % 28 == 8


def wrong_particles(word: str) -> list[str]:
    """The forms a particle may not take after ``word``."""
    if has_final(word):
        wrong = ["가", "를", "는", "와", "야"]
        return [*wrong, "으로"] if ends_in_rieul(word) else [*wrong, "로"]
    return ["이", "을", "은", "과", "으로"]


@dataclass(frozen=True)
class Told:
    request: StoryRequest
    draft: str
    story: str
    extras: StoryExtras
    hero: str

    @property
    def paragraphs(self) -> list[str]:
        return self.story.split("\n\n")

    @property
    def texts(self) -> list[str]:
        return [self.draft, self.story, self.extras.title, *self.extras.recommendations]


def tell(request: StoryRequest, hero: str) -> Told:
    draft = compose_base_story(request)
    story = compose_refined_story(request, draft)
    return Told(request, draft, story, compose_extras(request), hero)


def request_for(index: int, *, seed: str = "parent") -> StoryRequest:
    prompt, tags, _hero = PROMPTS[index]
    passages = PASSAGES[index % len(PASSAGES) :][:3] if index % 2 else []
    return StoryRequest(
        user_input=prompt,
        tags=tags,
        length=LENGTHS[index % len(LENGTHS)],
        passages=passages,
        seed=seed,
    )


@cache
def new_story(index: int) -> Told:
    return tell(request_for(index), PROMPTS[index][2])


@cache
def continued(index: int) -> Told:
    parent = new_story(index)
    prompt, tags, hero = PROMPTS[index]
    direction = DIRECTIONS[index % len(DIRECTIONS)]
    request = StoryRequest(
        user_input=continuation_prompt(direction, parent.story),
        tags=tags,
        length=parent.request.length,
        history=[Turn(user_input=prompt, tags=tags, story=parent.story)],
        seed="continuation",
    )
    return tell(request, hero)


def bare(paragraph: str) -> str:
    return re.sub(r"^(?:화설|각설|차설)\. ", "", paragraph)


def assert_reads_well(told: Told) -> None:
    """What every story, new or continued, gets right."""
    for text in told.texts:
        for instruction in INSTRUCTIONS:
            assert instruction not in text, (instruction, text)
        for glued in GLUED.finditer(text):
            word = glued.group(1)
            assert not word.endswith(CLAUSE_ENDINGS) or word.endswith(NOUNS_ENDING_SO), glued[0]
    nouns = [told.hero, *told.request.tags, *phrases.HELPERS, *phrases.FOES]
    for noun in (noun for noun in nouns if "\uac00" <= noun[-1] <= "\ud7a3"):
        for wrong in wrong_particles(noun):
            pattern = rf"(?<![가-힣]){re.escape(noun)}{wrong}(?=[\s,.'])"
            for text in told.texts:
                assert not re.search(pattern, text), (noun + wrong, text)
    for tag in told.request.tags:
        assert f"{tag}의 뜻" not in told.story  # a theme, not somebody's name
    paragraphs = [bare(paragraph) for paragraph in told.paragraphs]
    assert len(set(paragraphs)) == len(paragraphs), told.story
    for text in (told.draft, told.story):
        last = text.split("\n\n")[-1]
        assert not last.startswith(OPENING_WORDS)
        assert not text.rstrip(" .").endswith(OPENING_WORDS)
        assert text.endswith(("더라.", "리오.", "노라.", "도다.", "하더라."))
    assert told.hero in told.story
    assert told.extras.title
    assert not set("〈〉《》") & set(told.extras.title)
    assert len(told.extras.recommendations) == 3
    assert len(set(told.extras.recommendations)) == 3


CASES = [
    pytest.param(index, id=f"{index:02d}-{prompt[:12]}")
    for index, (prompt, _t, _h) in enumerate(PROMPTS)
]


def test_there_are_50_prompts_of_every_shape():
    assert len(PROMPTS) == 50
    kinds = {premise.kind for prompt, _tags, _hero in PROMPTS for premise in read_prompt(prompt)}
    assert kinds == {"clause", "noun", "quote", "question"}
    finals = {has_final(prompt.rstrip(".?!")) for prompt, _t, _h in PROMPTS if prompt[-1] >= "가"}
    assert finals == {True, False}


@pytest.mark.parametrize("index", CASES)
class TestNewStories:
    def test_read_well(self, index: int):
        assert_reads_well(new_story(index))

    def test_open_with_hwaseol_once_and_tell_the_prompt(self, index: int):
        told = new_story(index)
        assert told.story.startswith("화설. ")
        assert told.story.count("화설") == 1
        first = read_prompt(re.sub(r"^화설\s+", "", PROMPTS[index][0]))
        if first:
            assert first[0].text.replace("'", '"').split()[0] in told.paragraphs[0]

    def test_use_each_tag_as_a_theme(self, index: int):
        told = new_story(index)
        for position, tag in enumerate(told.request.tags):
            theme = next((theme for theme in phrases.THEMES if tag in theme.tags), None)
            if position >= phrases.MAX_TAG_SCENES or theme is None:
                assert tag in told.story
                continue
            scenes = (
                fill(scene, {"hero": told.hero, "foe": foe})
                for scene in theme.scenes
                for foe in phrases.FOES
            )
            assert any(scene in told.story for scene in scenes), tag

    def test_quote_the_passages_whole(self, index: int):
        told = new_story(index)
        if not told.request.passages:
            assert "옛 글에 이르기를" not in told.story
            return
        nearest = re.split(r"(?<=\.)\s+", told.request.passages[0])[0]
        sentence = re.sub(r"^(?:화설|각설|차설)\s+", "", nearest).rstrip(".")
        assert f"'{sentence}'" in told.draft
        assert f"'{sentence}'" in told.story
        for quoted in re.findall(r"'([^']+)'", told.story):
            if any(quoted in passage for passage in PASSAGES):
                assert any(
                    f"{quoted}." in passage or passage.endswith(quoted) for passage in PASSAGES
                ), quoted  # a whole sentence, never cut mid-word

    def test_the_refined_story_keeps_the_draft_and_tells_more(self, index: int):
        told = new_story(index)
        draft = told.draft.split("\n\n")
        assert told.paragraphs[0] == draft[0]
        assert told.paragraphs[-1] == draft[-1]
        assert [p for p in told.paragraphs if p in draft] == draft
        assert len(told.paragraphs) > len(draft)

    def test_each_variant_is_its_own_and_each_conversation_keeps_its_story(self, index: int):
        parent = new_story(index)
        again = tell(request_for(index), parent.hero)
        variant = tell(request_for(index, seed="variant"), parent.hero)
        warmer = tell(replace(request_for(index, seed="warmer"), temperature=1.2), parent.hero)
        assert again == parent
        assert variant.story != parent.story
        assert warmer.story not in (parent.story, variant.story)
        assert_reads_well(variant)


@pytest.mark.parametrize("index", CASES)
class TestContinuations:
    def test_read_well(self, index: int):
        assert_reads_well(continued(index))

    def test_turn_the_scene_and_go_on_from_where_the_story_ended(self, index: int):
        told = continued(index)
        parent = new_story(index)
        assert told.story.startswith(("각설. ", "차설. "))
        assert "화설" not in told.story
        assert not {bare(p) for p in told.paragraphs} & {bare(p) for p in parent.paragraphs}
        direction = DIRECTIONS[index % len(DIRECTIONS)]
        if direction:
            assert direction.split()[0] in told.paragraphs[0]
        if told.hero != phrases.SOMEONE and len(told.hero) > 1:
            assert told.extras.title == f"{told.hero}전 후편"


class TestKorean:
    @pytest.mark.parametrize(
        ("word", "particle", "joined"),
        [
            ("선비", "이", "선비가"),
            ("사람", "이", "사람이"),
            ("나비", "을", "나비를"),
            ("가을", "을", "가을을"),
            ("서울", "으로", "서울로"),
            ("산", "으로", "산으로"),
            ("바다", "으로", "바다로"),
            ("호랑이", "과", "호랑이와"),
            ("곶감", "과", "곶감과"),
            ("심청(沈淸)", "은", "심청(沈淸)은"),
            ("3", "이", "3이"),
            ("10", "을", "10을"),
            ("2", "은", "2는"),
            ("AI", "이", "AI가"),
            ("URL", "으로", "URL로"),
            ("book", "이", "book이"),
            ("춘삼월", "이라", "춘삼월이라"),
            ("아래", "이라", "아래라"),
        ],
    )
    def test_particles_follow_the_final_consonant(self, word: str, particle: str, joined: str):
        assert attach(word, particle) == joined

    @pytest.mark.parametrize(
        ("stem", "clause"),
        [
            ("가", "가니"),
            ("먹", "먹으니"),
            ("살", "사니"),
            ("떠났", "떠났으니"),
            ("돕", "도우니"),
            ("잡", "잡으니"),
            ("듣", "들으니"),
            ("받", "받으니"),
            ("짓", "지으니"),
            ("웃", "웃으니"),
            ("그렇", "그러니"),
            ("좋", "좋으니"),
        ],
    )
    def test_a_stem_leads_a_sentence_with_the_right_connective(self, stem: str, clause: str):
        assert connective(stem) == clause

    @pytest.mark.parametrize(
        ("sentence", "kind", "text"),
        [
            ("한 선비가 길을 떠나니", "clause", "한 선비가 길을 떠나니"),
            ("가난한 선비가 과거를 보러 가다", "clause", "가난한 선비가 과거를 보러 가니"),
            ("청운이 서울로 간다", "clause", "청운이 서울로 가니"),
            ("선비가 노래를 듣는다", "clause", "선비가 노래를 들으니"),
            ("여우가 선비를 돕습니다", "clause", "여우가 선비를 도우니"),
            ("나무꾼이 옷을 감추었다", "clause", "나무꾼이 옷을 감추었으니"),
            ("춘향이 이 도령을 기다리더라", "clause", "춘향이 이 도령을 기다리더니"),
            ("호랑이와 곶감", "noun", "호랑이와 곶감"),
            ("떠나는 아들과 이별하는 어머니", "noun", "떠나는 아들과 이별하는 어머니"),
            ("푸른 바다", "noun", "푸른 바다"),
            ("용이 나오는 이야기를 써 주세요", "noun", "용이 나오는 이야기"),
            ("어떻게 될까?", "question", "어떻게 될까"),
            ("어머니가 보고 싶어요", "quote", "어머니가 보고 싶어요"),
        ],
    )
    def test_a_prompt_is_read_as_a_clause_a_noun_phrase_or_a_quotation(
        self, sentence: str, kind: str, text: str
    ):
        premise = read_sentence(sentence)
        assert (premise.kind, premise.text) == (kind, text)

    def test_an_outline_is_read_without_its_marks(self):
        premises = read_prompt("1. 한 도령이 급제한다\n- 도령이 돌아온다\n셋째 줄거리: 벌을 내린다")
        assert [premise.text for premise in premises] == [
            "한 도령이 급제하니",
            "도령이 돌아오니",
            "벌을 내리니",
        ]


class TestContinuationPrompt:
    def test_the_direction_is_read_back_and_the_standing_one_is_none(self):
        assert continued_direction(continuation_prompt("호랑이가 나타나니", "이야기")) == (
            "호랑이가 나타나니"
        )
        assert continued_direction(continuation_prompt("", "이야기")) == ""
        assert continuation_prompt("", "이야기").startswith(CONTINUE_INPUT)
        assert continued_direction("한 선비가 길을 떠나니") is None


class TestThroughTheService:
    """The real pipeline seeds each conversation with its id."""

    async def test_a_continuation_without_a_direction_stores_and_shows_no_instruction(
        self, client: httpx.AsyncClient, database: Database
    ):
        first = await generate(client, {"user_input": "한 선비가 길을 떠나니", "tags": ["모험"]})
        parent = first[0].data["conversation_id"]
        events = await generate(client, {"mode": "continue", "parent_conversation_id": parent})
        assert events[-1].event == "done"
        _conversation, data = await database.conversation(events[0].data["conversation_id"])
        assert data.user_input == ""
        assert data.story == story_of(events)
        assert data.story.startswith(("각설. ", "차설. "))
        for text in (data.story, data.base_story or "", data.title or "", *data.recommendations):
            for instruction in INSTRUCTIONS:
                assert instruction not in text

    async def test_regenerate_writes_another_story_each_time(
        self, client: httpx.AsyncClient, database: Database
    ):
        first = await generate(client, {"user_input": "가난한 선비가 과거를 보러 가다"})
        parent = first[0].data["conversation_id"]
        regenerate = {"mode": "regenerate", "parent_conversation_id": parent}
        second = await generate(client, regenerate)
        warmer = await generate(client, {**regenerate, "options": {"temperature": 1.2}})
        stories = [story_of(events) for events in (first, second, warmer)]
        assert all(stories)
        assert len(set(stories)) == 3
        _conversation, data = await database.conversation(second[0].data["conversation_id"])
        assert data.story == stories[1]
