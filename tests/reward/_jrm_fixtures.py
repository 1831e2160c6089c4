"""Small shared builders for the JRM tests: images, preference pairs."""

from pathlib import Path

from PIL import Image

from reward.jrm.pairs import EditScores, LoadedPair, PreferencePair


def solid(color, size=(64, 48)):
    return Image.new("RGB", size, color)


def make_pair(record_id, if_scores, vq_scores, tie=False, rationales=None, colors=((255, 0, 0), (0, 0, 255))):
    """A loaded pair whose preferred/rejected human scores are ``if_scores`` / ``vq_scores`` (pref, rej)."""
    pair = PreferencePair(
        record_id=record_id,
        instruction="make the square blue",
        source=Path("src.png"),
        preferred=Path("a.png"),
        rejected=Path("b.png"),
        scores_preferred=EditScores(if_scores[0], vq_scores[0], if_scores[0] + vq_scores[0]),
        scores_rejected=EditScores(if_scores[1], vq_scores[1], if_scores[1] + vq_scores[1]),
        tie=tie,
        rationales=dict(rationales or {}),
    )
    return LoadedPair(pair=pair, source=solid((255, 0, 0)), preferred=solid(colors[1]), rejected=solid(colors[0], (48, 64)))
