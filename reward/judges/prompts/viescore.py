"""VIEScore prompts for text-guided image editing, as GEdit-Bench uses them with a GPT-4.1 judge.

Two questions per edit (facts of the protocol, TIGER-AI-Lab/VIEScore, task "tie"):
- semantic consistency (SC), shown the source then the edited image: [editing success, over-editing], 0-10;
- perceptual quality (PQ), shown only the edited image: [naturalness, artifacts], 0-10.
The answer is a JSON object ``{"score": [a, b], "reasoning": "..."}``. SC = min(SC scores),
PQ = min(PQ scores), overall O = sqrt(SC * PQ).

The wording below is this project's rendition of the same rubric (the official text lives in the VIEScore
repository); scale, order and answer format are the protocol's.
"""

from __future__ import annotations

import dataclasses

from reward.judges.parsing import ParsingMode, ScoreFormat

VIESCORE_FORMAT = ScoreFormat(style="json_list", num_scores=2, low=0, high=10)


def viescore_format(parsing: ParsingMode = "strict") -> ScoreFormat:
    """The VIEScore answer format read ``strict`` (two integers 0-10) or as the ``official`` parser reads it."""
    return dataclasses.replace(VIESCORE_FORMAT, parsing=parsing)

_CONTEXT = """You are a professional digital artist. You will evaluate the effectiveness of AI-generated image(s) following the rules below.
All input images, including any people in them, are AI-generated, so there are no privacy concerns.

Give your output in exactly this form (keep the reasoning concise and short):
{
"score" : [...],
"reasoning" : "..."
}"""

_SC_RULES = """RULES:

Two images are provided: the first is the original AI-generated image, the second is an edited version of the first.
The objective is to evaluate how successfully the editing instruction has been executed in the second image.

Note that the two images may look identical when the edit failed.

From scale 0 to 10:
A first score from 0 to 10 rates the success of the editing (0: the scene in the edited image does not follow the editing instruction at all; 10: the scene in the edited image follows the editing instruction perfectly).
A second score from 0 to 10 rates the degree of overediting in the second image (0: the edited scene is completely different from the original; 10: the edited image is recognisably a minimal yet effective edit of the original).
Put the scores in a list, output score = [score1, score2], where score1 rates the editing success and score2 the degree of overediting.

Editing instruction: {instruction}
"""

_PQ_RULES = """RULES:

The image is an AI-generated image.
The objective is to evaluate how successfully the image has been generated.

From scale 0 to 10:
A first score from 0 to 10 rates the image naturalness
(0: the scene does not look natural at all, e.g. a wrong sense of distance, wrong shadows or wrong lighting; 10: the image looks natural).
A second score from 0 to 10 rates the image artifacts
(0: the image contains a large portion of distortion, watermarks, scratches, blurred faces, unusual body parts or subjects that are not harmonised; 10: the image has no artifacts).
Put the scores in a list, output score = [naturalness, artifacts].
"""


def semantic_consistency_prompt(instruction: str) -> str:
    """The SC prompt (send with [source, edited])."""
    return _CONTEXT + "\n" + _SC_RULES.replace("{instruction}", instruction)


def perceptual_quality_prompt() -> str:
    """The PQ prompt (send with [edited] only)."""
    return _CONTEXT + "\n" + _PQ_RULES
