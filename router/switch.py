"""Explicit topic switches: discourse markers that say "what follows is a new request".

A user who writes "nice, thanks. unrelated question: how do I undo a git add" has ended the
session's task; stickiness must not hold the new request on the old route. `find_switch` looks for
such a marker near the start of a turn, in the languages Junction's users write (English, Chinese,
Japanese, Korean, German, Spanish, French, Russian, Portuguese), and returns the marker and the
request after it, which is what the router then classifies on its own.

Pure functions; the marker lists are data, extend them freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Phrases that open a new topic. Words that as often continue the task ("另外" / "顺便": "also",
# "근데": "but", "anyway", "one more thing") are left out: a follow-up must not count as a switch. Matched case-insensitively, as whole words for scripts with spaces.
MARKERS: dict[str, tuple[str, ...]] = {
    "en": (
        "unrelated question", "unrelated", "different question", "different topic", "different thing",
        "another question", "new question", "separate question", "new topic", "change of topic",
        "changing topic", "changing the subject", "change of subject", "switching gears", "switching topics",
        "on another note", "on a different note", "side question", "random question", "off topic",
        "off-topic", "totally different", "something else", "something different", "different task", "new task", "by the way", "btw", "back to work", "back to the code",
        "back to coding", "moving on", "aside from that", "also unrelated",
        "quick unrelated", "let's switch", "lets switch", "let's change topic", "forget that",
        "forget about that", "never mind that", "nevermind that",
    ),
    "zh": (
        "换个话题", "換個話題", "换一个话题", "換一個話題", "另外一个问题", "另外一個問題", "另一个问题", "另一個問題",
        "顺便问一下", "順便問一下", "顺便问", "順便問", "题外话", "題外話", "不相关的问题", "不相關的問題",
        "无关的问题", "無關的問題", "跟这个无关", "跟這個無關", "和这个无关", "和這個無關", "回到正题", "回到正題",
        "说点别的", "說點別的", "聊点别的", "聊點別的", "别的问题", "別的問題", "新问题", "新問題", "换个问题", "換個問題", "先不管这个", "先不管這個", "不说这个了", "不說這個了", "言归正传", "言歸正傳",
    ),
    "ja": (
        "話は変わる", "話変わる", "話が変わる", "ところで", "別件", "別の質問", "関係ないけど", "関係ない質問",
        "それはそうと", "全然違う", "違う質問", "仕事に戻", "本題に戻",
    ),
    "ko": (
        "다른 질문", "다른 얘기", "다른 이야기", "주제를 바꿔", "주제 바꿔", "별개로", "그건 그렇고",
        "그나저나", "상관없는 질문", "관계없는 질문", "딴 얘기", "본론으로", "일 얘기로 돌아",
    ),
    "de": (
        "andere frage", "ganz andere frage", "übrigens", "themenwechsel", "was anderes", "etwas anderes",
        "ganz andere sache", "anderes thema", "nebenbei", "zurück zur arbeit", "apropos", "neue frage",
    ),
    "es": (
        "otra cosa", "otra pregunta", "por cierto", "cambiando de tema", "cambio de tema", "aparte de eso",
        "nada que ver", "pregunta aparte", "volviendo al trabajo", "nueva pregunta", "otro tema",
    ),
    "fr": (
        "autre question", "au fait", "changement de sujet", "rien à voir", "autre chose", "autre sujet",
        "sans rapport", "d'ailleurs", "pour changer de sujet", "nouvelle question", "retour au travail",
    ),
    "ru": (
        "другой вопрос", "кстати", "не по теме", "сменим тему", "другая тема", "совсем другое",
        "отдельный вопрос", "новый вопрос", "вернёмся к работе", "вернемся к работе", "на другую тему",
    ),
    "pt": (
        "outra coisa", "outra pergunta", "aliás", "mudando de assunto", "nada a ver", "por falar nisso",
        "pergunta à parte", "outro assunto", "nova pergunta", "voltando ao trabalho", "a propósito",
    ),
}

# A marker counts only when it opens the turn or follows a short acknowledgement ("ok thanks. ", "好的，"):
# it starts within this many characters of the turn's start, after a clause end or at most two words.
MAX_OFFSET = 40
_CLAUSE_END = tuple(".,!?;:，。！？；：、…)")
# After the marker a request must follow (else "btw thanks" would count as a switch).
MIN_REST = 4

# Korean particles attach to the marker ("다른 질문인데"), so Korean is matched without a trailing word boundary.
_SPACED = sorted({m for lang, ms in MARKERS.items() if lang not in ("zh", "ja", "ko") for m in ms}, key=len, reverse=True)
_UNSPACED = sorted({m for lang in ("zh", "ja", "ko") for m in MARKERS[lang]}, key=len, reverse=True)
_PATTERN = re.compile(
    r"(?:(?<![\w])(?:%s)(?![\w]))|(?:%s)" % ("|".join(map(re.escape, _SPACED)), "|".join(map(re.escape, _UNSPACED))),
    re.IGNORECASE,
)
_LEADING = re.compile(r"^[\s,.:;!?，。：；！？、…\-–—)\]]+")


@dataclass(frozen=True)
class Switch:
    marker: str  # the marker as written
    rest: str  # the request after it


def find_switch(text: str) -> Switch | None:
    """The topic-switch marker that opens `text` (after at most a short acknowledgement), if any."""
    head = text[: MAX_OFFSET + 40]
    for match in _PATTERN.finditer(head):
        if match.start() > MAX_OFFSET:
            break
        before = text[: match.start()].strip()
        if before and not before.endswith(_CLAUSE_END) and len(before.split()) > 2:
            continue
        rest = _LEADING.sub("", text[match.end() :]).strip()
        if len(rest) >= MIN_REST:
            return Switch(match.group(0), rest)
    return None
