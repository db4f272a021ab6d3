import errno
import os
import stat

import pytest
from dotenv import dotenv_values

from mk0r_tui.core.envfile import (
    EnvWriteError,
    is_secret,
    mask_value,
    quote_value,
    render_env,
    scrub,
    write_env_file,
)

TRICKY = {
    "PLAIN": "abc123",
    "URL": "postgresql://u:p%40ss@host:5432/db?sslmode=require",
    "SPACES": "hello world",
    "HASH": "a#b",
    "DOLLAR": "cost $5 ${HOME}",
    "DOUBLE": 'say "hi"',
    "SINGLE": "it's",
    "EMPTY": "",
    "EQUALS": "a=b=c",
    "UNICODE": "naïve café",
}


def test_render_reads_back_exactly_with_python_dotenv(tmp_path):
    path = write_env_file(tmp_path / ".env", TRICKY, header="generated\nby a test")
    assert dotenv_values(path, interpolate=False) == TRICKY


def test_env_file_is_mode_0600(tmp_path):
    path = write_env_file(tmp_path / ".env", {"A": "1"})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_values_that_cannot_round_trip_are_refused():
    with pytest.raises(ValueError):
        quote_value("line1\nline2")
    with pytest.raises(ValueError):
        quote_value("it's a \\ path #1")
    with pytest.raises(ValueError):
        render_env({"BAD-NAME": "x"})


#: Node's dotenv `parse` (dotenv 16, lib/main.js, BSD-2-Clause), run by the real `node`: how an
#: app written in JavaScript reads the `.env` back
NODE_DOTENV_PARSE = r"""
const LINE = /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/mg
function parse (src) {
  const obj = {}
  let lines = src.toString().replace(/\r\n?/mg, '\n')
  let match
  while ((match = LINE.exec(lines)) != null) {
    const key = match[1]
    let value = (match[2] || '').trim()
    const maybeQuote = value[0]
    value = value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2')
    if (maybeQuote === '"') { value = value.replace(/\\n/g, '\n').replace(/\\r/g, '\r') }
    obj[key] = value
  }
  return obj
}
process.stdout.write(JSON.stringify(parse(require('fs').readFileSync(process.argv[2], 'utf8'))))
"""

QUOTES_AND_DOLLAR = {
    "PASSWORD_ALL": "p'w\"d$x",  # the value of issue 9: ', " and $ together
    "BACKSLASH_AND_QUOTE": "it's a \\ path",
    "DOLLAR_BRACE": "a'b\"${HOME}",
}


def test_a_value_with_both_quotes_and_a_dollar_round_trips_in_python_and_node(tmp_path):
    import json
    import shutil
    import subprocess

    env = {**TRICKY, **QUOTES_AND_DOLLAR}
    path = write_env_file(tmp_path / ".env", env, header="generated")
    assert dotenv_values(path, interpolate=False) == env
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = tmp_path / "parse.js"
    script.write_text(NODE_DOTENV_PARSE)
    out = subprocess.run([node, str(script), str(path)], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(out.stdout) == env
    # and Node's own parser (process.loadEnvFile), as test_node_reads_back_exactly_what_was_written
    builtin = (
        "const before = new Set(Object.keys(process.env));"
        f"process.loadEnvFile({json.dumps(str(path))});"
        "const out = {}; for (const k of Object.keys(process.env)) if (!before.has(k)) out[k] = process.env[k];"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run([node, "-e", builtin], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    if result.returncode == 0:
        assert json.loads(result.stdout) == env


def test_a_value_no_quoting_can_carry_names_its_key_and_the_reason():
    with pytest.raises(ValueError) as err:
        render_env({"OK": "fine", "TRICKY_ONE": "a'b\"c #d"})
    message = str(err.value)
    assert "TRICKY_ONE" in message and "'#'" in message and "both ' and \"" in message
    assert "a'b" not in message  # the value itself (maybe a secret) is never in the message


def test_disk_full_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = write_env_file(tmp_path / ".env", {"OLD": "value"})
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EnvWriteError) as err:
        write_env_file(path, {"NEW": "value"})
    assert "disk is full" in str(err.value) and "untouched" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EnvWriteError) as err:
        write_env_file(blocker / "app" / ".env", {"A": "1"})
    assert str(blocker) in str(err.value)


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("RESEND_API_KEY", "re_123456789abcdef", True),
        ("PGPASSWORD", "x", True),
        ("NEON_ROLE_PASSWORD", "x", True),
        ("GITHUB_PROVISIONING_TOKEN", "ghp_x", True),
        ("DATABASE_URL", "postgresql://u:pw@h/db", True),
        ("DATABASE_URL", "postgresql://h/db", False),
        ("GITHUB_REPO_URL", "https://github.com/o/r", False),
        ("VITE_POSTHOG_APP_ID", "mk0r-abc", False),
        ("PGHOST", "127.0.0.1", False),
    ],
)
def test_one_place_decides_what_is_secret(name, value, secret):
    assert is_secret(name, value) is secret


