"""The leasing and labelling rules of app.annotations.service, called directly on a real SQLite file and
a real PostgreSQL database (each migrated from scratch): the two backends take different code paths
for a lease (SKIP LOCKED in one statement on PostgreSQL, conditional UPDATEs on SQLite), and both
must keep the same rules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.annotations import service
from app.annotations.orm import Annotation
from app.core.db import make_engine, utcnow
from app.core.migrate import upgrade
from app.core.settings import Settings
from app.images.orm import Image, Split
from app.main import annotator_queries
from app.projects.orm import Project, ProjectMember
from app.projects.service import image_to_label, visible
from app.rounds.orm import Round, RoundStatus, Suggestion, SuggestionStatus
from app.users.orm import Role, User

LEASE = 600


@dataclass
class World:
    sessions: sessionmaker[Session]
    project_id: int
    round_id: int
    old_round_id: int
    alice: int
    bob: int
    admin: int
    outsider: int
    images: list[int]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_db_factory_lazy: Callable[[], str]
) -> Iterator[World]:
    url = f"sqlite:///{tmp_path / 'service.db'}" if request.param == "sqlite" else postgres_db_factory_lazy()
    upgrade(Settings(database_url=url, data_dir=tmp_path))
    engine = make_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    with sessions.begin() as session:
        users = [User(name=n, role=r) for n, r in [("alice", "annotator"), ("bob", "annotator"), ("root", "admin")]]
        users.append(User(name="outsider", role=Role.annotator))
        project = Project(name="p", classes=["a", "b"], settings={})
        session.add_all([*users, project])
        session.flush()
        session.add_all(ProjectMember(project_id=project.id, user_id=u.id) for u in users[:2])
        images = [
            Image(
                project_id=project.id,
                storage_key=f"k{i}",
                sha256=f"{i:064d}",
                format="png",
                width=8,
                height=8,
                original_name=f"{i}.png",
                split=Split.pool,
            )
            for i in range(12)
        ]
        session.add_all(images)
        old = Round(project_id=project.id, index=1, strategy="random", batch_size=2, status=RoundStatus.closed)
        open_ = Round(project_id=project.id, index=2, strategy="random", batch_size=10, status=RoundStatus.ready)
        session.add_all([old, open_])
        session.flush()
        # Image 0 is pending in the old round too: labelling it in the open round must close both.
        session.add(Suggestion(round_id=old.id, image_id=images[0].id, rank=0))
        session.add_all(Suggestion(round_id=open_.id, image_id=images[i].id, rank=i) for i in range(10))
        ids = [u.id for u in users]
        world = World(sessions, project.id, open_.id, old.id, *ids, images=[i.id for i in images])
    yield world
    engine.dispose()


def _lease(world: World, user_id: int, limit: int) -> list[Suggestion]:
    with world.sessions.begin() as session:
        user = session.get(User, user_id)
        round_ = session.get(Round, world.round_id)
        assert user is not None and round_ is not None
        leased = service.lease_next(session, round_=round_, user=user, limit=limit, lease_seconds=LEASE)
        assert not any(synthetic for _, synthetic in leased)
        return [suggestion for suggestion, _ in leased]


def _label(world: World, user_id: int, image_index: int, label: str = "a", **kw: bool) -> Annotation:
    """As the label route does it: the image found and locked with its project, then labelled."""
    with world.sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        found = image_to_label(session, image_id=world.images[image_index], user=user)
        assert found is not None
        image, project = found
        assert project.id == world.project_id
        _, suggestion = service.open_suggestion(session, project_id=world.project_id, image_id=image.id)
        annotation, _ = service.annotate(
            session,
            image=image,
            user=user,
            label=label,
            duration_ms=None,
            suggestion=suggestion,
            image_locked=True,
            **kw,
        )
        return annotation


def _rank_of(world: World, suggestions: list[Suggestion]) -> list[int]:
    return [s.rank for s in suggestions]


def test_leases_go_by_rank_never_overlap_and_come_back_to_their_holder(world: World) -> None:
    first = _lease(world, world.alice, 3)
    assert _rank_of(world, first) == [0, 1, 2]
    assert all(s.lease_holder_id == world.alice for s in first)
    # Bob gets the next free items, never Alice's live leases.
    assert _rank_of(world, _lease(world, world.bob, 3)) == [3, 4, 5]
    # Alice asking again gets her own live leases first, renewed, then free ones.
    again = _lease(world, world.alice, 4)
    assert _rank_of(world, again) == [0, 1, 2, 6]
    assert min(s.lease_expires_at for s in again) > first[0].lease_expires_at - timedelta(seconds=1)


def test_an_expired_lease_is_free_and_a_finished_item_is_never_leased(world: World) -> None:
    _lease(world, world.alice, 2)
    with world.sessions.begin() as session:
        session.get(Suggestion, _suggestion_id(session, world, 0)).lease_expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
    _label(world, world.alice, 1)
    leased = _lease(world, world.bob, 2)
    assert _rank_of(world, leased) == [0, 2]


def _suggestion_id(session: Session, world: World, index: int) -> int:
    return session.scalar(
        select(Suggestion.id).where(Suggestion.round_id == world.round_id, Suggestion.image_id == world.images[index])
    )  # type: ignore[return-value]


def test_a_label_closes_the_image_in_every_round_and_is_idempotent(world: World) -> None:
    _lease(world, world.alice, 1)
    first = _label(world, world.alice, 0)
    again = _label(world, world.alice, 0)
    assert again.id == first.id
    with world.sessions() as session:
        statuses = session.execute(
            select(Suggestion.round_id, Suggestion.status, Suggestion.lease_holder_id).where(
                Suggestion.image_id == world.images[0]
            )
        ).all()
        assert sorted(statuses) == sorted(
            [(world.round_id, SuggestionStatus.labelled, world.alice), (world.old_round_id, "labelled", None)]
        )
        assert session.scalar(select(Annotation.is_current).where(Annotation.id == first.id)) is True


def test_someone_elses_lease_or_label_is_refused_unless_an_admin_relabels(world: World) -> None:
    _lease(world, world.alice, 2)
    with pytest.raises(service.LeaseConflict):
        _label(world, world.bob, 0)
    _label(world, world.alice, 1)
    with pytest.raises(service.LabelledByOther):
        _label(world, world.bob, 1, "b")
    # A refused claim changed nothing: the item is still Alice's, pending.
    with world.sessions() as session:
        pending = session.get(Suggestion, _suggestion_id(session, world, 0))
        assert pending is not None and pending.status == "pending" and pending.lease_holder_id == world.alice
        assert session.scalar(select(Annotation).where(Annotation.image_id == world.images[0])) is None
    relabel = _label(world, world.admin, 1, "b", may_override=True)
    with world.sessions() as session:
        current = session.scalars(
            select(Annotation).where(Annotation.image_id == world.images[1], Annotation.is_current.is_(True))
        ).all()
        assert [a.id for a in current] == [relabel.id]


def test_open_suggestion_and_visibility(world: World) -> None:
    with world.sessions() as session:
        round_, suggestion = service.open_suggestion(session, project_id=world.project_id, image_id=world.images[3])
        assert round_ is not None and round_.id == world.round_id
        assert suggestion is not None and suggestion.rank == 3
        # An image not in the open round: the round, and no suggestion.
        round_, suggestion = service.open_suggestion(session, project_id=world.project_id, image_id=world.images[11])
        assert round_ is not None and suggestion is None
        assert service.open_suggestion(session, project_id=world.project_id + 1, image_id=world.images[3]) == (
            None,
            None,
        )
        users = {u.id: u for u in session.scalars(select(User))}
        assert image_to_label(session, image_id=world.images[0], user=users[world.outsider]) is None
        assert image_to_label(session, image_id=world.images[0], user=users[world.admin]) is not None
        assert visible(session, project_id=world.project_id, user=users[world.alice]) is not None
        assert visible(session, project_id=world.project_id, user=users[world.admin]) is not None
        assert visible(session, project_id=world.project_id, user=users[world.outsider]) is None
        assert visible(session, project_id=world.project_id + 1, user=users[world.admin]) is None


def test_open_round_progress_counts_what_is_done(world: World) -> None:
    with world.sessions() as session:
        found = service.open_round_progress(session, project_id=world.project_id)
        assert found is not None and found[0].id == world.round_id and found[1:] == (0, 10)
    _lease(world, world.alice, 3)
    _label(world, world.alice, 0)
    _label(world, world.alice, 1)
    with world.sessions() as session:
        found = service.open_round_progress(session, project_id=world.project_id)
        assert found is not None and found[1:] == (2, 8)
        assert service.open_round_progress(session, project_id=world.project_id + 1) is None


def test_the_startup_warm_up_queries_find_nothing_and_change_nothing(world: World) -> None:
    # The API runs an annotator's reads on every pooled connection at startup (app.main), against
    # ids no row has: they must neither fail on a real schema nor touch a real round's leases.
    with world.sessions.begin() as session:
        annotator_queries(session)
    with world.sessions() as session:
        held = session.scalars(select(Suggestion).where(Suggestion.lease_holder_id.is_not(None))).all()
    assert held == []
    assert _rank_of(world, _lease(world, world.alice, 2)) == [0, 1]
