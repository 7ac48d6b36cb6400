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

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Text = Annotated[str, Field(max_length=1000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    """One event, as a row of an events file (same field names and rules)."""

    user_id: Annotated[str, Field(max_length=MAX_ID)]
    event_type: Annotated[str, Field(max_length=64)]
    item_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
    timestamp: Annotated[str, Field(max_length=64)] | float | None = Field(
        default=None, description="ISO-8601 (offset allowed) or epoch s/ms; default: now (UTC)."
    )
    session_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
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
    """A batch of known or unknown users, or one anonymous session (exactly one of the two)."""

    user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_USERS)] | None = None
    session: Session | None = None
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 10
    exclude_seen: bool = True
    category: Annotated[str, Field(min_length=1, max_length=MAX_ID)] | None = None
    price_max: Annotated[float, Field(ge=0, le=1e12)] | None = None
    explain: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> RecommendIn:
        if (self.user_ids is None) == (self.session is None):
            raise ValueError("give exactly one of user_ids or session")
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
    model_dir: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        default=None, description="Folder written by `shopsight train`; default: the current one."
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