def test_masks_keep_just_enough_to_recognise():
    assert mask_value("RESEND_API_KEY", "re_abcdefghijk3fa9") == "re_••••"
    assert mask_value("DATABASE_URL", "postgresql://user:hunter2@host:5432/db") == "postgresql://user:••••@host:5432/db"
    assert mask_value("PGPASSWORD", "short") == "••••"
    assert mask_value("PGHOST", "localhost") == "localhost"


def test_scrub_removes_every_secret_from_text():
    text = scrub("failed with token ghp_SECRETSECRET123 and pw hunter2hunter2", ["ghp_SECRETSECRET123", "hunter2hunter2"])
    assert "SECRETSECRET" not in text and "hunter2hunter2" not in text


def test_node_reads_back_exactly_what_was_written(tmp_path):
    """Node's own .env parser (process.loadEnvFile, Node ≥ 20.12) follows dotenv's rules."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    path = write_env_file(tmp_path / ".env", TRICKY)
    script = (
        "const before = new Set(Object.keys(process.env));"
        f"process.loadEnvFile({json.dumps(str(path))});"
        "const out = {}; for (const k of Object.keys(process.env)) if (!before.has(k)) out[k] = process.env[k];"
        "console.log(JSON.stringify(out));"
    )
    result = subprocess.run([node, "-e", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    if result.returncode != 0 and "loadEnvFile is not a function" in result.stderr:
        pytest.skip("this node has no process.loadEnvFile")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == TRICKY


def test_a_url_with_a_password_is_secret_whatever_its_name():
    from mk0r_tui.core.envfile import is_secret, mask_value, secret_values

    uri = "postgresql://neondb_owner:npg_S3cretPw@ep-cool-1.us-east-2.aws.neon.tech/neondb?sslmode=require"
    assert is_secret("DATABASE_URL_UNPOOLED", uri)
    assert "npg_S3cretPw" not in mask_value("DATABASE_URL_UNPOOLED", uri)
    assert secret_values({"DATABASE_URL_UNPOOLED": uri}) == ["npg_S3cretPw"]
    assert not is_secret("GITHUB_REPO_URL", "https://github.com/octo/mk0r-abc")


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        # issue 16: PGPASSWORD showed `eP…igas` (6 of 32 characters) while DATABASE_URL masked it whole
        ("PGPASSWORD", "ePq2Yx0_fT9kLmNoPqRsTuVwXyZigas", "••••"),
        ("PGPASSWORD", "re_looks_like_a_key_but_is_a_password", "••••"),
        ("SMTP_PASSWORD", "abcdefghijklmnopqrstuvwxyz", "••••"),
        ("DATABASE_URL", "postgresql://u:ePq2Yx0_fT9kLmNo@127.0.0.1:5432/db", "postgresql://u:••••@127.0.0.1:5432/db"),
        ("RESEND_API_KEY", "re_0123456789abcdefghij", "re_••••"),
        ("NEON_PROVISIONING_KEY", "napi_" + "x" * 59, "napi_••••"),
        ("GITHUB_PROVISIONING_TOKEN", "ghp_" + "y" * 36, "ghp_••••"),
        ("GITHUB_PROVISIONING_TOKEN", "github_pat_" + "z" * 70, "github_pat_••••"),
        ("SOME_TOKEN", "tok3nWithNoKnownPrefix123", "••••"),
        ("SOME_TOKEN", "ab_cdefghijklmnopqrstu", "••••"),  # an unknown prefix may be secret: not shown
    ],
)
def test_one_masking_rule_shows_no_character_of_a_secret(name, value, shown):
    masked = mask_value(name, value)
    assert masked == shown
    secret = value.split("://u:")[1].split("@")[0] if "://" in value else value
    prefix = next((p for p in ("github_pat_", "napi_", "ghp_", "re_") if shown.startswith(p)), "")
    # no run of 3 characters of the secret (beyond its public prefix) is shown
    rest = secret[len(prefix):]
    assert not any(rest[i:i + 3] in masked.replace(prefix, "", 1) for i in range(len(rest) - 2)), masked


def test_scrub_masks_a_password_like_every_screen():
    password = "ePq2Yx0_fT9kLmNoPqRsTuVwXyZigas"
    assert scrub(f"auth failed for pw {password}", [password]) == "auth failed for pw ••••"
