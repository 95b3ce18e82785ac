from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from meadowlark.auth import tokens

KEY = "k" * 48
OTHER_KEY = "o" * 48


def _issue(now: datetime | None = None, lifetime: int = 300, key: str = KEY) -> str:
    return tokens.issue_access_token(
        key=key,
        user_id="UserId_1",
        session_id="s1",
        generation=3,
        now=now or datetime.now(UTC),
        lifetime=lifetime,
    )


def test_round_trip():
    now = datetime.now(UTC).replace(microsecond=0)
    claims = tokens.decode_access_token(_issue(now, 300), key=KEY)
    assert (claims.user_id, claims.session_id, claims.generation) == ("UserId_1", "s1", 3)
    assert claims.expires_at == now + timedelta(seconds=300)


def test_expired_token_is_refused():
    token = _issue(datetime.now(UTC) - timedelta(seconds=400), 300)
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(token, key=KEY)


def test_wrong_key_is_refused():
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(_issue(key=OTHER_KEY), key=KEY)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_payload_is_refused():
    header, payload, signature = _issue().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "UserId_admin"
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(f"{header}.{_b64(claims)}.{signature}", key=KEY)


def test_alg_none_is_refused():
    now = int(datetime.now(UTC).timestamp())
    unsigned = (
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}."
        f"{_b64({'iss': 'meadowlark', 'sub': 'u', 'sid': 's', 'gen': 0, 'exp': now + 60})}."
    )
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(unsigned, key=KEY)


@pytest.mark.parametrize("missing", ["exp", "sub", "sid", "gen", "iss"])
def test_required_claims(missing):
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "meadowlark", "sub": "u", "sid": "s", "gen": 0, "exp": now + 60}
    del claims[missing]
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(jwt.encode(claims, KEY, algorithm="HS256"), key=KEY)


def test_foreign_issuer_and_bad_generation_are_refused():
    now = int(datetime.now(UTC).timestamp())
    base = {"sub": "u", "sid": "s", "gen": 0, "exp": now + 60}
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(jwt.encode({**base, "iss": "evil"}, KEY, "HS256"), key=KEY)
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(
            jwt.encode({**base, "iss": "meadowlark", "gen": "x"}, KEY, "HS256"), key=KEY
        )


@pytest.mark.parametrize("garbage", ["", "a.b.c", "not a token", "x" * 5000, "é.é.é"])
def test_garbage_is_refused(garbage):
    with pytest.raises(tokens.InvalidTokenError):
        tokens.decode_access_token(garbage, key=KEY)


def test_opaque_token_split_and_match():
    for _ in range(50):  # secrets may contain "_" and "-"
        token, token_id, stored = tokens.new_opaque_token(tokens.API_TOKEN_PREFIX)
        assert token.startswith("mlk_")
        assert stored != token and len(stored) == 64
        parts = tokens.split_opaque_token(token, tokens.API_TOKEN_PREFIX)
        assert parts is not None and parts[0] == token_id
        assert tokens.secret_matches(parts[1], stored)
        assert not tokens.secret_matches(parts[1] + "x", stored)
        assert tokens.split_opaque_token(token, tokens.REFRESH_TOKEN_PREFIX) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "mlk",
        "mlk_",
        "mlk__secret",
        "mlk_0123456789abcdef_",
        "mlk_short_secret",
        "mlr_0123456789abcdef_secret",
        "MLK_0123456789abcdef_secret",
    ],
)
def test_malformed_opaque_tokens_do_not_split(token):
    assert tokens.split_opaque_token(token, tokens.API_TOKEN_PREFIX) is None
