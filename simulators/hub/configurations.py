"""IoT Hub automatic device configurations: validation, priority and metrics.

Source: "Automatic IoT device and module management" (learn.microsoft.com,
iot-hub-automatic-device-management). IoT Hub keeps applying a configuration:
every evaluation it finds the twins its ``targetCondition`` matches and
resolves conflicts *per device twin path*: "if two or more configurations
target the same device twin path, the content from the highest priority
configuration applies" (the most recently created one on a tie), so a
lower-priority configuration still applies its other paths ("partial
modifications"; it counts as *Applied*). When a twin stops matching, "the
settings from the configuration will be removed" and the next configuration
in line applies. Content may set a property to ``null`` to remove it. The
twin's ``configurations.[[id]].status`` (``Targeted``/``Applied``) is
queryable, which is what the metric queries select on; the system metrics
(``targetedCount``, ``appliedCount``) and at most five custom metric queries
are recounted at each evaluation.

Whether an object in the content replaces the property or merges into it is
not documented: the emulator replaces by default (``content_merge=False``) and
merges with ``content_merge=True``; the fleet tool writes every key it owns
each time, so it is right under both.

:class:`Configuration` and :func:`evaluate` are pure; :class:`ConfigurationEngine`
holds the hub's state and does the writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from simulators.hub.errors import BadRequest, Conflict, NotFound
from simulators.hub.query import Predicate, compile_condition, parse_query
from simulators.hub.twins import JsonObject, Twin, check_etag, make_etag, merge_patch

MAX_CONFIGURATIONS = 100  # per standard-tier hub ("Quotas and throttling", other limits)
MAX_CONFIGURATIONS_FREE = 10  # per free-tier hub (same page)
MAX_CUSTOM_METRICS = 5  # "Up to five custom metrics can be defined per configuration"
MAX_LABELS = 20
_ID = re.compile(r"[a-z0-9\-:+%_#*?!(),=@;']{1,128}")
_DESIRED_PREFIX = "properties.desired."
APPLIED, TARGETED = "Applied", "Targeted"
_SYSTEM_QUERIES = {
    "targetedCount": "SELECT deviceId FROM devices WHERE IS_DEFINED(configurations.[[{id}]])",
    "appliedCount": "SELECT deviceId FROM devices WHERE configurations.[[{id}]].status = 'Applied'",
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Configuration:
    id: str
    content: JsonObject  # {"properties.desired.x": value, ...}, IoT Hub's deviceContent
    target_condition: str = ""
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    metric_queries: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    updated: str = ""
    version: int = 1
    seq: int = 0  # creation order, the tie-break between equal priorities

    @property
    def etag(self) -> str:
        return make_etag(self.version)

    def value_patch(self, key: str, desired: JsonObject, merge: bool) -> JsonObject:
        """Content ``key`` as a merge patch over ``desired``. Replacing, keys the
        current object has and the value lacks are deleted; merging, they stay."""
        value = self.content[key]
        prior = _get(desired, _parts(key))
        if not merge and isinstance(prior, dict) and isinstance(value, dict):
            value = {**{k: None for k in prior if k not in value}, **value}
        return _patch_at(_parts(key), value)

    def to_json(self, metrics: Mapping[str, int], system: Mapping[str, int]) -> JsonObject:
        return {
            "id": self.id,
            "schemaVersion": "1.0",
            "labels": dict(self.labels),
            "content": {"deviceContent": dict(self.content)},
            "targetCondition": self.target_condition,
            "createdTimeUtc": self.created,
            "lastUpdatedTimeUtc": self.updated,
            "priority": self.priority,
            "systemMetrics": {
                "results": dict(system),
                "queries": {k: q.format(id=self.id) for k, q in _SYSTEM_QUERIES.items()},
            },
            "metrics": {"results": dict(metrics), "queries": dict(self.metric_queries)},
            "etag": self.etag,
        }

    def to_record(self) -> str:
        return json.dumps(
            {
                "id": self.id, "content": self.content, "targetCondition": self.target_condition,
                "priority": self.priority, "labels": dict(self.labels),
                "metricQueries": dict(self.metric_queries), "created": self.created,
                "updated": self.updated, "version": self.version, "seq": self.seq,
            }
        )  # fmt: skip

    @classmethod
    def from_record(cls, text: str) -> Configuration:
        r = json.loads(text)
        return cls(
            r["id"], r["content"], r["targetCondition"], r["priority"], r["labels"],
            r["metricQueries"], r["created"], r["updated"], r["version"], r["seq"],
        )  # fmt: skip


def _str_map(value: Any, what: str, limit: int | None = None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BadRequest(f"{what} must be an object of strings")
    if limit is not None and len(value) > limit:
        raise BadRequest(f"{what}: at most {limit} entries")
    return dict(value)


def check_target_condition(text: str) -> str | None:
    """The error IoT Hub would give for a target condition, or None."""
    try:
        compile_condition(text)
    except BadRequest as exc:
        return str(exc)
    return None


def check_metric_query(text: str) -> str | None:
    try:
        query = parse_query(text)
    except BadRequest as exc:
        return str(exc)
    if query.select is None or query.group_by or any(i.aggregate for i in query.select):
        return "query: a metric query selects deviceId: SELECT deviceId FROM devices WHERE ..."
    return None


def parse_configuration(config_id: str, body: JsonObject) -> Configuration:
    """Validate a PUT body the way IoT Hub does; the first problem is a 400."""
    if not _ID.fullmatch(config_id):
        raise BadRequest(
            f"configuration id {config_id[:140]!r} must be 1-128 lower-case letters, digits "
            "or -:+%_#*?!(),=@;'"
        )
    if body.get("id") not in (None, config_id):
        raise BadRequest("the id in the body differs from the id in the URL")
    content = body.get("content") or {}
    if not isinstance(content, dict):
        raise BadRequest("content must be an object")
    if content.get("modulesContent") or content.get("moduleContent"):
        raise BadRequest("only device configurations (deviceContent) are supported")
    device = content.get("deviceContent")
    if not isinstance(device, dict) or not device:
        raise BadRequest("content.deviceContent must be a non-empty object")
    for key in device:
        if not key.startswith(_DESIRED_PREFIX) or len(key) == len(_DESIRED_PREFIX):
            raise BadRequest(f"content key {key[:80]!r} must start with {_DESIRED_PREFIX!r}")
    target = body.get("targetCondition") or ""
    if not isinstance(target, str):
        raise BadRequest("targetCondition must be a string")
    if (error := check_target_condition(target)) is not None:
        raise BadRequest(f"targetCondition: {error}")
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise BadRequest("priority must be a non-negative integer")
    labels = _str_map(body.get("labels"), "labels", MAX_LABELS)
    metrics = body.get("metrics") or {}
    queries = _str_map(
        metrics.get("queries") if isinstance(metrics, dict) else {}, "metrics",
        MAX_CUSTOM_METRICS,
    )  # fmt: skip
    for name, text in queries.items():
        if (error := check_metric_query(text)) is not None:
            raise BadRequest(f"metric {name!r}: {error}")
    return Configuration(config_id, device, target, priority, labels, queries)


@functools.lru_cache(maxsize=1024)
def _condition(text: str) -> Predicate:
    """Conditions and metric queries are re-run every pass: parse each text once."""
    return compile_condition(text)


@functools.lru_cache(maxsize=1024)
def _metric(text: str) -> Predicate:
    return parse_query(text).matches


def _parts(key: str) -> tuple[str, ...]:
    return tuple(key[len(_DESIRED_PREFIX) :].split("."))


def _get(doc: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _patch_at(parts: tuple[str, ...], value: Any) -> JsonObject:
    patch: JsonObject = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        patch = {part: patch}
    return patch


def _overlap(a: str, b: str) -> bool:
    """Two content paths conflict when one is the other or lies inside it."""
    pa, pb = _parts(a), _parts(b)
    n = min(len(pa), len(pb))
    return pa[:n] == pb[:n]


@dataclass(frozen=True)
class Evaluation:
    """Which configurations target and which apply, per device and per content path."""

    statuses: dict[str, dict[str, str]]  # device id -> config id -> Applied/Targeted
    owners: dict[str, dict[str, str]]  # device id -> content path -> the config applying it


def evaluate(configs: Iterable[Configuration], views: Iterable[JsonObject]) -> Evaluation:
    ranked = sorted(configs, key=lambda c: (c.priority, c.seq), reverse=True)
    conditions: list[tuple[Configuration, Predicate]] = [
        (c, _condition(c.target_condition)) for c in ranked
    ]
    statuses: dict[str, dict[str, str]] = {}
    owners: dict[str, dict[str, str]] = {}
    for view in views:
        device_id = view["deviceId"]
        hits = [c for c, matches in conditions if matches(view)]
        if not hits:
            continue
        paths: dict[str, str] = {}
        for config in hits:  # highest priority first: it takes every path it names
            for key in config.content:
                if not any(_overlap(key, taken) for taken in paths):
                    paths[key] = config.id
        applied = set(paths.values())
        owners[device_id] = paths
        statuses[device_id] = {c.id: APPLIED if c.id in applied else TARGETED for c in hits}
    return Evaluation(statuses, owners)


def count_metrics(
    config: Configuration, views: list[JsonObject]
) -> tuple[dict[str, int], dict[str, int]]:
    """Custom metric results, then system metrics, over views that carry statuses."""
    custom: dict[str, int] = {}
    for name, text in config.metric_queries.items():
        matches = _metric(text)
        custom[name] = sum(1 for v in views if matches(v))
    targeted = applied = 0
    for view in views:
        status = view.get("configurations", {}).get(config.id, {}).get("status")
        targeted += status is not None
        applied += status == APPLIED
    return custom, {"targetedCount": targeted, "appliedCount": applied}


class ConfigStore(Protocol):
    def configurations(self) -> list[str]: ...

    def save_configuration(self, config_id: str, record: str) -> None: ...

    def delete_configuration(self, config_id: str) -> None: ...

ApplyDesired = Callable[[str, JsonObject], object]


class ConfigurationEngine:
    """The hub's configurations: CRUD with etags, and the evaluation pass."""

    def __init__(
        self,
        store: ConfigStore,
        apply_desired: ApplyDesired,
        *,
        limit: int = MAX_CONFIGURATIONS,
        content_merge: bool = False,
    ) -> None:
        self._store = store
        self._apply = apply_desired
        self.limit = limit
        self.content_merge = content_merge
        self.configs: dict[str, Configuration] = {}
        for record in store.configurations():
            c = Configuration.from_record(record)
            self.configs[c.id] = c
        self._seq = itertools.count(max((c.seq for c in self.configs.values()), default=0) + 1)
        self._statuses: dict[str, dict[str, str]] = {}
        # device id -> content path -> config id, as last written to the twin. Not
        # stored: the first pass after a start, before any client can change a twin,
        # learns it again from the twins (writing nothing where they already agree).
        self._applied: dict[str, dict[str, str]] = {}
        self._metrics: dict[str, tuple[dict[str, int], dict[str, int]]] = {}

    # ------------------------------------------------------------ CRUD

    def get(self, config_id: str) -> Configuration:
        config = self.configs.get(config_id)
        if config is None:
            raise NotFound(f"configuration {config_id!r} not found")
        return config

    def to_json(self, config: Configuration) -> JsonObject:
        metrics, system = self._metrics.get(config.id, ({}, {}))
        return config.to_json(metrics, system)

    def put(self, config_id: str, body: JsonObject, if_match: str | None) -> Configuration:
        new = parse_configuration(config_id, body)
        current = self.configs.get(config_id)
        now = _now()
        if current is None:
            if if_match not in (None, "", "*"):
                raise NotFound(f"configuration {config_id!r} not found")
            if len(self.configs) >= self.limit:
                raise BadRequest(f"at most {self.limit} configurations per hub")
            stored = replace(new, created=now, updated=now, seq=next(self._seq))
        else:
            if if_match is None:
                raise Conflict(f"configuration {config_id!r} already exists")
            check_etag(if_match, current.etag)
            if new.content != current.content:
                raise BadRequest("a configuration's content cannot be changed after creation")
            stored = replace(
                current, target_condition=new.target_condition, priority=new.priority,
                labels=new.labels, metric_queries=new.metric_queries, updated=now,
                version=current.version + 1,
            )  # fmt: skip
        self._store.save_configuration(config_id, stored.to_record())
        self.configs[config_id] = stored
        return stored

    def delete(self, config_id: str, if_match: str | None) -> None:
        check_etag(if_match, self.get(config_id).etag)
        self._store.delete_configuration(config_id)
        del self.configs[config_id]
        self._metrics.pop(config_id, None)

    def list(self, top: int | None) -> list[Configuration]:
        ordered = sorted(self.configs.values(), key=lambda c: c.seq)
        return ordered[:top] if top else ordered

    # ------------------------------------------------------------ evaluation

    def statuses(self, device_id: str) -> dict[str, dict[str, str]]:
        """The twin's ``configurations`` section."""
        return {k: {"status": v} for k, v in self._statuses.get(device_id, {}).items()}

    def view(self, twin: Twin) -> JsonObject:
        """A twin's query view, with its configuration statuses."""
        return {**twin.query_view(), "configurations": self.statuses(twin.device_id)}

    def evaluate(self, twins: Mapping[str, Twin]) -> None:
        """One pass: retarget, apply changed winners' content, recount metrics."""
        if not self.configs and not self._statuses:
            return
        result = evaluate(self.configs.values(), (t.query_view() for t in twins.values()))
        self._statuses = {d: s for d, s in result.statuses.items() if d in twins}
        for device_id in set(result.owners) | set(self._applied):
            owners = result.owners.get(device_id, {})
            before = self._applied.get(device_id, {})
            if device_id not in twins:  # deleted with its twin
                self._applied.pop(device_id, None)
                continue
            if owners == before:
                continue
            desired = twins[device_id].desired
            doc = desired
            for key, config_id in before.items():
                if owners.get(key) == config_id:
                    continue
                taken = any(_overlap(key, kept) for kept in owners)
                if not (taken and self.content_merge):  # its settings go with it
                    doc = merge_patch(doc, _patch_at(_parts(key), None))
            for key, config_id in owners.items():
                if before.get(key) != config_id:
                    value = self.configs[config_id].value_patch(key, doc, self.content_merge)
                    doc = merge_patch(doc, value)
            patch = _diff(desired, doc)
            if owners:
                self._applied[device_id] = owners
            else:
                self._applied.pop(device_id, None)
            if patch:
                self._apply(device_id, patch)
        views = [self.view(t) for t in twins.values()]
        self._metrics = {c.id: count_metrics(c, views) for c in self.configs.values()}


def _diff(old: JsonObject, new: JsonObject) -> JsonObject:
    """The merge patch that turns ``old`` into ``new``."""
    patch: JsonObject = {k: None for k in old if k not in new}
    for key, value in new.items():
        prior = old.get(key)
        if isinstance(prior, dict) and isinstance(value, dict):
            if inner := _diff(prior, value):
                patch[key] = inner
        elif prior != value or key not in old:
            patch[key] = value
    return patch
