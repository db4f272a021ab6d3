import pytest

from mk0r_tui.core.errors import UsageError
from mk0r_tui.core.models import Session


def test_slug_is_first_twelve_characters_lower_cased():
    session = Session.parse("3F2504E0-4F89-11D3-9A0C-0305E82C3301")
    assert session.slug == "3f2504e0-4f8"
    assert session.resource_name == "mk0r-3f2504e0-4f8"
    assert session.analytics_app_id == "mk0r-3f2504e0-4f8" == session.resource_name  # one case rule for every name
    assert session.pg_identifier == "mk0r_3f2504e0_4f8"


def test_new_session_is_a_uuid():
    session = Session.new()
    assert len(session.key) == 36 and session.key.count("-") == 4


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("short", "too short"),
        ("", "empty"),
        ("hello world!x", "may only hold"),
        ("abc_def_ghij", "may only hold"),
        (" abcdefghij", "spaces"),
        ("ÄÖÜäöü-12345", "may only hold"),
        ("'; drop role x;--", "may only hold"),
    ],
)
def test_bad_session_keys_are_refused_with_a_reason(key, fragment):
    with pytest.raises(UsageError) as err:
        Session.parse(key)
    assert fragment in str(err.value)


def test_hyphens_anywhere_in_the_slug_are_fine():
    assert Session.parse("-abcdefghij-").slug == "-abcdefghij-"


def test_long_keys_are_fine_only_the_slug_matters():
    assert Session.parse("abcdefgh-1234_ANY thing after twelve!").slug == "abcdefgh-123"
