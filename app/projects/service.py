from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from app.annotations.service import current_labels
from app.images.orm import Image, Split
from app.projects.orm import Project, ProjectMember
from app.projects.schemas import OpenRound, ProjectCounts, ProjectRead, ProjectSettings
from app.rounds.orm import Round
from app.rounds.service import open_round_select
from app.users.orm import Role, User


def get(session: Session, project_id: int) -> Project | None:
    return session.get(Project, project_id)


def get_by_name(session: Session, name: str) -> Project | None:
    return session.scalar(select(Project).where(Project.name == name))


def is_member(session: Session, *, project_id: int, user_id: int) -> bool:
    return session.get(ProjectMember, (project_id, user_id)) is not None


def _member_or_admin(user: User):  # type: ignore[no-untyped-def]
    member = select(ProjectMember.user_id).where(
        ProjectMember.project_id == Project.id, ProjectMember.user_id == user.id
    )
    return true() if user.role == Role.admin else member.exists()


def image_to_label(session: Session, *, image_id: int, user: User) -> tuple[Image, Project] | None:
    """The image and its project if `user` may see them, with the image's row locked for the rest of
    the transaction (FOR UPDATE on PostgreSQL; SQLite's write lock is already held), all in one
    query. A label's later reads then see every label committed before the lock was granted, so two
    submits of one label queue here and the second finds the first."""
    row = session.execute(
        select(Image, Project)
        .join(Project, Project.id == Image.project_id)
        .where(Image.id == image_id, _member_or_admin(user))
        .with_for_update(of=Image)
    ).first()
    return None if row is None else (row[0], row[1])


def visible(session: Session, *, project_id: int, user: User) -> Project | None:
    """The project if `user` may see it (an admin, or a member), else None: one query for both."""
    return session.scalar(select(Project).where(Project.id == project_id, _member_or_admin(user)))


def list_for(session: Session, *, user: User) -> list[Project]:
    query = select(Project).order_by(Project.id)
    if user.role != Role.admin:
        query = query.join(ProjectMember, ProjectMember.project_id == Project.id).where(
            ProjectMember.user_id == user.id
        )
    return list(session.scalars(query))


def create(
    session: Session, *, name: str, classes: list[str], settings: ProjectSettings, creator: User | None
) -> Project:
    project = Project(
        name=name,
        classes=classes,
        settings=settings.model_dump(),
        created_by_id=creator.id if creator else None,
    )
    session.add(project)
    session.flush()
    return project


def add_member(session: Session, *, project: Project, user: User) -> ProjectMember:
    member = session.get(ProjectMember, (project.id, user.id))
    if member is None:
        member = ProjectMember(project_id=project.id, user_id=user.id)
        session.add(member)
        session.flush()
    return member


def members(session: Session, *, project_id: int) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id)
            .order_by(User.id)
        )
    )


def remove_member(session: Session, *, project: Project, user_id: int) -> bool:
    member = session.get(ProjectMember, (project.id, user_id))
    if member is None:
        return False
    session.delete(member)
    session.flush()
    return True


def settings_of(project: Project) -> ProjectSettings:
    return ProjectSettings.model_validate(project.settings or {})


def open_round(session: Session, *, project_id: int) -> Round | None:
    """The newest ready round: the batch annotators are working on."""
    return session.scalar(open_round_select(project_id))


def counts(session: Session, *, project_id: int) -> ProjectCounts:
    by_split: dict[str, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Image.split, func.count())
            .where(Image.project_id == project_id, Image.synthetic.is_(False))
            .group_by(Image.split)
        ).all()
    )
    synthetic = session.scalar(select(func.count()).where(Image.project_id == project_id, Image.synthetic.is_(True)))
    rounds = session.scalar(select(func.count()).where(Round.project_id == project_id))
    # One read of the current labels gives both the labelled count and the per-class counts.
    labels = current_labels(session, project_id=project_id)
    per_class: dict[str, int] = {}
    for label in labels.values():
        per_class[label] = per_class.get(label, 0) + 1
    return ProjectCounts(
        pool=by_split.get(Split.pool, 0),
        validation=by_split.get(Split.validation, 0),
        test=by_split.get(Split.test, 0),
        synthetic=synthetic or 0,
        labelled=len(labels),
        rounds=rounds or 0,
        per_class=per_class,
    )


def read(session: Session, project: Project) -> ProjectRead:
    current = open_round(session, project_id=project.id)
    data: dict[str, Any] = {
        "id": project.id,
        "name": project.name,
        "classes": project.classes,
        "settings": settings_of(project),
        "created_at": project.created_at,
        "counts": counts(session, project_id=project.id),
        "open_round": OpenRound(id=current.id, index=current.index) if current else None,
    }
    return ProjectRead(**data)
