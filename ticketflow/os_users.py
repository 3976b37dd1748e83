"""Running child processes as another OS user (servers that refuse to run as root)."""

from __future__ import annotations

import pwd


def as_user(name: str | None) -> dict:
    """`subprocess` arguments that drop to OS user `name` with only that user's own group.

    Keeping root's groups would make root-group directories (mode 0701, as pytest creates them)
    untraversable for the child: group bits, not "other" bits, would apply to it.
    """
    if name is None:
        return {}
    return {"user": name, "group": pwd.getpwnam(name).pw_gid, "extra_groups": []}
