"""--uid/--gid: the calls that drop root, in a forked child so the test process stays itself."""

from __future__ import annotations

import grp
import json
import os
import pwd

import pytest

from djtasks.management.run_as import ROOT_WARNING, drop_privileges, group_id, root_warning, user_id

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can change its user")
NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def in_child(uid: int | None, gid: int | None) -> dict:
    """Drop privileges in a forked child; return what it became, or the error it got."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit hooks
        try:
            try:
                line = drop_privileges(uid, gid)
                try:
                    os.setuid(0)
                    took_back = True
                except PermissionError:
                    took_back = False
                report = {"line": line, "uid": os.getuid(), "euid": os.geteuid(),
                          "gid": os.getgid(), "groups": sorted(os.getgroups()),
                          "took_root_back": took_back}
            except Exception as exc:
                report = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = json.loads(pipe.read())
    os.waitpid(pid, 0)
    return report


@as_root
def test_uid_alone_takes_the_users_group_and_root_cannot_be_taken_back():
    became = in_child(NOBODY.pw_uid, None)
    assert (became["uid"], became["euid"], became["gid"]) == (NOBODY.pw_uid, NOBODY.pw_uid,
                                                              NOBODY.pw_gid)
    assert 0 not in became["groups"], "root's supplementary groups are dropped first"
    assert became["took_root_back"] is False
    assert became["line"] == f"running as uid {NOBODY.pw_uid}, gid {NOBODY.pw_gid}, " \
                             f"groups {became['groups']}"


@as_root
def test_uid_and_gid_given():
    staff = grp.getgrnam("staff").gr_gid
    became = in_child(NOBODY.pw_uid, staff)
    assert (became["uid"], became["gid"]) == (NOBODY.pw_uid, staff)


@as_root
def test_gid_alone_changes_only_the_groups():
    became = in_child(None, NOGROUP.gr_gid)
    assert (became["uid"], became["gid"], became["groups"]) == (0, NOGROUP.gr_gid,
                                                                [NOGROUP.gr_gid])


def test_neither_given_changes_nothing():
    assert in_child(None, None)["line"] is None


def test_names_and_numbers_are_read_and_unknown_ones_named():
    assert user_id("nobody") == user_id(str(NOBODY.pw_uid)) == NOBODY.pw_uid
    assert group_id(NOGROUP.gr_name) == group_id(str(NOGROUP.gr_gid)) == NOGROUP.gr_gid
    with pytest.raises(ValueError, match="--uid: no such user: 'no-such-user'"):
        user_id("no-such-user")
    with pytest.raises(ValueError, match="--gid: no such group: '987654'"):
        group_id("987654")


def test_the_root_warning_says_how_to_drop_privileges():
    assert root_warning() == (ROOT_WARNING if os.geteuid() == 0 else None)
    assert "--uid" in ROOT_WARNING
    assert "--gid" in ROOT_WARNING
