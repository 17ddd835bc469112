"""Device configuration: one YAML file per store device, validated with unknown keys rejected.

Secrets never sit in the file: passwords and pseudonymization keys are referenced by a file
path or an environment variable name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from storelens.contract.events import Identifier

Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TlsConfig(_Strict):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False


class MqttConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)


class ModelConfig(_Strict):
    path: str = Field("asset:models/yolox_nano.onnx", description="File path or asset:NAME.")
    confidence: float = Field(0.35, gt=0, lt=1)
    nms_iou: float = Field(0.45, gt=0, lt=1)
    threads: int = Field(2, ge=1, le=64, description="ONNX Runtime intra-op threads.")
    parallel: int = Field(
        1,
        ge=1,
        le=16,
        description="Frames inferred side by side (one ORT run per thread) when the model has "
        "a fixed batch size; on a multi-camera box use threads: 1 and parallel: <cores>.",
    )
    providers: list[str] | None = Field(None, description="Default: best installed, CPU last.")
    person_class: int | None = Field(None, description="Default: read from model metadata.")


class TrackerConfig(_Strict):
    type: Literal["bytetrack", "ocsort"] = "bytetrack"
    confirm_s: float = Field(0.3, ge=0, description="A track must persist this long to count.")
    lost_track_buffer_s: float = Field(3.0, gt=0, description="Keep lost tracks this long.")
    high_confidence: float = Field(0.5, gt=0, lt=1)
    match_iou: float = Field(0.2, gt=0, lt=1)
    confirm_move: float = Field(
        0.25,
        ge=0,
        description="Feet must move this many box heights before a track counts (0: off); "
        "shoppers walk in, mannequins and signs never move.",
    )
    stitch_s: float = Field(
        0.0,
        ge=0,
        le=30,
        description="A person lost (hidden, missed) who reappears within this many seconds "
        "where their motion leads and looking alike keeps their track and visit (0: off; "
        "4 measured on the sample video). Visits end, and their events leave, up to this "
        "long after the last sighting. Off by default for now; with it on in both configs "
        "the two-camera bench (store_visits fusion) still passes: 30 single-camera visits, "
        "33 store visits.",
    )


ZONE_KINDS = ("fitting_room", "checkout", "staff_only")


class ZoneConfig(_Strict):
    name: Identifier
    points: list[Point] = Field(description="Polygon in image pixels.")
    category: str | None = Field(
        None,
        description="Product category shown in this zone, or what the zone is for: "
        "`fitting_room` (each stay is a try-on session; the camera sees people, never "
        "garments), `checkout` (stays carry queue and service times), `staff_only` (a stay "
        "marks the person as staff when `staff.learn_from_zones` is on).",
    )
    service_area: list[Point] | None = Field(
        None,
        description="Checkout zones: polygon (image pixels) at the till where a customer is "
        "served; the queue lasts until the person first steps into it. Without it a checkout "
        "stay has no queue/service split.",
    )
    enter_s: float = Field(0.5, ge=0, description="Must stay inside this long to enter.")
    exit_grace_s: float = Field(2.0, ge=0, description="Brief absences shorter than this merge.")
    min_dwell_s: float = Field(3.0, ge=0, description="Shorter stays are walk-throughs.")

    @field_validator("points", "service_area")
    @classmethod
    def _polygon(cls, v: list[Point] | None) -> list[Point] | None:
        if v is not None and len(v) < 3:
            raise ValueError("needs 3 or more points")
        return v

    @model_validator(mode="after")
    def _service_area(self) -> ZoneConfig:
        if self.service_area is not None and self.category != "checkout":
            raise ValueError("service_area is for zones of category checkout")
        return self

    @property
    def kind(self) -> str | None:
        """What the zone is for, when its category is one the pipeline gives meaning."""
        return self.category if self.category in ZONE_KINDS else None


class LineConfig(_Strict):
    name: Identifier
    a: Point
    b: Point
    in_side: Literal["left", "right"] = Field(
        "left", description="Side of a->b that is inside the store; crossing into it is 'in'."
    )
    band_px: float = Field(8.0, ge=0, description="Dead band around the line against jitter.")
    entrance: bool = Field(False, description="Counts store footfall.")

    @model_validator(mode="after")
    def _length(self) -> LineConfig:
        if self.a == self.b:
            raise ValueError("a and b must differ")
        return self


class FloorConfig(_Strict):
    image_points: list[Point]
    floor_points: list[Point] = Field(description="Same points on the floor plan, in metres.")
    path_tolerance_m: float = Field(0.25, gt=0, description="Path simplification tolerance.")

    @model_validator(mode="after")
    def _pairs(self) -> FloorConfig:
        if len(self.image_points) < 4:
            raise ValueError("a homography needs 4 or more point pairs")
        if len(self.image_points) != len(self.floor_points):
            raise ValueError("image_points and floor_points must have the same length")
        return self


class CameraConfig(_Strict):
    id: Identifier
    source: str = Field(description="File path, asset:NAME, rtsp:// URL, or USB index.")
    fps: float | None = Field(None, gt=0, description="Target processing rate; None = source.")
    source_fps: float | None = Field(None, gt=0, description="Override the container's fps.")
    loop: bool = Field(False, description="Replay a file source forever (demos, benches).")
    realtime: bool = Field(False, description="Pace a file source at its frame rate.")
    motion_gate: bool = Field(False, description="Skip detection on frames with no motion.")
    detect_every: int = Field(
        1,
        ge=1,
        le=10,
        description="Run the detector on every k-th frame (1: every frame); frames in between "
        "are still tracked (people move on at their recent velocity) and counted in zones and "
        "lines; the tracker's match_iou is divided by sqrt(k). Cameras are staggered so "
        "detections spread evenly over the loop.",
    )
    crop: Annotated[list[int], Field(min_length=4, max_length=4)] | None = Field(
        None,
        description="[x, y, width, height]: use only this region of the source's frames; "
        "zones, lines and floor points are then in the region's pixels. For splitting one "
        "video into several overlapping 'cameras' (tests, the two-camera example).",
    )
    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    floor: FloorConfig | None = None
    occupancy_interval_s: float = Field(60.0, gt=0)

    @field_validator("crop")
    @classmethod
    def _crop(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (v[0] < 0 or v[1] < 0 or v[2] < 16 or v[3] < 16):
            raise ValueError("crop needs x, y >= 0 and a width and height of 16 px or more")
        return v

    def with_detect_every(self, every: int) -> CameraConfig:
        """This camera with another detection stride, validated like the YAML (benches and
        analysis try strides without editing the config)."""
        return CameraConfig.model_validate({**self.model_dump(), "detect_every": every})

    @model_validator(mode="after")
    def _unique(self) -> CameraConfig:
        names = [z.name for z in self.zones] + [ln.name for ln in self.lines]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"zone/line names must be unique, repeated: {sorted(dup)}")
        return self


class HandoffConfig(_Strict):
    """Where people walk from one camera's view into another's (floor metres)."""

    from_camera: Identifier
    to_camera: Identifier
    area: list[Point] = Field(
        description="Floor polygon (metres) in which a person leaving `from_camera` may "
        "reappear in `to_camera`: the overlap of two views, or the gap between them."
    )
    window_s: float = Field(4.0, gt=0, le=60, description="Longest time from leaving to arriving.")
    both_ways: bool = Field(True, description="Also from `to_camera` back to `from_camera`.")

    @field_validator("area")
    @classmethod
    def _area(cls, v: list[Point]) -> list[Point]:
        if len(v) < 3:
            raise ValueError("needs 3 or more points")
        return v


class StoreVisitsConfig(_Strict):
    """Fuse the cameras of this device into store visits on the floor plan: one random visit
    ID, one floor path and one member link per person across every camera."""

    same_person_m: float = Field(
        1.2,
        gt=0,
        description="Two cameras see one person when their floor positions at the same time "
        "are at most this far apart (median over the overlap).",
    )
    decide_s: float = Field(
        1.0,
        ge=0,
        le=10,
        description="A new camera track is held this long (its events too) while it is matched "
        "to people other cameras see; events of a store visit may leave this much later.",
    )
    min_overlap: int = Field(3, ge=1, description="Simultaneous sightings needed to match.")
    reorder_s: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Cameras deliver frames on their own clocks and rates: a frame waits up to "
        "this long (in frame time) for the other cameras to reach its time before it is "
        "fused, so people are compared at the same moment; a camera further behind is fused "
        "late. Events of a store visit may leave this much later. 0: fuse in arrival order.",
    )
    max_clock_skew_s: float = Field(
        1.0,
        ge=0,
        le=5,
        description="Cameras' clocks may disagree (capture and stream delays): the device "
        "learns each camera's offset from people two cameras see at once (moving people, the "
        "time shift that lays one floor track over the other), up to this much; 0: trust "
        "the frame times as they are.",
    )
    handoff_m: float = Field(
        2.5, gt=0, description="Farthest a hand-off arrival may be from the departure point."
    )
    appearance_margin: float = Field(
        0.08,
        ge=0,
        lt=1,
        description="Between two hand-off candidates, appearance (colour histograms, kept in "
        "memory only) decides only when the better one is closer by this much; else the "
        "hand-off is ambiguous and starts a new visit.",
    )
    handoffs: list[HandoffConfig] = Field(default_factory=list)


class _Reader(_Strict):
    id: Identifier
    camera: Identifier | None = Field(None, description="Camera that sees the reader.")
    zone: list[Point] | None = Field(None, description="Reader zone polygon in that camera.")
    format: Literal["digits", "track2", "wiegand26", "auto"] = "auto"
    position: Point | None = Field(
        None, description="Where the reader is in the camera image; default: zone centroid."
    )
    clear_ratio: float = Field(
        0.6,
        gt=0,
        le=1,
        description="With several people in the zone, link the nearest only if its distance is "
        "at most this fraction of the runner-up's.",
    )
    dedupe_s: float = Field(3.0, ge=0, description="Repeated reads within this window count once.")
    retry_s: float = Field(2.0, gt=0, description="Seconds between attempts to reopen a reader.")

    @model_validator(mode="after")
    def _zone(self) -> _Reader:
        if self.zone is not None and len(self.zone) < 3:
            raise ValueError("zone needs 3 or more points")
        if (self.zone is None) != (self.camera is None):
            raise ValueError("camera and zone go together")
        if self.position is not None and self.zone is None:
            raise ValueError("position needs a camera and zone")
        return self


class WedgeReader(_Reader):
    type: Literal["wedge"]
    device: Path = Field(description="/dev/input/by-id/... of the keyboard-wedge reader.")
    grab: bool = True


class SerialReader(_Reader):
    type: Literal["serial"]
    device: Path
    baudrate: int = 9600


class PcscReader(_Reader):
    type: Literal["pcsc"]
    reader_name: str | None = Field(None, description="Substring of the PC/SC reader name.")


class TcpReader(_Reader):
    type: Literal["tcp"]
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    mode: Literal["listen", "connect"] = Field(
        "listen", description="listen: accept clients that send reads; connect: dial the reader."
    )


class StdinReader(_Reader):
    type: Literal["stdin"]


ReaderConfig = Annotated[
    WedgeReader | SerialReader | PcscReader | TcpReader | StdinReader, Field(discriminator="type")
]


class StaffConfig(_Strict):
    """How the device tells staff from shoppers. Without this section (or with nothing in it)
    everyone is a shopper, as before."""

    readers: list[Identifier] = Field(
        default_factory=list,
        description="Card readers in staff-only areas: whoever badges there is staff. No "
        "member swipe is sent for such a read.",
    )
    badge_prefixes: list[Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]] = Field(
        default_factory=list,
        description="Card numbers starting with one of these are staff badges, on any reader "
        "(checked on the raw number at the reader; only the staff flag goes on).",
    )
    badge_ranges: list[Annotated[list[int], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, description="[first, last] card numbers that are staff badges."
    )
    learn_from_zones: bool = Field(
        True, description="A stay in a zone of category `staff_only` marks the person as staff."
    )

    @field_validator("badge_ranges")
    @classmethod
    def _ranges(cls, v: list[list[int]]) -> list[list[int]]:
        for lo, hi in v:
            if lo < 0 or hi < lo:
                raise ValueError(f"badge range [{lo}, {hi}] needs 0 <= first <= last")
        return v

    def is_badge(self, number: str) -> bool:
        """Whether a raw card number is a staff badge (called at the reader, nowhere else)."""
        if any(number.startswith(p) for p in self.badge_prefixes):
            return True
        if self.badge_ranges and number.isdigit():
            value = int(number)
            return any(lo <= value <= hi for lo, hi in self.badge_ranges)
        return False


class PrivacyConfig(_Strict):
    key_id: Identifier
    key_file: Path | None = None
    key_env: str | None = None
    attire: bool = Field(False, description="Publish coarse clothing colour names per visit.")
    require_optout_list: bool = Field(
        False,
        description="Link no swipe until the cloud's opt-out list for this key has arrived "
        "(it is kept on disk, so this only matters on a device that never connected).",
    )

    @model_validator(mode="after")
    def _source(self) -> PrivacyConfig:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("give exactly one of key_file or key_env")
        return self


class OutboxConfig(_Strict):
    path: Path = Path("var/outbox.db")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    max_age_s: float = Field(7 * 24 * 3600, gt=0)
    batch_max_events: int = Field(200, ge=1, le=1000)
    batch_interval_s: float = Field(1.0, gt=0)
    inflight_max: int = Field(20, ge=1)
    confirm: Literal["cloud", "broker"] = Field(
        "cloud",
        description="When events leave the outbox: on the cloud's receipt that they are stored "
        "(`cloud`, the default: survives a broker that loses its queues) or on the broker's "
        "PUBACK (`broker`: for a broker whose consumer sends no receipts).",
    )
    ack_timeout_s: float = Field(
        30.0,
        gt=0,
        description="With confirm=cloud, a batch not confirmed within this time is sent again "
        "(doubling while nothing is confirmed, up to 20x).",
    )


class DeviceConfig(_Strict):
    store: Identifier
    device: Identifier
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    cameras: list[CameraConfig] = Field(min_length=1)
    readers: list[ReaderConfig] = Field(default_factory=list)
    privacy: PrivacyConfig | None = None
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    status_interval_s: float = Field(30.0, gt=0)
    store_visits: StoreVisitsConfig | None = Field(
        None, description="Fuse all cameras into store visits (every camera needs a floor)."
    )
    staff: StaffConfig | None = Field(
        None, description="Staff badges and staff-only zones: staff are not shoppers."
    )

    @model_validator(mode="after")
    def _references(self) -> DeviceConfig:
        cams = [c.id for c in self.cameras]
        if len(set(cams)) != len(cams):
            raise ValueError("camera ids must be unique")
        if self.store_visits is not None:
            self._check_store_visits(cams)
        for r in self.readers:
            if r.camera is not None and r.camera not in cams:
                raise ValueError(f"reader {r.id} names unknown camera {r.camera}")
        if self.staff is not None:
            unknown = sorted(set(self.staff.readers) - {r.id for r in self.readers})
            if unknown:
                raise ValueError(f"staff.readers names unknown readers: {unknown}")
        if self.readers and self.privacy is None:
            raise ValueError("card readers need a privacy key (privacy.key_file or key_env)")
        return self

    def _check_store_visits(self, cams: list[str]) -> None:
        unplanned = [c.id for c in self.cameras if c.floor is None]
        if unplanned:
            raise ValueError(f"store_visits needs a floor on every camera; none on {unplanned}")
        # A zone or line seen by two cameras would count every stay or crossing twice.
        names = [z.name for c in self.cameras for z in c.zones]
        names += [ln.name for c in self.cameras for ln in c.lines]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"with store_visits, each zone/line belongs to one camera: {dup}")
        for h in self.store_visits.handoffs if self.store_visits else []:
            for cam in (h.from_camera, h.to_camera):
                if cam not in cams:
                    raise ValueError(f"hand-off names unknown camera {cam}")
            if h.from_camera == h.to_camera:
                raise ValueError("a hand-off joins two different cameras")

    def camera(self, camera_id: str) -> CameraConfig:
        return next(c for c in self.cameras if c.id == camera_id)

    @property
    def staff_signal(self) -> bool:
        """Whether anything on this device can tell staff apart (else nothing is flagged)."""
        s = self.staff
        if s is None:
            return False
        zones = s.learn_from_zones and any(
            z.kind == "staff_only" for c in self.cameras for z in c.zones
        )
        return bool(s.readers or s.badge_prefixes or s.badge_ranges or zones)


class ConfigError(ValueError):
    """All problems of a config file, one per line, each with its path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}:\n" + "\n".join(f"  {p}" for p in problems))
        self.source = source
        self.problems = problems


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in {"wedge", "serial", "pcsc", "tcp", "stdin"} and out.endswith("]"):
            continue  # discriminated-union tag adds noise to the path
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{_loc(err['loc'])}: {msg}")
    return problems


def parse_config(data: object, source: str = "<config>") -> DeviceConfig:
    try:
        return DeviceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_errors(exc)) from None


def load_config(path: str | Path) -> DeviceConfig:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [f"not valid YAML: {exc}"]) from None
    return parse_config(data, str(p))


def json_schema() -> dict:
    schema = DeviceConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
