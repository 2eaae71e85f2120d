from __future__ import annotations

import grpc

from coordinator.sessions import AgentSession, Sessions


async def test_a_stream_silent_for_the_threshold_is_ended_with_deadline_exceeded():
    sessions = Sessions()
    quiet, talking = AgentSession(region="eu-west-1"), AgentSession(region="us-east-1")
    quiet.heard_at, talking.heard_at = 100.0, 102.5
    sessions.add(quiet)
    sessions.add(talking)

    assert sessions.end_silent(102.9, 3.0, 0.5) == []  # 2.9 s: not yet
    assert quiet.error is None and not quiet.ended.is_set()

    assert sessions.end_silent(103.0, 3.0, 0.5) == [quiet]
    assert quiet.error == (
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "nothing received for 3.0 s (reports are due every 0.5 s)",
    )
    assert quiet.ended.is_set()
    assert talking.error is None and not talking.ended.is_set()


async def test_a_stream_already_ended_is_not_ended_twice():
    sessions = Sessions()
    gone = AgentSession(region="eu-west-1")
    gone.heard_at = 0.0
    sessions.add(gone)
    gone.close()  # its agent hung up; the handler has not discarded it yet

    assert sessions.end_silent(10.0, 3.0, 0.5) == []
    assert gone.error is None  # ended as it was (OK), not turned into DEADLINE_EXCEEDED


async def test_a_message_received_restarts_the_count():
    sessions = Sessions()
    session = AgentSession(region="eu-west-1")
    sessions.add(session)
    session.heard_at = 50.0
    assert sessions.silent(53.5, 3.0) == [session]
    session.heard_at = 53.0  # what the reader stores on every message
    assert sessions.silent(53.5, 3.0) == []
