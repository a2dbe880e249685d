"""Whose state untorn acts on: the same rules as the library and the CLI (untorn.trust)."""

import os

import pytest

import untorn


def test_trust_user_takes_a_name_or_a_uid():
    assert untorn.trust_user("65534") == 65534
    assert untorn.trust_user("root") == 0
    with pytest.raises(ValueError, match="no user"):
        untorn.trust_user("no-such-user-untorn")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant another user's temp")
def test_another_users_temp_is_left_alone(tmp_path):
    temp = tmp_path / ".notes.untorn-deadbeef.tmp"
    temp.write_text("their notes\n")
    os.chown(temp, 4321, 4321)
    actions = untorn.recover(tmp_path)
    assert temp.read_text() == "their notes\n"
    assert [a.action for a in actions] == ["untrusted_temp"], actions
