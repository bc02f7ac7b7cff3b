"""Model ownership by team: a writer changes only its own team's models.

Checked only for callers proven by a bearer token (with auth off there are no teams to
trust). An ``admin`` may change any model; a caller of team ``*`` (a service token such
as the monitor's, which rolls canaries back for every team) too. A model without an
``owner_team`` belongs to no team: any writer may change it. The role table
(``services/common/roles.py``) has already decided that the caller may call the RPC.
"""

from __future__ import annotations

from services.common.denials import permission_denied
from services.common.errors import PermissionDenied
from services.common.roles import ADMIN
from services.registry.records import Caller, ModelRecord

ALL_TEAMS = "*"


def _unrestricted(caller: Caller) -> bool:
    return not caller.authenticated or ADMIN in caller.roles or caller.team == ALL_TEAMS


def _denied(caller: Caller, action: str, cause: str) -> PermissionDenied:
    return permission_denied(caller.identity, action, cause)


def check_owner(caller: Caller, model: ModelRecord, action: str = "change") -> None:
    """PERMISSION_DENIED unless ``caller`` may change ``model``."""
    if _unrestricted(caller) or not model.owner_team or model.owner_team == caller.team:
        return
    raise _denied(
        caller,
        f"{action} '{model.resource}'",
        f"team {caller.team!r} is not the owner {model.owner_team!r}",
    )


def owner_for_new_model(caller: Caller, owner_team: str, resource: str) -> str:
    """The ``owner_team`` a new model gets: the caller's team when none is asked for; a
    team other than the caller's is refused (unless the caller is unrestricted)."""
    if _unrestricted(caller):
        return owner_team
    if not owner_team:
        return caller.team
    if owner_team != caller.team:
        raise _denied(
            caller,
            f"create '{resource}'",
            f"owner_team {owner_team!r} is not the caller's team {caller.team!r}",
        )
    return owner_team


def check_new_owner(caller: Caller, owner_team: str, resource: str) -> None:
    """A model handed to ``owner_team`` by an update: only to the caller's own team."""
    if _unrestricted(caller) or owner_team == caller.team:
        return
    raise _denied(
        caller,
        f"give '{resource}' to another team",
        f"owner_team {owner_team!r} is not the caller's team {caller.team!r}",
    )
