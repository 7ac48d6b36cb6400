"""Request and response bodies (pydantic): types, sizes and batch limits of every endpoint.

Types are kept loose where file ingest accepts several spellings (a timestamp as ISO text or
epoch number, a value as number or numeric text) so that the *ingest rules* decide and explain,
not a generic type error; sizes are bounded everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_K = 200
MAX_EVENTS = 1000
MAX_USERS = 100
MAX_SESSION_ITEMS = 500
MAX_PAIRS = 1000
MAX_ID = 256
# Work per request: ranked items returned (users x k) and items explained (users x k, explain).
MAX_RESULT_ITEMS = 2000
MAX_EXPLAINED_ITEMS = 200

# Ids never hold control characters (C0, DEL, C1; NUL included): refused with 422, not stored.
NO_CONTROL = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
# Free text may hold tabs and line breaks, no other control character.
TEXT_CHARS = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NO_CONTROL)]
Text = Annotated[str, Field(max_length=1000, pattern=TEXT_CHARS)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    """One event, as a row of an events file (same field names and rules)."""

    user_id: Annotated[str, Field(max_length=MAX_ID, pattern=NO_CONTROL)]
    event_type: Annotated[str, Field(max_length=64, pattern=NO_CONTROL)]
    item_id: Annotated[str, Field(max_length=MAX_ID, pattern=NO_CONTROL)] | None = None
    timestamp: Annotated[str, Field(max_length=64, pattern=NO_CONTROL)] | float | None = Field(
        default=None, description="ISO-8601 (offset allowed) or epoch s/ms; default: now (UTC)."
    )
    session_id: Annotated[str, Field(max_length=MAX_ID, pattern=NO_CONTROL)] | None = None
    query: Text | None = None
    value: float | Annotated[str, Field(max_length=64)] | None = None


class EventBatch(Strict):
    events: Annotated[list[EventIn], Field(min_length=1, max_length=MAX_EVENTS)]


class RejectedEvent(BaseModel):
    index: int
    field: str
    reason: str


class EventsOut(BaseModel):
    received: int
    stored: int
    duplicates: int
    quarantined: int
    rejected: list[RejectedEvent]


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    category: str | None = None
    price: float | None = None
    explanation: dict[str, Any] | None = None


class Recommendation(BaseModel):
    user_id: str | None
    source: str = Field(
        description="model (trained vector), ann (approximate index), live (fold-in of stored "
        "and new events), session (anonymous history), fallback (cold start: popularity or "
        "content ranking of the model)"
    )
    model_version: str
    items: list[ScoredItem]


class Session(Strict):
    items: Annotated[list[Id], Field(max_length=MAX_SESSION_ITEMS)]
    weights: (
        Annotated[list[Annotated[float, Field(ge=0, le=1e6)]], Field(max_length=MAX_SESSION_ITEMS)]
        | None
    ) = None

    @model_validator(mode="after")
    def _same_length(self) -> Session:
        if self.weights is not None and len(self.weights) != len(self.items):
            raise ValueError("weights: must have one weight per item")
        return self


class RecommendIn(Strict):
    """A batch of known or unknown users, or one anonymous session (exactly one of the two).

    Work per request is bounded: users x k at most 2,000 items, and with ``explain`` at most
    200 explained items (422 past either)."""

    user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)] | None = None
    session: Session | None = None
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    exclude_seen: bool = True
    category: Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NO_CONTROL)] | None = (
        None
    )
    price_max: Annotated[float, Field(ge=0, le=1e12)] | None = None
    explain: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> RecommendIn:
        if (self.user_ids is None) == (self.session is None):
            raise ValueError("give exactly one of user_ids or session")
        n = 1 if self.user_ids is None else len(self.user_ids)
        cap = MAX_EXPLAINED_ITEMS if self.explain else MAX_RESULT_ITEMS
        if n * self.k > cap:
            what = "explained items" if self.explain else "items"
            raise ValueError(
                f"{n} users x k {self.k} = {n * self.k} {what}: at most {cap} per request "
                "(split the batch or lower k)"
            )
        return self


class RecommendBatchOut(BaseModel):
    results: list[Recommendation]


class SimilarOut(BaseModel):
    item_id: str
    modality: str
    model_version: str
    items: list[ScoredItem]


class Pair(Strict):
    user_id: Id
    item_id: Id


class PredictIn(Strict):
    """At most 1,000 pairs per request (422 past that)."""

    pairs: Annotated[list[Pair], Field(min_length=1, max_length=MAX_PAIRS)]


class Prediction(BaseModel):
    user_id: str
    item_id: str
    click: float
    add_to_cart: float
    purchase: float


class PredictOut(BaseModel):
    model_version: str
    predictions: list[Prediction]


class ReloadIn(Strict):
    model_dir: Annotated[str, Field(min_length=1, max_length=4096, pattern=NO_CONTROL)] | None = (
        Field(
            default=None,
            description="Folder written by `shopsight train`, relative to the models folder "
            "(or absolute inside it); default: the current one.",
        )
    )
    wait: bool = Field(default=False, description="Answer only when the swap is done.")


class ReloadOut(BaseModel):
    state: Literal["idle", "loading", "done", "failed"]
    model_dir: str | None = None
    version: str | None = None
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


class ErrorOut(BaseModel):
    error: str
    detail: Any = None


class PrivacyOut(BaseModel):
    """The differential-privacy budget a private model spent (see docs/privacy.md)."""

    private: bool = Field(description="False: trained without noise (a reference model).")
    unit: str = Field(description="Privacy unit: user or interaction.")
    epsilon: float | None = None
    delta: float | None = None
    accountant: str | None = None


class HealthOut(BaseModel):
    """Liveness, open to anyone: no paths, no counts."""

    status: Literal["ok"] = Field(description="Always ok when the server answers.")
    model_version: str = Field(description="Content hash of the model being served.")
    reload: Literal["idle", "loading", "done", "failed"] = Field(
        description="State of the last /admin/reload."
    )
    privacy: PrivacyOut | None = Field(
        default=None, description="Budget of a private model (absent for other models)."
    )


class StatusOut(BaseModel):
    """What is being served (needs a token)."""

    status: Literal["ok"]
    model: str = Field(description="Model kind (als, bpr, ...).")
    version: str = Field(description="Content hash of config.json and the weights.")
    model_dir: str = Field(description="The model folder, relative to the models folder.")
    n_users: int
    n_items: int
    trained_at: str | None = None
    loaded_at: str
    ann: bool = Field(description="Known users answered through an HNSW index.")
    content_modalities: list[str] = Field(description="Feature-cache views for /similar.")
    predictor: bool = Field(description="A funnel predictor is deployed (/predict).")
    personas: bool = Field(description="Personas are deployed (/persona, /segments).")
    privacy: PrivacyOut | None = Field(
        default=None, description="Budget of a private model (null for other models)."
    )
    live_users: int = Field(description="Users with live state in memory.")
    uptime_s: float
    read_only: bool = Field(description="The store is open read-only (no /events, no forget).")
    reload: Literal["idle", "loading", "done", "failed"]


class SegmentRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int = Field(description="Segment number.")
    name: str = Field(description="Segment name (or 'suppressed' below the privacy floor).")


class PersonaOut(BaseModel):
    """One user's persona, under their pseudonym. Sections present depend on the signals the
    store holds (see ``shopsight personas``); extra sections may appear."""

    model_config = ConfigDict(extra="allow")
    user: str = Field(description="The user's pseudonym (never the raw id).")
    segment: SegmentRef
    demographics: dict[str, Any] | None = Field(
        default=None, description="Age band, gender, region, occupation when the shop has them."
    )
    activity: dict[str, Any] | None = Field(default=None, description="Event counts and span.")
    affinities: dict[str, Any] | None = Field(
        default=None, description="Top categories, brands, keywords with weights."
    )
    price: dict[str, Any] | None = Field(default=None, description="Price level and sensitivity.")
    rhythm: dict[str, Any] | None = Field(default=None, description="When they shop.")
    funnel: dict[str, Any] | None = Field(default=None, description="Browse, cart, buy rates.")
    rfm: dict[str, Any] | None = Field(default=None, description="Recency, frequency, monetary.")
    prediction: dict[str, Any] | None = Field(
        default=None, description="Purchase propensity and likely next category."
    )


class SegmentOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    name: str
    size: int = Field(description="Users in the segment.")
    description: str | None = None


class SegmentsOut(BaseModel):
    """Segments, largest first; segments under the privacy floor are not listed."""

    segments: list[SegmentOut]


class ForgetOut(BaseModel):
    """What ``POST /admin/forget/{user_id}`` erased."""

    forgotten: bool = Field(description="The erasure ran to the end.")
    live_state_dropped: bool = Field(description="The user had live state in this server.")
    report: dict[str, Any] = Field(
        description="The erasure report of shopsight.privacy.forget (rows per table, files "
        "rewritten, model folders folded, audit row)."
    )


class OnlineReportOut(BaseModel):
    """What this server served and what followed (see docs/online.md)."""

    model_config = ConfigDict(extra="allow")
    window_s: float = Field(description="Seconds after serving an event is credited.")
    k: int = Field(description="Positions counted for CTR@k.")
    engagement: list[str] = Field(description="Event types that count as engagement.")
    surfaces: list[str] = Field(description="Surfaces (request kinds) included.")
    impressions: int = Field(description="Impressions (items shown) in the log.")
    period: dict[str, str] = Field(description="First and last serving time.")
    catalogue_items: int
    groups: list[dict[str, Any]] = Field(
        description="Per model version and A/B variant: users, lists, CTR@k, conversion, "
        "revenue per impression, coverage, novelty, each with a 95% interval."
    )
    notes: list[str] = Field(description="What the data cannot support yet, one line each.")
    ab: dict[str, Any] | None = Field(
        default=None, description="The A/B comparison: lift, interval, p-value, users needed."
    )
