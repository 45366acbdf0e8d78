"""The latent map through REST and a real worker: a round's confusion matrix, the map's t-SNE layout
built on first request (PCA until then), and predictions shown to engineers only."""

from __future__ import annotations

import time

import numpy as np

from tests.app.test_method_rounds import _label_suggestions
from tests.conftest import LiveService, wait_for_round
from tests.factories import digits_project, mnist


def _knn_accuracy(xy: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: how well the 2-D layout keeps classes together."""
    distances = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    nearest = np.argsort(distances, axis=1)[:, :k]
    votes = np.array([np.bincount(y[row], minlength=10).argmax() for row in nearest])
    return float((votes == y).mean())


def test_map_layout_is_built_on_request_and_shows_class_structure(sqlite_service: LiveService) -> None:
    eng_id, eng = sqlite_service.new_user("engineer")
    ann_id, ann = sqlite_service.new_user("annotator")
    engineer, annotator = sqlite_service.client(eng), sqlite_service.client(ann)
    pid, names = digits_project(
        sqlite_service.admin, members=[eng_id, ann_id], pool=np.arange(1000, 1400), validation=np.arange(1500, 1560)
    )
    truth = {image_id: int(mnist().labels[int(name.split("-")[1].split(".")[0])]) for image_id, name in names.items()}
    first = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "random", "batch_size": 20}).json()["id"]
    )
    labelled = _label_suggestions(engineer, sqlite_service, first["id"], names)
    second = wait_for_round(
        engineer, engineer.post(f"/projects/{pid}/rounds", json={"strategy": "margin", "batch_size": 10}).json()["id"]
    )
    assert second["status"] == "ready", second
    # A warm round rebuilds nothing that did not change: the same worker process keeps the pool's
    # features and kNN graph from the round before.
    body = {"strategy": "entropy", "batch_size": 10, "close_open": True}
    third = wait_for_round(engineer, engineer.post(f"/projects/{pid}/rounds", json=body).json()["id"])
    assert third["status"] == "ready", third
    assert {"pixel-pca", "graph"} <= set(third["metrics"]["reused"]), third["metrics"]["reused"]
    assert third["metrics"]["decoded_images"] == 0

    # The round's confusion matrix is over the validation split (rows: true class) and agrees with
    # its accuracy.
    confusion = np.asarray(second["metrics"]["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 60
    assert abs(np.trace(confusion) / 60 - second["metrics"]["accuracy"]) < 1e-9

    # First request: a PCA projection at once, and the t-SNE layout is asked for.
    early = engineer.get(f"/projects/{pid}/latent-map").json()
    assert early["round_id"] == third["id"] and early["count"] == 400
    if early["layout"] == "pca":
        assert early["layout_pending"] is True
    deadline = time.monotonic() + 90
    late = early
    while late["layout"] != "tsne":
        assert time.monotonic() < deadline, late.get("layout_error")
        time.sleep(0.5)
        late = engineer.get(f"/projects/{pid}/latent-map").json()
    assert late["layout_pending"] is False and late["layout_error"] is None
    assert late["space"] == second["metrics"]["representation"]["kind"]

    points = {p["image_id"]: p for p in late["data"]}
    assert set(points) == set(names)
    statuses = [p["status"] for p in points.values()]
    assert statuses.count("labelled") == len(labelled) == 20 and statuses.count("suggested") == 10
    # The engineer sees the task model's guess for every pool image, with a confidence.
    assert all(p["predicted"] in late["classes"] and 0 < p["confidence"] <= 1 for p in points.values())
    # t-SNE keeps the digits apart far better than the linear projection did.
    ids = sorted(points)
    y = np.array([truth[i] for i in ids])
    tsne_xy = np.array([[points[i]["x"], points[i]["y"]] for i in ids])
    pca_points = {p["image_id"]: p for p in early["data"]}
    pca_xy = np.array([[pca_points[i]["x"], pca_points[i]["y"]] for i in ids])
    tsne_knn, pca_knn = _knn_accuracy(tsne_xy, y), _knn_accuracy(pca_xy, y)
    assert tsne_knn >= 0.75 and tsne_knn > pca_knn + 0.1, (tsne_knn, pca_knn)

    # Annotators see the same map without the model's guesses.
    seen = annotator.get(f"/projects/{pid}/latent-map").json()
    assert seen["layout"] == "tsne" and seen["count"] == 400
    assert all(p["predicted"] is None and p["confidence"] is None for p in seen["data"])
