"""One round, start to finish: load, train, evaluate, select, write.

Database work happens in short transactions at the start and end; the long middle part (training,
selection) holds no session, so the API stays responsive on SQLite. The final write replaces
whatever an earlier attempt of the same round wrote, so a redelivered task never duplicates rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.annotations.service import current_labels
from app.core.db import plain_rows, read_scope, session_scope, utcnow
from app.core.settings import Settings
from app.images.orm import Image, Split
from app.projects.orm import Project
from app.projects.schemas import ProjectSettings
from app.representations import service as representations
from app.representations.orm import Representation
from app.rounds.orm import ACTIVE_STATUSES, Round, RoundStatus, Suggestion, SuggestionStatus
from app.storage import Storage, get_storage, image_key
from models.pixels import PoolPixels, subset
from worker.data import encode_png, pixel_cache
from worker.jobs import Heartbeat, JobCancelled, failure_text

log = logging.getLogger("suggestlab.worker")


@dataclass
class RoundInputs:
    """A snapshot of what the round works on, read in one short transaction."""

    round_id: int
    project_id: int
    strategy: str
    params: dict[str, Any]
    batch_size: int
    seed: int
    classes: list[str]
    settings: ProjectSettings
    pool_ids: list[int]
    pool_keys: list[str]
    pool_synthetic: list[bool]
    labels: dict[int, int]
    # Images still pending in an open round: never suggested twice at once.
    pending_elsewhere: set[int]
    validation_ids: list[int]
    validation_keys: list[str]
    validation_labels: list[int]
    previous_vae_key: str | None = None
    previous_vae_round: int | None = None
    # The pool's latents in that VAE, from the round that last used it: reused, not encoded again.
    previous_vae_latents_key: str | None = None
    representation_id: int | None = None
    representation_artifacts: dict[str, Any] = field(default_factory=dict)
    # The pool's rows in that representation, from the round that last selected in it: images it
    # encoded (uploaded after the representation was learned) are not encoded again.
    previous_features_key: str | None = None
    representation_active: bool = False
    # The networks that challenge the head, fitted after an earlier round of this project was written.
    previous_challenger_key: str | None = None


@dataclass
class RoundOutput:
    metrics: dict[str, Any]
    image_ids: list[int]
    scores: list[float]
    reasons: list[dict[str, Any]]
    synthetic: list[Any] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    # Work for after the round is written (its batch is out): returns artifacts and metrics to add.
    after: Callable[[], tuple[dict[str, Any], dict[str, Any]]] | None = None


class Reporter:
    """Writes phase and progress, at most every half second, and notices cancellation."""

    def __init__(self, round_id: int, settings: Settings) -> None:
        self.round_id = round_id
        self.settings = settings
        self.last = 0.0

    def __call__(self, phase: str, progress: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        status = RoundStatus.selecting if phase.startswith("select") else RoundStatus.training
        with session_scope(self.settings) as session:
            result = session.execute(
                update(Round)
                .where(Round.id == self.round_id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
                .values(status=status, phase=phase, progress=round(float(progress), 4), heartbeat_at=utcnow())
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                raise JobCancelled


class WarmCache:
    """What a worker process keeps between rounds so that a warm round only does the round's own work:
    the representation's pool features and encoder, the validation split encoded in it, and the
    pool's kNN graph (label propagation). Each entry carries the digest of what it was made from
    (representation, pool ids, validation ids) and is rebuilt when that changes; one entry per kind,
    so memory stays at one round's worth."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, Any]] = {}
        self.hits: list[str] = []

    def get(self, kind: str, digest: str, make: Callable[[], Any]) -> Any:
        held = self.entries.get(kind)
        if held is not None and held[0] == digest:
            self.hits.append(kind)
            return held[1]
        value = make()
        # Shared by later rounds: arrays are made read-only so no step can change them in place.
        for array in value if isinstance(value, tuple) else (value,):
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
        self.entries[kind] = (digest, value)
        return value

    def peek(self, kind: str, digest: str) -> Any:
        """What is kept for `kind` if it was made from `digest` (None otherwise); never makes it."""
        held = self.entries.get(kind)
        if held is None or held[0] != digest:
            return None
        self.hits.append(kind)
        return held[1]

    def held(self, kind: str) -> Any:
        """What is kept for `kind`, whatever it was made from (None if nothing): a `make` may build on
        the entry it is about to replace."""
        held = self.entries.get(kind)
        return None if held is None else held[1]


WARM = WarmCache()
SELECTION_EF_PER_NEIGHBOUR = 16


