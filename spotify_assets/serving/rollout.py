"""Canary rollout: which deployed bundle is the champion, which the candidate, and who gets which.

``serve/rollout.json`` under the artifacts names a champion bundle and, during a canary, a
candidate bundle and the share of users routed to it. Each deployed bundle is an immutable copy
of the files ``serving_model`` / ``playlist_index`` wrote, under
``serve/deployed/<bundle_id>/`` (hard links when the file system allows: the pipeline replaces
files by renaming new ones into place, so a link keeps the old bytes). A user goes to the
candidate when a stable hash of their id, salted with the candidate's bundle id, falls under
the share: the same user sees the same arm for the whole canary, and each new candidate is tried
on a different slice of users.

Without ``rollout.json`` the service serves the flat ``serve/`` bundle as the champion (what
the pipeline wrote last), as before canaries existed. No Dagster here: the service, the
pipeline's ``online`` group and the tests share this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from spotify_assets.atomic import atomic_write
from spotify_assets.contract import BUNDLE_DIR, BUNDLE_FILES, BUNDLE_INFO, DEPLOYED, PLAYLIST_INDEX_INFO, ROLLOUT
from spotify_assets.serving.recommender import model_version

CHAMPION, CANDIDATE = "champion", "candidate"


@dataclass(frozen=True)
class Deployment:
    """One deployed bundle."""

    bundle_id: str
    model: str
    version: str
    deployed_at: float
    #: the online like-rate measured when it was promoted (None: deployed without a canary)
    like_rate_at_promotion: float | None = None


@dataclass(frozen=True)
class Rollout:
    """The champion, the candidate (or None) with its share of users, and what happened so far."""

    champion: Deployment
    candidate: Deployment | None = None
    candidate_share: float = 0.0
    history: tuple[dict, ...] = field(default_factory=tuple)

    def arm_of(self, user_id: str) -> str:
        """``champion`` or ``candidate`` for a user id (stable for the whole canary)."""
        if self.candidate is None or not routes_to_candidate(user_id, self.candidate_share, self.candidate.bundle_id):
            return CHAMPION
        return CANDIDATE

    def deployment(self, arm: str) -> Deployment:
        if arm == CANDIDATE:
            if self.candidate is None:
                raise ValueError("no candidate is deployed")
            return self.candidate
        return self.champion

    def with_event(self, event: str, **details: object) -> Rollout:
        return replace(self, history=(*self.history, {"at": round(time.time(), 3), "event": event, **details}))

    def to_json(self) -> str:
        return json.dumps({"champion": asdict(self.champion),
                           "candidate": None if self.candidate is None else asdict(self.candidate),
                           "candidate_share": self.candidate_share, "history": list(self.history)}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Rollout:
        raw = json.loads(text)
        return cls(champion=Deployment(**raw["champion"]),
                   candidate=None if raw.get("candidate") is None else Deployment(**raw["candidate"]),
                   candidate_share=float(raw.get("candidate_share", 0.0)), history=tuple(raw.get("history", ())))


def routes_to_candidate(user_id: str, share: float, salt: str) -> bool:
    """Whether ``user_id`` is in the candidate's ``share`` of users: the first 8 bytes of
    BLAKE2b(salt, user id) read as a fraction of 2**64 fall under ``share``."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(str(user_id).encode("utf-8"), digest_size=8, key=salt.encode("utf-8")[:64]).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


def rollout_path(artifacts_dir: Path) -> Path:
    return ROLLOUT.under(artifacts_dir)


def deployed_dir(artifacts_dir: Path, bundle_id: str) -> Path:
    return DEPLOYED.under(artifacts_dir, piece=bundle_id)


def read_rollout(artifacts_dir: Path) -> Rollout | None:
    """The rollout, or None when nothing was deployed (the service then serves ``serve/``)."""
    path = rollout_path(artifacts_dir)
    return Rollout.from_json(path.read_text()) if path.exists() else None


def write_rollout(artifacts_dir: Path, rollout: Rollout) -> Path:
    """Replace ``rollout.json`` atomically (temp file, fsync, rename): the service sees the old
    rollout or the new one, never half of one."""
    path = rollout_path(artifacts_dir)
    with atomic_write(path) as tmp:
        tmp.write_text(rollout.to_json())
    return path


def deploy_bundle(artifacts_dir: Path, source_dir: Path | None = None) -> Deployment:
    """Copy the bundle in ``source_dir`` (default: ``serve/``) to ``serve/deployed/<bundle_id>/``
    (hard links where possible) unless that copy exists, and describe it. The copy is assembled
    in a temporary folder and renamed into place, so a deployed folder is always complete."""
    artifacts_dir = Path(artifacts_dir)
    source = Path(source_dir) if source_dir is not None else artifacts_dir.joinpath(*BUNDLE_DIR)
    info = json.loads((source / BUNDLE_INFO.name).read_text())
    target = deployed_dir(artifacts_dir, info["bundle_id"])
    if not target.exists():
        with atomic_write(target, directory=True) as tmp:
            for name in (artifact.name for artifact in BUNDLE_FILES):
                if (source / name).exists():
                    try:
                        os.link(source / name, tmp / name)
                    except OSError:  # another file system, or links not allowed
                        shutil.copy2(source / name, tmp / name)
            index_info = tmp / PLAYLIST_INDEX_INFO.name
            if index_info.exists() and json.loads(index_info.read_text()).get("bundle_id") != info["bundle_id"]:
                raise ValueError(f"{source}: {PLAYLIST_INDEX_INFO.name} was built for another bundle than "
                                 f"{info['bundle_id']}: materialize playlist_index before deploying")
    return Deployment(bundle_id=info["bundle_id"], model=info["model"], version=model_version(info),
                      deployed_at=round(time.time(), 3))
