"""A signed token has one spelling: any other way of writing the same parts is refused.

`int()` reads `+1`, `0001`, `١` and `１` as 1, and the base64 decoder skips padding
and characters outside its alphabet, so without a check a single token would have
endless spellings, each of them accepted as genuine.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.mail import tokens
from dispatcher.web import subscription

SECRET = "test-secret-key-0123456789-abcdefghijkl"
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def _number_variants(digits: str) -> list[str]:
    variants = [f"+{digits}", f"0{digits}", f"000{digits}", f" {digits}", f"{digits}\n"]
    variants += [digits.translate(ARABIC_INDIC), digits.translate(FULLWIDTH)]
    variants += [f"{digits[0]}_{digits[1:]}"] if len(digits) > 1 else []
    return variants


def _b64_variants(part: str, junk: str, position: int) -> list[str]:
    at = position % (len(part) + 1)
    variants = [part + "=", part + "==", part[:at] + junk + part[at:], part + junk]
    variants += [part.swapcase()]  # changes the decoded bytes
    variants += [part.replace("-", "+").replace("_", "/")]  # the standard alphabet's spelling
    # The last character of an unpadded base64 string carries unused low bits: another
    # character with the same high bits decodes to the same bytes.
    last = B64.index(part[-1])
    unused = {2: 15, 3: 3}.get(len(part) % 4, 0)
    variants += [part[:-1] + B64[(last & ~unused) | u] for u in range(unused + 1)]
    return variants


def variants(token: str, junk: str, position: int) -> set[str]:
    number, campaign, signature = token.split(".")
    out = {f"{n}.{campaign}.{signature}" for n in _number_variants(number)}
    out |= {f"{number}.{c}.{signature}" for c in _b64_variants(campaign, junk, position)}
    out |= {f"{number}.{campaign}.{s}" for s in _b64_variants(signature, junk, position)}
    out |= {token + junk, junk + token, token.upper(), token.lower(), f" {token}", f"{token}\n"}
    return out - {token}


subjects = st.builds(
    tokens.TokenSubject,
    purpose=st.sampled_from(["unsubscribe", "confirm"]),
    subscriber_id=st.integers(min_value=1, max_value=10**12),
    campaign_id=st.text(
        st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40
    ),
)
junk_chars = st.text(st.sampled_from("!*$%&~ \t\n.=+/@#äß\x00"), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None, database=None)
@given(subject=subjects, junk=junk_chars, position=st.integers(min_value=0, max_value=80))
def test_only_the_signed_spelling_of_a_token_verifies(
    subject: tokens.TokenSubject, junk: str, position: int
) -> None:
    token = tokens.sign(subject, key=SECRET)
    assert tokens.verify(token, purpose=subject.purpose, key=SECRET) == subject
    for variant in variants(token, junk, position):
        assert tokens.verify(variant, purpose=subject.purpose, key=SECRET) is None, variant


def test_the_variants_of_the_issue_are_refused() -> None:
    subject = tokens.TokenSubject("unsubscribe", 1, "clusterwoche-2019")
    token = tokens.sign(subject, key=SECRET)
    _, campaign, signature = token.split(".")
    assert token.startswith("1.")
    for number in ("+1", "0001", "١", "１"):
        assert (
            tokens.verify(f"{number}.{campaign}.{signature}", purpose="unsubscribe", key=SECRET)
            is None
        )
    for spelled in (f"{token}=", f"1.{campaign}==.{signature}", f"{token}!junk", f"{token} "):
        assert tokens.verify(spelled, purpose="unsubscribe", key=SECRET) is None
    assert tokens.verify(token, purpose="unsubscribe", key=SECRET) == subject


@settings(max_examples=100, deadline=None, database=None)
@given(
    subscriber_id=st.integers(min_value=1, max_value=10**9),
    minutes=st.integers(min_value=0, max_value=10**8),
)
def test_a_confirm_link_has_one_spelling_too(subscriber_id: int, minutes: int) -> None:
    issued = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minutes)
    token = subscription.confirm_token(subscriber_id, "cw", issued=issued, key=SECRET)
    assert subscription.read_confirm_token(token, key=SECRET) is not None
    head, _, rest = token.partition(".")
    for spelled in [f"{n}.{rest}" for n in _number_variants(head)] + [
        f"{head}.{rest}=",
        token + "!",
    ]:
        assert subscription.read_confirm_token(spelled, key=SECRET) is None, spelled
