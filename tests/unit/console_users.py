"""A logged-in staff user of the admin console holding exactly the permissions a test names."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.test import Client


def staff_client(*codenames: str, csrf: bool = False) -> Client:
    """Return a client logged in as a staff user with only ``codenames`` (djtasks')."""
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="djtasks",
                                                         codename__in=codenames))
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client
