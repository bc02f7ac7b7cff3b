"""Which database errors are an outage (answered UNAVAILABLE, worth a retry) and which
are a fault of the statement or the data (answered as they are)."""

from __future__ import annotations

import psycopg
from sqlalchemy import exc

from services.common.db import is_outage


def wrapped(kind: type[exc.DBAPIError], orig: Exception) -> exc.DBAPIError:
    return kind("SELECT 1", {}, orig)


def test_a_closed_or_refused_connection_is_an_outage() -> None:
    assert is_outage(wrapped(exc.InterfaceError, psycopg.InterfaceError("the connection is lost")))
    assert is_outage(wrapped(exc.OperationalError, psycopg.OperationalError("refused")))
    assert is_outage(exc.TimeoutError("QueuePool limit reached"))


def test_a_bad_statement_or_bad_data_is_not() -> None:
    assert not is_outage(wrapped(exc.ProgrammingError, psycopg.ProgrammingError("syntax")))
    assert not is_outage(wrapped(exc.IntegrityError, psycopg.IntegrityError("duplicate key")))
    assert not is_outage(ValueError("not a database error"))
