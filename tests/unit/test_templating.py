"""The pages' own template filters."""

from __future__ import annotations

from markupsafe import Markup

from bastion.platform.web.templating import breakable


def test_names_are_escaped_then_may_wrap_after_each_comma_and_dot() -> None:
    shown = breakable('CN=<b>"x"</b>,O=Bastion appliance.example')
    assert shown == Markup(
        "CN=&lt;b&gt;&#34;x&#34;&lt;/b&gt;,<wbr>O=Bastion appliance.<wbr>example"
    )
