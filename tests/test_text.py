"""The one masking helper and the one truncation helper (rxlens._text): laws, then examples."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rxlens._text import MASK, mask_secrets, secrets_of, truncate

# Secrets are drawn from letters that the surrounding text never uses, so any of them left in
# a result is a piece of the secret.
SECRET_CHARS = "ghjkmnpqrstvw0123456789"
secret = st.text(SECRET_CHARS, min_size=8, max_size=60)
other = st.text("xyz \u20ac\n{}\"':.", max_size=80)


def kept_part(text: str) -> str:
    """What truncate kept of a text, without its "... [N more characters]" note."""
    return text.split("... [", 1)[0]


@given(key=secret, before=other, after=other, limit=st.integers(0, 300))
def test_masking_then_cutting_never_leaves_a_piece(
    key: str, before: str, after: str, limit: int
) -> None:
    text = before + f"Bearer {key}" + after + key
    result = kept_part(
        truncate(mask_secrets(text, secrets_of({"Authorization": f"Bearer {key}"})), limit)
    )
    assert not set(result) & set(SECRET_CHARS)


@given(key=secret, before=other, after=other, data=st.data())
def test_a_text_cut_inside_the_key_keeps_at_most_three_of_its_characters(
    key: str, before: str, after: str, data: st.DataObject
) -> None:
    text = before + key + after
    cut = data.draw(st.integers(0, len(text)))
    result = mask_secrets(text[:cut], [key], cut=True)
    assert len(set(result) & set(SECRET_CHARS)) <= 3
    assert key[:4] not in result


@given(text=other, limit=st.integers(0, 100))
def test_truncate_keeps_a_short_text_and_says_how_much_it_cut(text: str, limit: int) -> None:
    result = truncate(text, limit)
    if len(text) <= limit:
        assert result == text
    else:
        assert result == text[:limit] + f"... [{len(text) - limit} more characters]"


@given(text=other, key=secret)
def test_masking_changes_nothing_without_the_secret(text: str, key: str) -> None:
    assert mask_secrets(text, [key]) == text
    assert mask_secrets(text, []) == text


def test_the_header_and_the_bare_key_are_both_masked() -> None:
    headers = {"Authorization": "Bearer sk-123456"}
    assert secrets_of(headers) == ("Bearer sk-123456", "sk-123456")
    assert secrets_of({}) == () and secrets_of(None) == ()
    text = "got Bearer sk-123456, i.e. sk-123456"
    assert mask_secrets(text, secrets_of(headers)) == f"got {MASK}, i.e. {MASK}"


def test_a_cut_tail_is_masked_only_when_the_text_was_cut() -> None:
    assert mask_secrets("you sent Bearer sk-12", ["Bearer sk-123456"], cut=True) == (
        f"you sent {MASK}"
    )
    assert mask_secrets("you sent Bearer sk-12", ["Bearer sk-123456"]) == "you sent Bearer sk-12"
    assert mask_secrets("size: 4 KiB", ["Bearer sk-123456"], cut=True) == "size: 4 KiB"