def digest_of(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(np.asarray(part).tobytes() if isinstance(part, np.ndarray | list) else str(part).encode())
        h.update(b"|")
    return h.hexdigest()


def _previous_runner_alive(round_id: int, settings: Settings) -> bool | None:
    """None: nothing to do (finished or gone). True: another live worker runs it. False: claimable.

    A queued round is claimable at once. A round that is already training was started by a worker
    that is either still alive (fresh heartbeat: leave it alone) or dead (a redelivery after a crash:
    take over once its heartbeat has gone quiet for a few intervals).
    """
    patience = 3 * settings.round_heartbeat_seconds
    deadline = time.monotonic() + patience + settings.round_heartbeat_seconds
    while True:
        with session_scope(settings) as session:
            round_ = session.get(Round, round_id)
            if round_ is None or round_.status not in ACTIVE_STATUSES:
                return None
            if round_.status == RoundStatus.queued or round_.heartbeat_at is None:
                return False
            quiet = (utcnow() - round_.heartbeat_at).total_seconds()
        if quiet > patience:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(settings.round_heartbeat_seconds / 2)


def _claim(round_id: int, settings: Settings) -> RoundInputs | None:
    if _previous_runner_alive(round_id, settings) is not False:
        return None
    with session_scope(settings) as session:
        round_ = session.get(Round, round_id, with_for_update=True)
        if round_ is None or round_.status not in ACTIVE_STATUSES:
            # Already finished, failed or cancelled: a redelivered message has nothing to do.
            return None
        round_.attempts += 1
        if round_.attempts > settings.round_max_attempts:
            round_.status = RoundStatus.failed
            round_.phase = "failed"
            round_.error = (
                f"gave up after {settings.round_max_attempts} attempts: the worker stopped during each of them"
            )
            round_.finished_at = utcnow()
            return None
        round_.status = RoundStatus.training
        round_.phase = "loading"
        round_.progress = 0.0
        round_.started_at = utcnow()
        round_.heartbeat_at = utcnow()
        round_.error = None
    # The inputs are read once the claim is committed, in a read-only transaction: a million-image
    # pool is seconds of reading, and on SQLite a write transaction would hold the API's writers
    # (labels, leases) for all of it. What changes meanwhile is what a later read would have seen.
    with read_scope(settings) as session:
        round_ = session.get(Round, round_id)
        if round_ is None:
            return None
        project = session.get(Project, round_.project_id)
        assert project is not None
        return _snapshot(session, project, round_)


def _selection_state(session: Session, project_id: int, class_index: dict[str, int]) -> tuple[dict[int, int], set[int]]:
    """The project's current labels (image id -> class index) and the images pending in a ready batch."""
    labels = {
        image_id: class_index[label]
        for image_id, label in current_labels(session, project_id=project_id).items()
        if label in class_index
    }
    pending = set(
        session.scalars(
            select(Suggestion.image_id)
            .join(Round, Round.id == Suggestion.round_id)
            .where(
                Round.project_id == project_id,
                Round.status == RoundStatus.ready,
                Suggestion.status == SuggestionStatus.pending,
            )
        )
    )
    return labels, pending


def _snapshot(session: Session, project: Project, round_: Round | None) -> RoundInputs:
    """What a round of `project` works on; without a round (a worker preparing for the next one),
    the same pool, validation split and representation with no strategy or batch of its own."""
    class_index = {c: i for i, c in enumerate(project.classes)}
    pool = plain_rows(
        session,
        select(Image.id, Image.storage_key, Image.synthetic)
        .where(Image.project_id == project.id, Image.split == Split.pool.value)
        .order_by(Image.id),
    )
    validation = session.execute(
        select(Image.id, Image.storage_key, Image.ground_truth)
        .where(Image.project_id == project.id, Image.split == Split.validation)
        .order_by(Image.id)
    ).all()
    # Labels and the batches still being labelled shape a round's selection; preparing reads neither.
    labels, pending_elsewhere = _selection_state(session, project.id, class_index) if round_ else ({}, set())
    previous = session.execute(
        select(Round.id, Round.artifacts)
        .where(
            Round.project_id == project.id,
            Round.id != (round_.id if round_ else -1),
            Round.status.in_(["ready", "closed"]),
        )
        .order_by(Round.index.desc())
    ).all()
    vae_key, vae_round, vae_latents_key = next(
        ((a["vae"], rid, a.get("latents")) for rid, a in previous if a and a.get("vae")), (None, None, None)
    )
    challenger_key = next((a["challenger"] for _, a in previous if a and a.get("challenger")), None)
    params = dict(round_.params or {}) if round_ else {}
    seed = int(params.pop("seed", project.id * 10_000 + (round_.index if round_ else 0)))
    ready = representations.latest_ready(session, project_id=project.id)
    features_key = next(
        (a["latents"] for _, a in previous if ready and a and a.get("representation") == ready.id),
        None,
    )
    rep_active = representations.active(session, project_id=project.id) is not None
    return RoundInputs(
        round_id=round_.id if round_ else 0,
        project_id=project.id,
        strategy=round_.strategy if round_ else "random",
        params=params,
        batch_size=round_.batch_size if round_ else 0,
        seed=seed,
        classes=list(project.classes),
        settings=ProjectSettings.model_validate(project.settings or {}),
        pool_ids=[r[0] for r in pool],
        pool_keys=[r[1] for r in pool],
        pool_synthetic=[bool(r[2]) for r in pool],
        labels=labels,
        pending_elsewhere=pending_elsewhere,
        validation_ids=[r[0] for r in validation if r[2] in class_index],
        validation_keys=[r[1] for r in validation if r[2] in class_index],
        validation_labels=[class_index[r[2]] for r in validation if r[2] in class_index],
        previous_vae_key=vae_key,
        previous_vae_round=vae_round,
        previous_vae_latents_key=vae_latents_key,
        representation_id=ready.id if ready else None,
        representation_artifacts=dict(ready.artifacts) if ready else {},
        previous_features_key=features_key,
        representation_active=rep_active,
        previous_challenger_key=challenger_key,
    )


def _write(inputs: RoundInputs, output: RoundOutput, storage: Storage, settings: Settings) -> bool:
    with session_scope(settings) as session:
        round_ = session.get(Round, inputs.round_id, with_for_update=True)
        if round_ is None or round_.status not in ACTIVE_STATUSES:
            return False
        session.execute(delete(Suggestion).where(Suggestion.round_id == round_.id))
        image_ids = list(output.image_ids)
        scores = list(output.scores)
        reasons = list(output.reasons)
        for item in output.synthetic:
            png = encode_png(item.pixels)
            digest = hashlib.sha256(png).hexdigest()
            existing = session.scalar(
                select(Image.id).where(Image.project_id == inputs.project_id, Image.sha256 == digest)
            )
            if existing is None:
                key = image_key(inputs.project_id, digest, "png")
                storage.put(key, png)
                image = Image(
                    project_id=inputs.project_id,
                    storage_key=key,
                    sha256=digest,
                    format="PNG",
                    width=item.pixels.shape[2],
                    height=item.pixels.shape[1],
                    original_name=f"synthetic-round{round_.index}-from-{item.source_image_id}.png",
                    split=Split.pool,
                    synthetic=True,
                    source_image_id=item.source_image_id,
                )
                session.add(image)
                session.flush()
                existing = image.id
            image_ids.append(existing)
            scores.append(item.score)
            reasons.append(item.reason)
        session.add_all(
            Suggestion(round_id=round_.id, image_id=image_id, rank=rank, score=score, reason=reason)
            for rank, (image_id, score, reason) in enumerate(zip(image_ids, scores, reasons, strict=True), start=1)
        )
        # The new batch replaces the previous one: older ready rounds close.
        session.execute(
            update(Round)
            .where(Round.project_id == inputs.project_id, Round.status == RoundStatus.ready, Round.id != round_.id)
            .values(status=RoundStatus.closed)
        )
        round_.metrics = output.metrics
        round_.artifacts = output.artifacts
        round_.status = RoundStatus.ready
        round_.phase = "ready"
        round_.progress = 1.0
        round_.finished_at = utcnow()
        return True


def compute(inputs: RoundInputs, storage: Storage, settings: Settings, report: Reporter) -> RoundOutput:
    # torch and faiss load here, in the pool child, never in the worker's parent process.
    from models.active import run_step
    from models.training import select_device
    from worker.artifacts import artifact_key

    started = time.monotonic()
    WARM.hits.clear()
    pool_ids = np.asarray(inputs.pool_ids, dtype=np.int64)
    labelled_pos = np.asarray(
        [i for i, image_id in enumerate(inputs.pool_ids) if image_id in inputs.labels], dtype=np.int64
    )
    candidate_pos = np.asarray(
        [
            i
            for i, image_id in enumerate(inputs.pool_ids)
            if image_id not in inputs.labels
            and not inputs.pool_synthetic[i]
            and image_id not in inputs.pending_elsewhere
        ],
        dtype=np.int64,
    )
    labels = np.asarray([inputs.labels[inputs.pool_ids[i]] for i in labelled_pos], dtype=np.int64)
    report("loading", 0.0, force=True)
    pool_x, val_x, decoded = _pixels(inputs, storage, settings, lambda f: report("decoding images", 0.3 * f))
    val_y = np.asarray(inputs.validation_labels, dtype=np.int64)
    load_s = time.monotonic() - started
    device = select_device(settings.torch_device)

    t = time.monotonic()
    features, val_features, representation_info, features_key = _representation(
        inputs, pool_x, pool_ids, val_x, storage, device, settings
    )
    representation_s = time.monotonic() - t
    t = time.monotonic()
    vae_info: dict[str, Any] = {"trained": False, "needed": False}
    artifacts: dict[str, Any] = {}
    vae_space: dict[str, Any] = {}

    def vae_latents() -> np.ndarray:
        """The VAE and the pool in it, made the first time a step asks: a round whose strategy never
        looks at latents (random; entropy or margin once there are labels) trains and encodes nothing."""
        if not vae_space:
            began = time.monotonic()
            vae, codes, made, info = _latent_space(inputs, pool_x, pool_ids, storage, device, report)
            vae_space.update(vae=vae, latents=codes, seconds=time.monotonic() - began)
            artifacts.update(made)
            vae_info.update(info, needed=True)
        return vae_space["latents"]

    # What names the features' space in the warm cache: the representation, or the pixels' PCA.
    feature_space = representation_info.get("id") or representation_info.get("kind")
    latents: np.ndarray | Callable[[], np.ndarray]
    if features is None or inputs.strategy in DECODER_STRATEGIES:
        latents = vae_latents
        if inputs.strategy in DECODER_STRATEGIES:
            vae_latents()
    else:
        from worker.artifacts import save_latents

        def saved() -> str:
            key = artifact_key(inputs.project_id, inputs.round_id, "latents.npz")
            save_latents(storage, key, pool_ids, features)
            return key

        # The learned space is the round's latent space: strategies, the index and the map use it. An
        # artifact that already holds exactly these rows is pointed at; otherwise they are stored once
        # per pool and process (a million rows take a minute to compress), not once per round.
        latents = features
        artifacts["latents"] = features_key or WARM.get(
            "stored-latents", digest_of(feature_space, pool_ids, inputs.validation_ids), saved
        )
        if representation_info.get("kind") == "simclr":
            artifacts["representation"] = representation_info["id"]
    vae_s = time.monotonic() - t
    made_before_step = bool(vae_space)
    graph = None
    if features is not None and len(labels) and len(np.unique(labels)) > 1:
        graph = _pool_graph(feature_space, pool_ids, features)
    graph_s = time.monotonic() - t
    # The candidate index is built only for strategies that search it (snn, si, ...).
    built: dict[str, Any] = {}

    def generative() -> dict[str, Any]:
        space = latents() if callable(latents) else latents
        if "index" not in built:
            space_id = vae_info.get("key") if callable(latents) else feature_space
            built["index"] = candidate_index(
                space, space_id, pool_ids, candidate_pos, exact_max=settings.latent_index_exact_max
            )
        return {"vae": vae_space.get("vae"), "candidate_index": built["index"]}

    encoder = _encoder_to_fine_tune(inputs, storage, device, representation_info)
    challenger = _previous_challenger(inputs, storage, device) if features is not None else None
    step = run_step(
        pool_x=pool_x,
        pool_ids=pool_ids,
        labelled_pos=labelled_pos,
        labels=labels,
        candidate_pos=candidate_pos,
        eval_x=val_x,
        eval_y=val_y,
        n_classes=len(inputs.classes),
        strategy=inputs.strategy,
        params=inputs.params,
        batch_size=inputs.batch_size,
        seed=inputs.seed,
        device=device,
        latents=latents,
        generative=generative,
        report=report,
        features=features,
        eval_features=val_features,
        head_validation=True,
        graph=graph,
        encoder=encoder,
        challenger=challenger,
        feature_blocks=representation_info.get("blocks"),
    )
    # The VAE made inside the step (a cold start asked for latents) is VAE time, not selection time.
    in_step_vae_s = vae_space.get("seconds", 0.0) if vae_space and not made_before_step else 0.0
    predictions = _predictions(step, features, pool_x, candidate_pos)
    if predictions is not None:
        artifacts["predictions"] = artifact_key(inputs.project_id, inputs.round_id, "predictions.npz")
        buf = io.BytesIO()
        np.savez_compressed(buf, ids=pool_ids[predictions[0]], predicted=predictions[1], confidence=predictions[2])
        storage.put(artifacts["predictions"], buf.getvalue())
    selection = step.selection
    for reason in selection.reasons:
        if "predicted_index" in reason:
            reason["predicted"] = inputs.classes[reason.pop("predicted_index")]
    metrics: dict[str, Any] = {
        "labels": len(labels),
        "class_counts": {c: int((labels == i).sum()) for i, c in enumerate(inputs.classes)},
        "candidates": len(candidate_pos),
        "validation_size": len(val_y),
        "effective_strategy": step.effective_strategy,
        # Which of auto's parts picked this batch and why (None for a named strategy).
        "auto": _auto_summary(selection.reasons),
        "accuracy": step.accuracy,
        "per_class": dict(zip(inputs.classes, step.per_class, strict=True)) if step.per_class else None,
        "confusion": step.confusion,
        "vae": vae_info,
        "representation": representation_info,
        "learner": step.learner.info if step.learner is not None else {"mode": "cnn from scratch"},
        "decoded_images": decoded,
        # What this worker process reused from its previous round instead of rebuilding.
        "reused": sorted(set(WARM.hits)),
        "timings": {
            "load_s": round(load_s, 3),
            "representation_s": round(representation_s, 3),
            "vae_s": round(vae_s + in_step_vae_s, 3),
            "graph_s": round(graph_s, 3),
            **{k: round(v, 3) for k, v in step.timings.items()},
            "select_s": round(step.timings.get("select_s", 0.0) - in_step_vae_s, 3),
            "total_s": round(time.monotonic() - started, 3),
        },
    }
    after = None
    if step.learner is not None and features is not None:

        def after() -> tuple[dict[str, Any], dict[str, Any]]:
            return _fit_next_challenger(
                inputs,
                step.learner,
                storage,
                device,
                pool_x,
                features,
                labelled_pos,
                labels,
                graph,
                (val_features, val_x, val_y) if len(val_y) else None,
                encoder,
            )

    return RoundOutput(
        metrics=metrics,
        image_ids=selection.image_ids,
        scores=selection.scores,
        reasons=selection.reasons,
        synthetic=selection.synthetic,
        artifacts=artifacts,
        after=after,
    )


def _pixels(
    inputs: RoundInputs, storage: Storage, settings: Settings, progress: Callable[[float], None]
) -> tuple[PoolPixels, np.ndarray, int]:
    """The pool (uint8 rows of the memory-mapped cache), the validation split as an array, and how
    many images were decoded: once per image and worker, so an unchanged pool is read back. The pool
    stays bytes; float32 exists only per batch (models.pixels)."""
    size, channels = inputs.settings.image_size, inputs.settings.channels
    cache = pixel_cache(settings.data_dir, inputs.project_id, size, channels)
    pixels = cache.load(storage, [*inputs.pool_keys, *inputs.validation_keys], progress=progress)
    pool_x = pixels.subset(slice(0, len(inputs.pool_keys)))
    val_x = pixels.subset(slice(len(inputs.pool_keys), None)).to_array()
    return pool_x, val_x, cache.decoded_last


def _pool_graph(feature_space: Any, pool_ids: np.ndarray, features: np.ndarray) -> Any:
    """The pool's kNN graph in `feature_space` (label propagation), kept between rounds."""
    from models.learner import PoolGraph

    return WARM.get("graph", digest_of(feature_space, pool_ids), lambda: PoolGraph.build(features))


def prepare_rounds(representation_id: int, settings: Settings) -> None:
    """Readies this worker process for the project's next round once `representation_id` is ready:
    the pool's rows in it, its encoder, the encoded validation split, the pool's kNN graph and, above
    the exact size, the pool's search graph go into the warm cache. Otherwise the first round after a
    representation pays for them on its path (2.5 s of a 4.5 s round on 10,000 images on 2 cores,
    `benchmarks/results/round_speed.md`), while the annotators' labelling leaves this worker idle.
    Best effort: a round whose pool changed meanwhile, or that another worker runs, builds what it
    lacks itself. What it did is recorded on the representation (`metrics.rounds_prepared`)."""
    from models.training import select_device

    started = time.monotonic()
    with read_scope(settings) as session:
        ready = session.get(Representation, representation_id)
        project = session.get(Project, ready.project_id) if ready is not None else None
        if ready is None or ready.status != "ready" or project is None:
            return
        inputs = _snapshot(session, project, None)
    # A newer representation is ready: its own preparation follows.
    if inputs.representation_id != representation_id:
        return
    storage = get_storage(settings)
    try:
        pool_x, val_x, decoded = _pixels(inputs, storage, settings, lambda _: None)
        pool_ids = np.asarray(inputs.pool_ids, dtype=np.int64)
        device = select_device(settings.torch_device)
        features, _, info, _ = _representation(inputs, pool_x, pool_ids, val_x, storage, device, settings)
        if features is None or not len(pool_ids):
            return
        _pool_graph(info["id"], pool_ids, features)
        if len(pool_ids) > settings.latent_index_exact_max:
            candidate_index(
                features, info["id"], pool_ids, np.arange(len(pool_ids)), exact_max=settings.latent_index_exact_max
            )
    except Exception:
        log.exception("preparing for rounds in representation %s failed; rounds build it", representation_id)
        return
    prepared = {
        "seconds": round(time.monotonic() - started, 3),
        "pool_size": len(pool_ids),
        "decoded_images": decoded,
        "encoded_now": info.get("encoded_now", 0),
        "at": utcnow().isoformat(),
    }
    with session_scope(settings) as session:
        row = session.get(Representation, representation_id)
        if row is not None:
            row.metrics = {**(row.metrics or {}), "rounds_prepared": prepared}


def _previous_challenger(inputs: RoundInputs, storage: Storage, device: Any) -> Any:
    """The challenger an earlier round of the project fitted after it was written, if it fits this
    round's images and classes; loaded once per worker process."""
    key = inputs.previous_challenger_key
    if key is None:
        return None
    from worker.artifacts import load_challenger

    size, n_classes = inputs.settings.image_size, len(inputs.classes)
    challenger = WARM.get(
        "challenger",
        f"{key}@{device}",
        lambda: load_challenger(storage, key, device, image_size=size, n_classes=n_classes),
    )
    if challenger is not None:
        # The CNN's logits for this pool, computed after it was fitted: the round mixes them in
        # instead of running the CNN over every candidate (a second of a warm round on 2 cores).
        logits = WARM.peek("challenger-logits", _logits_digest(key, inputs))
        if logits is not None:
            challenger = replace(challenger, pool_logits=logits)
    if challenger is None or inputs.settings.fine_tune or "fine-tuned" not in challenger.networks:
        return challenger
    # The project turned fine-tuning off since: its fine-tuned network no longer competes.
    if challenger.chosen == "fine-tuned":
        return None
    return replace(challenger, networks={k: v for k, v in challenger.networks.items() if k != "fine-tuned"})


def _logits_digest(challenger_key: str, inputs: RoundInputs) -> str:
    """What the CNN's pool logits are kept under: that challenger on exactly this pool."""
    return digest_of(challenger_key, np.asarray(inputs.pool_ids, dtype=np.int64))


def _fit_next_challenger(
    inputs: RoundInputs,
    learner: Any,
    storage: Storage,
    device: Any,
    pool_x: PoolPixels,
    features: np.ndarray,
    labelled_pos: np.ndarray,
    labels: np.ndarray,
    graph: Any,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    encoder: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fits the networks that challenge the head on this round's labels, after its batch is out, so
    that the next round only applies them (a CNN fit is seconds on a CPU; a warm round is meant to
    take fewer): (artifacts, metrics) to add to the round."""
    from models.learner import fit_challenger
    from worker.artifacts import artifact_key, save_challenger

    started = time.monotonic()
    challenger = fit_challenger(
        learner,
        pool_x=pool_x,
        pool_features=features,
        labelled_pos=labelled_pos,
        labels=labels,
        n_classes=len(inputs.classes),
        graph=graph,
        validation=validation,  # type: ignore[arg-type]
        seed=inputs.seed,
        device=device,
        encoder=encoder,
    )
    if challenger is None:
        return {}, {}
    key = artifact_key(inputs.project_id, inputs.round_id, "challenger.pt")
    save_challenger(storage, key, challenger, image_size=inputs.settings.image_size, n_classes=len(inputs.classes))
    if "cnn" in challenger.networks:
        from models.training import predict_logits

        # While the batch is labelled: the next round, in this process and on this pool, reads them.
        cnn = challenger.networks["cnn"]
        WARM.get("challenger-logits", _logits_digest(key, inputs), lambda: predict_logits(cnn, pool_x))
    seconds = round(time.monotonic() - started, 3)
    info = {"fitted_on": challenger.labels, "networks": sorted(challenger.networks), "seconds": seconds}
    return {"challenger": key}, {"next_challenger": info}


def _predictions(
    step: Any, features: np.ndarray | None, pool_x: PoolPixels, candidate_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(pool positions, predicted class, confidence) of every pool image, for the map's "colour by
    prediction": the candidates' probabilities are already computed for selection; the rest (labelled,
    pending in another round, synthetic) are predicted here."""
    if step.candidate_probabilities is None:
        return None
    from models.training import predict_proba

    rest = np.setdiff1d(np.arange(len(pool_x)), candidate_pos)
    if step.learner is not None and features is not None:
        others = step.learner.predict_rows(features, rest, pool_x)
    elif step.model is not None:
        others = predict_proba(step.model, subset(pool_x, rest))
    else:
        return None
    probabilities = np.concatenate([step.candidate_probabilities, others])
    positions = np.concatenate([candidate_pos, rest])
    return positions, probabilities.argmax(1).astype(np.int16), probabilities.max(1).astype(np.float16)


def _encoder_to_fine_tune(inputs: RoundInputs, storage: Storage, device: Any, representation: dict[str, Any]) -> Any:
    """The representation's encoder where the project asks for fine-tuning and the round's features
    came from one (pixel PCA has none); the same loaded encoder that encoded the round's images."""
    if not inputs.settings.fine_tune or representation.get("kind") != "simclr":
        return None
    return _warm_encoder(storage, inputs.representation_artifacts["encoder"], device)


def _warm_encoder(storage: Storage, key: str, device: Any) -> Any:
    """The representation's encoder on `device`, loaded once per worker process and representation."""
    from worker.representation import load_encoder

    return WARM.get("encoder", f"{key}@{device}", lambda: load_encoder(storage, key, device))


def _request_representation(project_id: int, settings: Settings) -> int | None:
    """Queues a representation job unless one is queued or training; never fails the round."""
    from app.core.queue import enqueue_representation

    try:
        with session_scope(settings) as session:
            row = representations.request(
                session, project_id=project_id, stale_seconds=settings.representation_stale_seconds
            )
            requested = row.id if row is not None else None
        if requested is not None:
            enqueue_representation(requested)
        return requested
    except Exception:
        log.warning("could not request a representation for project %s", project_id, exc_info=True)
        return None


# Strategies that decode latents back into images need the VAE whatever the representation.
DECODER_STRATEGIES = ("si", "snn-plain", "hybrid")


def _representation(
    inputs: RoundInputs,
    pool_x: np.ndarray,
    pool_ids: np.ndarray,
    val_x: np.ndarray,
    storage: Storage,
    device: Any,
    settings: Settings,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any], str | None]:
    """The pool and validation split in the newest ready representation; until one is ready, the
    pixels' principal components; (None, None) for a project without representations or a decoder
    strategy with none ready (the round then uses the VAE and a CNN). Images the representation has not seen
    are encoded now; a pool that changed by more than the refresh fraction asks for a new one.
    The last item is an artifact that holds exactly the pool's rows (the representation's own, or an
    earlier round's), so the round can point at it instead of storing a copy; else None."""
    from models.representation import JointEncoder, encode

    project = inputs.settings
    if project.representation == "none":
        return None, None, {"kind": "vae", "why": "the project turned representations off"}, None
    if not inputs.representation_artifacts:
        requested = None if inputs.representation_active else _request_representation(inputs.project_id, settings)
        why = "none is ready yet; one is training" if inputs.representation_active or requested else "none is ready"
        if inputs.strategy in DECODER_STRATEGIES:
            return (
                None,
                None,
                {"kind": "vae", "why": f"{why}; {inputs.strategy} decodes latents", "requested": requested},
                None,
            )
        # Nothing heavy on the round's path: until the representation is ready, the pixels' principal
        # components stand in for it (seconds, where a VAE takes minutes on a CPU).
        from models.representation import pixel_pca

        features, val_features = WARM.get(
            "pixel-pca", digest_of(pool_ids, inputs.validation_ids), lambda: pixel_pca(pool_x, val_x)
        )
        return features, val_features, {"kind": "pixels-pca", "why": why, "requested": requested}, None
    encoder_key = inputs.representation_artifacts["encoder"]
    encoder = _warm_encoder(storage, encoder_key, device)
    pool, encoded = pool_features(
        inputs, pool_ids, storage, lambda positions: encode(encoder, subset(pool_x, positions))
    )
    val_features = WARM.get(
        "validation",
        digest_of(encoder_key, inputs.validation_ids),
        lambda: encode(encoder, val_x) if len(val_x) else np.zeros((0, pool.rows.shape[1]), np.float32),
    )
    requested = None
    if pool.changed > project.vae_refresh_fraction and not inputs.representation_active:
        requested = _request_representation(inputs.project_id, settings)
    info = {
        "kind": "simclr",
        "id": inputs.representation_id,
        # SimCLR's and the patch features' widths, for a joint encoder: the task model reads each block.
        "blocks": [encoder.conv.out_dim, encoder.patches.out_dim] if isinstance(encoder, JointEncoder) else None,
        "encoded_now": encoded,
        "pool_changed": round(pool.changed, 4),
        "refresh_requested": requested,
    }
    return pool.rows, val_features, info, pool.stored_key


def candidate_index(
    space: np.ndarray,
    space_id: str | None,
    pool_ids: np.ndarray,
    candidate_pos: np.ndarray,
    *,
    exact_max: int,
) -> Any:
    """Nearest-neighbour search over the round's candidates (`space` rows at `candidate_pos`),
    answering with positions in `candidate_pos`; None without candidates.

    Above `exact_max` the search is an HNSW graph, which takes minutes to build over a million codes
    on two cores. That graph is over the whole pool and kept between rounds (one per space and
    pool), searched with everything that is not a candidate filtered out, so a round pays for it
    once, not once per round. Below `exact_max`, or once fewer than half of the pool are candidates
    (filtered HNSW search then walks mostly through excluded nodes), the round builds its own."""
    from models.latent_index import LatentIndex

    if not len(candidate_pos):
        return None

    # snn asks for 30 neighbours of codes it moved off the pool, a harder search than the pool's
    # own neighbours: at efSearch 128 recall@30 was 0.96 on a million codes, at 16 per neighbour
    # (480) 0.99 (benchmarks/results/candidate_index.md).
    def fitted(codes: np.ndarray) -> LatentIndex:
        index = LatentIndex(exact_max=exact_max, ef_per_neighbour=SELECTION_EF_PER_NEIGHBOUR)
        return index.fit(codes, np.arange(len(codes)))

    if space_id is None or len(pool_ids) <= exact_max or 2 * len(candidate_pos) < len(pool_ids):
        return fitted(space[candidate_pos])
    pool_index = WARM.get("pool-index", digest_of(space_id, pool_ids, exact_max), lambda: fitted(space))
    return pool_index.among(candidate_pos)


def _latent_space(
    inputs: RoundInputs,
    pool_x: np.ndarray,
    pool_ids: np.ndarray,
    storage: Storage,
    device: Any,
    report: Reporter,
) -> tuple[Any, np.ndarray, dict[str, Any], dict[str, Any]]:
    """The pool's VAE (reused, or retrained when the pool changed enough) and every pool latent."""
    from models.vae_training import fit_vae
    from worker.artifacts import artifact_key, load_vae, save_vae

    settings = inputs.settings
    vae = None
    changed = 1.0
    own_key = artifact_key(inputs.project_id, inputs.round_id, "vae.pt")
    # A redelivered round resumes with the VAE its earlier attempt already trained.
    candidate_key = own_key if storage.exists(own_key) else inputs.previous_vae_key
    if candidate_key:
        try:
            previous = load_vae(storage, candidate_key, device)
        except Exception:  # a missing or unreadable artifact just means training a fresh VAE
            log.warning("could not load VAE %s; training a new one", candidate_key, exc_info=True)
        else:
            current = set(pool_ids.tolist())
            changed = len(current ^ previous.pool_ids) / max(len(previous.pool_ids), 1)
            same_shape = (previous.model.image_size, previous.model.in_channels, previous.model.latent_dim) == (
                settings.image_size,
                settings.channels,
                settings.latent_dim,
            )
            if same_shape and changed <= settings.vae_refresh_fraction:
                vae = previous.model
    trained = vae is None
    if vae is None:
        report("training VAE", 0.02)
        vae, history = fit_vae(
            pool_x,
            latent_dim=settings.latent_dim,
            epochs=settings.vae_epochs,
            prior=settings.vae_prior,
            beta=settings.vae_beta,
            seed=inputs.seed,
            device=device,
            progress=lambda f: report("training VAE", 0.02 + 0.3 * f),
        )
        key = own_key
        save_vae(storage, key, vae, pool_ids)
    else:
        key = candidate_key
        history = []
    report("encoding latents", 0.33)
    latents, latents_key, encoded = WARM.get(
        "vae-latents",
        digest_of(key, pool_ids),
        lambda: _vae_codes(inputs, vae, key, pool_x, pool_ids, storage),
    )
    info = {
        "encoded_now": encoded if "vae-latents" not in WARM.hits else 0,
        "trained": trained,
        "key": key,
        "pool_changed": round(changed, 4),
        "loss_first_last": [round(history[0], 2), round(history[-1], 2)] if history else None,
    }
    return vae, latents, {"vae": key, "latents": latents_key}, info


def _vae_codes(
    inputs: RoundInputs, vae: Any, vae_key: str, pool_x: PoolPixels, pool_ids: np.ndarray, storage: Storage
) -> tuple[np.ndarray, str, int]:
    """(the pool's latents in this VAE, the artifact holding them, how many were encoded now).

    The round that last used the same VAE stored its pool's latents: those rows are read back and
    only images it did not have are encoded; an unchanged pool points at that artifact instead of
    writing a copy (a million latents are re-encoded in ~40 s on 2 cores and stored as ~60 MB)."""
    from models.vae_training import encode_means
    from worker.artifacts import artifact_key, load_latents, save_latents

    previous = inputs.previous_vae_latents_key

    def stored() -> tuple[np.ndarray, np.ndarray]:
        assert previous is not None
        try:
            return load_latents(storage, previous)
        except Exception:  # unreadable or gone: encode the pool again
            log.warning("could not read latents %s", previous, exc_info=True)
            return np.zeros(0, np.int64), np.zeros((0, vae.latent_dim), np.float32)

    sources = [stored] if vae_key == inputs.previous_vae_key and previous else []
    latents, encoded, exact = known_then_encoded(
        pool_ids, sources, lambda positions: encode_means(vae, subset(pool_x, positions))
    )
    if exact is not None:
        assert previous is not None
        return latents, previous, 0
    key = artifact_key(inputs.project_id, inputs.round_id, "latents.npz")
    save_latents(storage, key, pool_ids, latents)
    return latents, key, encoded


@dataclass
class PoolFeatures:
    """The pool's rows in a ready representation, as a worker keeps them between rounds."""

    representation_key: str  # the representation's features artifact
    representation_ids: np.ndarray  # the images it was learned on and stored rows for
    ids: np.ndarray  # the pool these rows are of
    rows: np.ndarray
    encoded: int  # images none of the stored rows had, encoded when these were assembled
    changed: float  # how far the pool moved from the representation's: its new and its gone images
    stored_key: str | None  # an artifact holding exactly these rows, if one does


def pool_features(
    inputs: RoundInputs, pool_ids: np.ndarray, storage: Storage, encode: Callable[[np.ndarray], np.ndarray]
) -> tuple[PoolFeatures, int]:
    """The pool's rows in the ready representation, kept in this process between rounds, and how many
    images this round encoded."""
    made: list[PoolFeatures] = []

    def assemble() -> PoolFeatures:
        made.append(_assembled(inputs, pool_ids, storage, encode))
        return made[0]

    pool = WARM.get("features", digest_of(inputs.representation_artifacts["features"], pool_ids), assemble)
    return pool, pool.encoded if made else 0


def _assembled(
    inputs: RoundInputs, pool_ids: np.ndarray, storage: Storage, encode: Callable[[np.ndarray], np.ndarray]
) -> PoolFeatures:
    """The pool's rows in the ready representation. They come, in this order, from what this process
    assembled for an earlier pool in the same representation, the representation's own artifact, and
    the rows the last round that selected in it stored; only images none of those has are encoded.
    So images uploaded after the representation was learned are encoded by one round, not by every
    round until the next representation is ready."""
    from worker.artifacts import load_latents
    from worker.representation import load_features

    features_key = inputs.representation_artifacts["features"]
    held = WARM.held("features")
    stored: list[tuple[Callable[[], tuple[np.ndarray, np.ndarray]], str | None]] = []
    if isinstance(held, PoolFeatures) and held.representation_key == features_key:
        representation_ids = held.representation_ids
        stored.append((lambda: (held.ids, held.rows), held.stored_key))
        stored.append((lambda: load_features(storage, features_key), features_key))
    else:
        representation_ids, representation_rows = load_features(storage, features_key)
        stored.append((lambda: (representation_ids, representation_rows), features_key))
    previous = inputs.previous_features_key
    if previous and previous != features_key:
        stored.append((lambda: load_latents(storage, previous), previous))
    rows, encoded, exact = known_then_encoded(pool_ids, [load for load, _ in stored], encode)
    rows.flags.writeable = False  # shared by later rounds: no step may change it in place
    gone = np.setdiff1d(representation_ids, pool_ids, assume_unique=True)
    new = np.setdiff1d(pool_ids, representation_ids, assume_unique=True)
    return PoolFeatures(
        representation_key=features_key,
        representation_ids=representation_ids,
        ids=pool_ids,
        rows=rows,
        encoded=encoded,
        changed=(len(gone) + len(new)) / max(len(representation_ids), 1),
        stored_key=None if exact is None else stored[exact][1],
    )


def known_then_encoded(
    pool_ids: np.ndarray,
    sources: Sequence[Callable[[], tuple[np.ndarray, np.ndarray]]],
    encode: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, int, int | None]:
    """The pool's rows in some space. Each source gives (image ids, rows) and is read only while some
    pool images are still missing; an image's row comes from the first source that has it, and
    `encode(positions)` gives the rest. Returns the rows, how many were encoded, and the index of a
    source read whose rows are exactly the pool's: those are returned as they are, so a caller can
    point at the artifact they came from instead of storing a copy."""
    rows: np.ndarray | None = None
    missing = np.arange(len(pool_ids))
    for index, load in enumerate(sources):
        if not len(missing):
            break
        known_ids, known = load()
        if np.array_equal(known_ids, pool_ids):
            return known, 0, index
        if rows is None:
            rows = np.zeros((len(pool_ids), known.shape[1]), dtype=np.float32)
        found, at = rows_of(known_ids, pool_ids[missing])
        rows[missing[found]] = known[at[found]]
        missing = missing[~found]
    if rows is None:
        return np.asarray(encode(missing), dtype=np.float32), len(missing), None
    if len(missing):
        rows[missing] = encode(missing)
    return rows, len(missing), None


def rows_of(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of `wanted` are in `ids` (a mask over `wanted`), and at which row of `ids` each found one
    is. Sorted search, not a dict of a million Python ints."""
    if not len(ids):
        return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    in_order = ids[order]
    at = np.minimum(np.searchsorted(in_order, wanted), len(ids) - 1)
    return in_order[at] == wanted, order[at]


def _round_heartbeat(round_id: int, settings: Settings) -> Heartbeat:
    def beat() -> None:
        with session_scope(settings) as session:
            session.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
                .values(heartbeat_at=utcnow())
            )

    return Heartbeat(f"round-{round_id}", beat, settings.round_heartbeat_seconds)


def _after_written(
    round_id: int, work: Callable[[], tuple[dict[str, Any], dict[str, Any]]], settings: Settings
) -> None:
    """Runs a written round's follow-up work and records what it made. The round is already ready:
    a failure here is logged and costs the next round only its challenger, never this round."""
    try:
        artifacts, metrics = work()
    except Exception:
        log.exception("round %s: the work after the round failed", round_id)
        return
    if not artifacts and not metrics:
        return
    with session_scope(settings) as session:
        round_ = session.get(Round, round_id, with_for_update=True)
        if round_ is None:
            return
        # New dicts: the JSON columns are not mutation-tracked.
        round_.artifacts = {**(round_.artifacts or {}), **artifacts}
        round_.metrics = {**(round_.metrics or {}), **metrics}


def run_round(round_id: int, settings: Settings) -> None:
    inputs = _claim(round_id, settings)
    if inputs is None:
        return
    with _round_heartbeat(round_id, settings):
        _run_claimed(round_id, inputs, settings)


def _run_claimed(round_id: int, inputs: RoundInputs, settings: Settings) -> None:
    storage = get_storage(settings)
    report = Reporter(round_id, settings)
    try:
        output = compute(inputs, storage, settings, report)
        report("saving", 0.98, force=True)
        if _write(inputs, output, storage, settings) and output.after is not None:
            _after_written(round_id, output.after, settings)
    except JobCancelled:
        log.info("round %s was cancelled", round_id)
    except Exception as exc:
        log.exception("round %s failed", round_id)
        with session_scope(settings) as session:
            session.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_([s.value for s in ACTIVE_STATUSES]))
                .values(
                    status=RoundStatus.failed,
                    phase="failed",
                    error=failure_text(exc),
                    finished_at=utcnow(),
                    metrics={"traceback": traceback.format_exc()[-4000:]},
                )
            )


def _auto_summary(reasons: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How many of the batch each of auto's parts picked, and its rule; None for a named strategy."""
    by_auto = [r for r in reasons if "auto_rule" in r]
    if not by_auto:
        return None
    parts = Counter(r["strategy"] for r in by_auto)
    picked_by = " and ".join(f"{name} ({n})" for name, n in parts.items()) if len(parts) > 1 else by_auto[0]["strategy"]
    return {"picked_by": picked_by, "parts": dict(parts), "rule": by_auto[0]["auto_rule"]}
