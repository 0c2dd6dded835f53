"""``--uid``/``--gid`` of runworker and runbeat, and the warning when they run as root (edge layer).

A worker runs whatever code its messages name; one that runs as root hands root to anyone
who can publish to its broker. Dropping privileges goes in the only order that works: the
supplementary groups first (only root may set them), then the group, then the user (after
which neither of the others can change).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Callable, Mapping
from typing import Any

from django.core.management.base import CommandError

logger = logging.getLogger("djtasks")

ROOT_WARNING = ("running as root: any task message runs with root's rights. Start it as an "
                "unprivileged user, or pass --uid (and --gid) to drop to one after start-up.")


def root_warning() -> str | None:
    """The warning to log when this process runs as root, else None."""
    return ROOT_WARNING if os.geteuid() == 0 else None


def user_id(value: str) -> int:
    """A user name or number as a uid; ValueError naming it when there is no such user."""
    try:
        return pwd.getpwnam(value).pw_uid if not value.isdigit() else pwd.getpwuid(int(value)).pw_uid
    except KeyError:
        raise ValueError(f"--uid: no such user: {value!r}") from None


def group_id(value: str) -> int:
    """A group name or number as a gid; ValueError naming it when there is no such group."""
    try:
        return grp.getgrnam(value).gr_gid if not value.isdigit() else grp.getgrgid(int(value)).gr_gid
    except KeyError:
        raise ValueError(f"--gid: no such group: {value!r}") from None


def drop_privileges(uid: int | None, gid: int | None) -> str | None:
    """Become ``uid``/``gid`` for good; return a line saying so, or None when neither is given.

    With only ``uid``, the group is that user's primary group and the groups its
    membership gives. PermissionError when this process may not change, or could take
    root back afterwards.
    """
    if uid is None:
        if gid is None:
            return None
        os.setgroups([gid])
        os.setgid(gid)
    else:
        user = pwd.getpwuid(uid)
        group = user.pw_gid if gid is None else gid
        os.initgroups(user.pw_name, group)
        os.setgid(group)
        os.setuid(uid)
    if _can_take_root_back():
        raise PermissionError(f"dropped to uid {os.getuid()}, gid {os.getgid()}, but root can "
                              "be taken back: refusing to run")
    return f"running as uid {os.getuid()}, gid {os.getgid()}, groups {sorted(os.getgroups())}"


def _can_take_root_back() -> bool:
    if os.getuid() == 0:
        return False  # still root by choice (--uid 0): nothing was dropped
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--uid", type=_checked(user_id), default=None, metavar="USER",
                        help="run as this user (name or number) once started as root")
    parser.add_argument("--gid", type=_checked(group_id), default=None, metavar="GROUP",
                        help="run as this group (name or number; default: --uid's own group)")


def become_configured_user(options: Mapping[str, Any]) -> None:
    """Drop to ``--uid``/``--gid`` when given; warn when the process stays root without them."""
    try:
        changed = drop_privileges(options["uid"], options["gid"])
    except PermissionError as exc:
        raise CommandError(f"cannot run as --uid/--gid: {exc}") from exc
    if changed:
        logger.info("%s", changed)
    elif warning := root_warning():
        logger.warning("%s", warning)


def _checked(convert: Callable[[str], int]) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            return convert(value)
        except ValueError as exc:
            raise ArgumentTypeError(str(exc)) from exc
    return parse
