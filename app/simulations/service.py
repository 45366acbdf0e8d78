from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.db import utcnow
from app.images.orm import Image, Split
from app.projects.orm import Project
from app.simulations.orm import Simulation
from app.simulations.schemas import SimulationCreate
from app.users.orm import User

ACTIVE = ("queued", "running")


def labelled_pool_size(session: Session, *, project_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                Image.project_id == project_id,
                Image.split == Split.pool,
                Image.synthetic.is_(False),
                Image.ground_truth.is_not(None),
            )
        )
        or 0
    )


def create(session: Session, *, project: Project, body: SimulationCreate, user: User) -> Simulation:
    simulation = Simulation(project_id=project.id, params=body.model_dump(), created_by_id=user.id)
    session.add(simulation)
    session.flush()
    return simulation


def active_count(session: Session, *, project_id: int) -> int:
    return (
        session.scalar(select(func.count()).where(Simulation.project_id == project_id, Simulation.status.in_(ACTIVE)))
        or 0
    )


def cancel(session: Session, *, simulation_id: int) -> bool:
    """Marks a queued or running simulation cancelled; the worker stops at its next round."""
    result = session.execute(
        update(Simulation)
        .where(Simulation.id == simulation_id, Simulation.status.in_(ACTIVE))
        .values(status="cancelled", finished_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_for(session: Session, *, project_id: int) -> list[Simulation]:
    return list(session.scalars(select(Simulation).where(Simulation.project_id == project_id).order_by(Simulation.id)))
