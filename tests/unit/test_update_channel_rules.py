"""The update channel's pure rules: service addresses, sizes, where a setting comes from."""

from __future__ import annotations

import pytest

from bastion.updates import rules
from bastion.updates.rules import ChannelSettingError, Source


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://updates.vendor.example", "https://updates.vendor.example"),
        ("  https://updates.vendor.example/  ", "https://updates.vendor.example"),
        ("http://192.0.2.10:8450/bastion/", "http://192.0.2.10:8450/bastion"),
        ("https://[2001:db8::1]:443", "https://[2001:db8::1]:443"),
        ("HTTPS://Updates.Example", "HTTPS://Updates.Example"),
    ],
)
def test_an_update_service_url_is_kept_without_its_trailing_slash(given: str, kept: str) -> None:
    assert rules.service_url(given) == kept


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("updates.vendor.example", "is not an update service URL"),
        ("ftp://updates.vendor.example", "is not an update service URL"),
        ("https://", "is not an update service URL"),
        ("https://user@updates.example", "is not an update service URL"),
        ("https://updates.example/?wave=1", "is not an update service URL"),
        ("https://updates.example#top", "is not an update service URL"),
        ("https://updates example", "is not an update service URL"),
        ("https://updates.example:0", "is not a host name or address"),
        ("https://updates.example:65536", "is not a host name or address"),
        ("https://upd_ates.example", "is not a host name or address"),
        ("https://" + "a" * 2000 + ".example", "longer than 2000 characters"),
    ],
)
def test_a_wrong_update_service_url_says_what_is_wrong(given: str, reason: str) -> None:
    with pytest.raises(ChannelSettingError, match=reason) as refused:
        rules.service_url(given)
    assert "https://" in str(refused.value) or "characters" in str(refused.value)


def test_a_file_must_hold_something_and_not_too_much() -> None:
    assert rules.within(b"x", 1, "CA") == b"x"
    with pytest.raises(ChannelSettingError, match="is empty"):
        rules.within(b" \n", 10, "CA")
    with pytest.raises(ChannelSettingError, match="larger than 1 KiB"):
        rules.within(b"x" * 1025, 1024, "CA")


def test_where_a_setting_comes_from_is_said_in_words() -> None:
    assert rules.source_words(Source.APPLIANCE, "V") == "set on this appliance"
    assert rules.source_words(Source.ENVIRONMENT, "V", "/etc/ca.pem") == "from V (/etc/ca.pem)"
    assert rules.source_words(Source.SITE_BUILD, "V") == "shipped with the site build"
    system = rules.source_words(Source.SYSTEM, "V", "/etc/anchors.pem")
    assert system == (
        "none set: the operating system's trust store and "
        "BASTION_TRUST_ANCHORS_FILE (/etc/anchors.pem)"
    )
    assert rules.source_words(Source.NONE, "V") == "not configured (V is empty)"


def test_a_rolled_back_release_says_it_needs_a_retry() -> None:
    reason = rules.rolled_back_reason("the health check answered HTTP 500")
    assert reason.startswith("rolled back (the health check answered HTTP 500)")
    assert "only if you ask for a retry" in reason
