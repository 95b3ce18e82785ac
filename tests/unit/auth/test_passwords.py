from __future__ import annotations

import asyncio

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from meadowlark.auth import passwords


def test_argon2id_hash_format_and_verify():
    stored = asyncio.run(passwords.hash_password("correct horse"))
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert "correct horse" not in stored
    assert asyncio.run(passwords.verify_password("correct horse", stored)) == (True, None)
    assert asyncio.run(passwords.verify_password("wrong horse", stored)) == (False, None)


def test_same_password_hashes_differently():
    first, second = (asyncio.run(passwords.hash_password("pw-12345678")) for _ in range(2))
    assert first != second


def test_outdated_parameters_are_rehashed_on_login():
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
    old = weak.hash("s3cret-pass")
    valid, replacement = asyncio.run(passwords.verify_password("s3cret-pass", old))
    assert valid
    assert replacement is not None and replacement.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert asyncio.run(passwords.verify_password("s3cret-pass", replacement)) == (True, None)
    # A wrong password never yields a replacement hash.
    assert asyncio.run(passwords.verify_password("nope", old)) == (False, None)


def test_unknown_user_checks_a_dummy_hash():
    passwords._dummy_hash.cache_clear()
    assert asyncio.run(passwords.verify_password("anything", None)) == (False, None)
    assert passwords._dummy_hash.cache_info().currsize == 1  # a real Argon2 check was done
    assert asyncio.run(passwords.verify_password("a password no account has", None)) == (
        False,
        None,
    )


def test_corrupt_stored_hash_reads_as_wrong_password():
    for corrupt in ("", "plaintext", "$argon2id$v=19$m=65536,t=3,p=4$garbage", "$2b$12$abc"):
        assert asyncio.run(passwords.verify_password("pw", corrupt)) == (False, None)


def test_hashing_runs_off_the_event_loop():
    async def main() -> float:
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = loop.time()
        await passwords.hash_password("pw-12345678")
        elapsed = loop.time() - started
        task.cancel()
        return ticks / max(elapsed / 0.01, 1)

    assert asyncio.run(main()) > 0.3  # the loop kept running while Argon2 worked
