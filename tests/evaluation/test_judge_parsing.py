import pytest

from reward.judges.parsing import MalformedAnswerError
from reward.judges.prompts.imgedit import IMGEDIT_FORMAT
from reward.judges.prompts.viescore import VIESCORE_FORMAT


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": [7, 3], "reasoning": "ok"}', (7.0, 3.0)),
        ('Sure.\n||V^=^V||\n{\n"score" : [10, 0],\n"reasoning" : "x"\n}\n||V^=^V||', (10.0, 0.0)),
        ('```json\n{"score": [5, 6], "reasoning": "fine"}\n```', (5.0, 6.0)),
    ],
)
def test_viescore_answers_parse(text, expected):
    assert VIESCORE_FORMAT.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"score": [7, 3], "reasoning": "unterminated}',  # malformed JSON
        '{"score": [11, 3]}',  # out of range
        '{"score": [-1, 3]}',
        '{"score": [7]}',  # wrong count
        '{"score": [7.5, 3]}',  # not an integer
        '{"reasoning": "no score"}',
        "I cannot evaluate these images.",
        "",
        None,
    ],
)
def test_viescore_bad_answers_raise(text):
    with pytest.raises(MalformedAnswerError):
        VIESCORE_FORMAT.parse(text)


def test_imgedit_labelled_lines_parse_whatever_the_criterion_names():
    text = (
        "Brief reasoning: colour changed, slight halo.\n"
        "Prompt Compliance: 4\n**Visual Seamlessness:** 3\nPhysical & Detail Fidelity: 2"
    )
    assert IMGEDIT_FORMAT.parse(text) == (4.0, 3.0, 2.0)


@pytest.mark.parametrize(
    "text",
    [
        "Brief reasoning: x\nPrompt Compliance: 4\nVisual Seamlessness: 3",  # two scores
        "Brief reasoning: x\nA: 4\nB: 6\nC: 2",  # out of range
        "Brief reasoning: x\nA: 0\nB: 3\nC: 2",
        "Brief reasoning: all good",
    ],
)
def test_imgedit_bad_answers_raise(text):
    with pytest.raises(MalformedAnswerError):
        IMGEDIT_FORMAT.parse(text)
