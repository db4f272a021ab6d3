"""Where the pool key comes from, and what a wrong one does (core/pool_crypto.py)."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.fernet import Fernet

from mk0r_tui.core.config import load_settings
from mk0r_tui.core.errors import ConfigError
from mk0r_tui.core.pool_crypto import KEY_NAME, PoolCipher


def test_without_env_or_keyring_a_private_key_file_is_made_once_and_reused(mk0r_home):
    settings = load_settings(no_keyring=True)
    first = PoolCipher(settings)
    assert first.source == "file"
    path = settings.pool_key_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = first.seal({"PGPASSWORD": "s3cret-value"})
    assert "s3cret-value" not in token
    assert PoolCipher(settings).open(token) == {"PGPASSWORD": "s3cret-value"}  # a second process: same key


def test_the_env_key_wins_and_a_different_key_cannot_open_a_token(mk0r_home):
    key = Fernet.generate_key().decode()
    sealed = PoolCipher(load_settings(pool_key=key)).seal({"RESEND_API_KEY": "re_abcdefgh"})
    other = PoolCipher(load_settings(no_keyring=True))
    with pytest.raises(ConfigError, match="pool drain"):
        other.open(sealed)
    assert PoolCipher(load_settings(pool_key=key)).source == "env"


def test_the_keyring_entry_is_used_when_present(mk0r_home, memory_keyring):
    key = Fernet.generate_key().decode()
    memory_keyring.set_password("mk0r-tui", KEY_NAME, key)
    cipher = PoolCipher(load_settings())
    assert cipher.source == "keyring"
    assert PoolCipher(load_settings(pool_key=key)).open(cipher.seal({"A": "b"})) == {"A": "b"}


def test_a_malformed_key_is_a_configuration_error(mk0r_home):
    with pytest.raises(ConfigError, match="not a Fernet key"):
        PoolCipher(load_settings(pool_key="not-a-key"))
