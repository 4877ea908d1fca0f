"""Request and response bodies of the HTTP service (pydantic, strict).

Coordinates are WGS-84 degrees; NaN and infinities are refused everywhere
(``allow_inf_nan=False``); unknown fields are refused (``extra='forbid'``) so a
typo in a field name is an error, not a silently ignored value.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_BATCH = 10_000

Lat = Annotated[float, Field(ge=-90, le=90, description="Latitude, WGS-84 degrees.")]
Lng = Annotated[float, Field(ge=-180, le=180, description="Longitude, WGS-84 degrees.")]
Vehicle = Literal["bike", "ebike"]
DecisionKind = Literal["allowed", "forbidden", "outside_service_area", "uncertain"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ParkingQuery(Strict):
    lat: Lat
    lng: Lng
    accuracy_m: Annotated[float, Field(ge=0, le=10_000)] | None = Field(
        None, description="GPS accuracy radius in metres."
    )
    vehicle_type: Vehicle | None = None
    bike_id: Annotated[str, Field(max_length=128)] | None = None


class NearestSpotOut(BaseModel):
    zone_id: str | None
    lat: float
    lng: float
    distance_m: float


class ParkingDecision(BaseModel):
    decision: DecisionKind
    zone_id: str | None
    zone_name: str | None = None
    reason: str
    nearest: NearestSpotOut | None = None
    zone_version: int
    bike_id: str | None = None


class BatchPoint(Strict):
    lat: Lat
    lng: Lng
    accuracy_m: Annotated[float, Field(ge=0, le=10_000)] | None = None
    vehicle_type: Vehicle | None = None


class ParkingBatch(Strict):
    points: Annotated[list[BatchPoint], Field(min_length=1, max_length=MAX_BATCH)]
    nearest: bool = Field(
        False, description="Also find the nearest legal spot (slower, per point)."
    )


class BatchResult(BaseModel):
    decision: DecisionKind
    zone_id: str | None
    reason: str | None
    nearest_zone_id: str | None = None
    nearest_lat: float | None = None
    nearest_lng: float | None = None
    nearest_distance_m: float | None = None


class ParkingBatchOut(BaseModel):
    zone_version: int
    count: int
    results: list[BatchResult]


class ZonesInfo(BaseModel):
    version: int
    source: str
    sha256: str
    source_format: str
    zones: int
    by_kind: dict[str, int]
    warnings: list[str]
    loaded_at: dt.datetime


class RideIn(Strict):
    """A finished ride in the canonical trip schema (see ``fleet/schema.py``).

    Only the shape is checked here (types, required fields, a UTC offset on
    timestamps); the values go through the same validation as a trip file
    (``fleet.validate``: coordinates, null island, order, speed, the time
    window, a known city) and a refused ride is kept in the quarantine."""

    trip_id: Annotated[str, Field(min_length=1, max_length=128)]
    bike_id: Annotated[str, Field(min_length=1, max_length=128)]
    rider_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    vehicle_type: Vehicle
    started_at: dt.datetime
    ended_at: dt.datetime
    start_lat: float
    start_lng: float
    end_lat: float
    end_lng: float
    distance_m: Annotated[float, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="GPS track length, when the bike records one."
    )
    city: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("started_at", "ended_at")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-03-01T08:00:00Z")
        return v


class RideBatchIn(Strict):
    rides: Annotated[list[RideIn], Field(min_length=1, max_length=MAX_BATCH)]


class RideBatchOut(BaseModel):
    count: int
    by_status: dict[str, int]
    results: list[dict[str, object]]


class RideOut(BaseModel):
    trip_id: str
    status: Literal["credited", "excluded", "reversed"]
    replayed: bool = Field(description="True when this trip id was seen before.")
    rider_id: str | None
    reason: str | None = None
    co2_mg: int = 0
    points: int = 0
    distance_m: int | None = None
    entry_id: int | None = None
    factor_version: str | None = None
    rule_version: str | None = None


class ReversalIn(Strict):
    note: Annotated[str, Field(max_length=500)] = "reversed"


class LedgerEntryOut(BaseModel):
    entry_id: int
    trip_id: str | None
    kind: Literal["credit", "reversal", "redemption"]
    co2_mg: int
    points: int
    created_at: dt.datetime


class CarbonOut(BaseModel):
    rider_id: str
    points: int
    co2_mg: int
    co2_g: float
    entries_total: int
    entries: list[LedgerEntryOut]


class PlanIn(Strict):
    city: str | None = Field(None, description="Default: the store's only city.")
    date: dt.date | None = Field(None, description="Default: the day after the data.")
    trucks: Annotated[int, Field(ge=1, le=200)] = 4
    capacity: Annotated[int, Field(ge=1, le=500)] = 20
    time_limit_s: Annotated[float, Field(gt=0, le=600)] = 10.0


class PlanJob(BaseModel):
    job_id: str
    status: Literal["queued", "running", "done", "failed"]
    submitted_at: dt.datetime
    finished_at: dt.datetime | None = None
    error: str | None = None
    plan_id: int | None = None
    city: str | None = None
    date: dt.date | None = None
    progress_s: float | None = Field(
        None, description="While running: seconds into the search at its last report."
    )
    improvements: int | None = Field(
        None, description="While running: better solutions found so far."
    )
    best_cost: float | None = Field(
        None, description="While running: the best solution's cost so far."
    )
    totals: dict[str, float] | None = None
    notes: list[str] | None = None
    stops: list[dict[str, object]] | None = None


class ErrorItem(BaseModel):
    field: str
    reason: str


class ErrorOut(BaseModel):
    error: str
    detail: str | list[ErrorItem] | None = None
