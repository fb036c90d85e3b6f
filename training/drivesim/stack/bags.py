"""Recording: a ring buffer of serialized (CDR) messages, takeover windows and rosbag2 bags in MCAP.

Bags are written with the `rosbags` library (rosbag2 version 9, MCAP storage: a folder with metadata.yaml and
a .mcap file, readable by `ros2 bag` and Foxglove). Timestamps are sim time [ns]: a message's header stamp where it
has one (`Stamper`), else the clock when it was received.

- Takeover bags: `pre` seconds before the takeover through `post` seconds after it, every recorded topic,
  the last message of each latched topic (map, route) at the window's start, plus `takeover.json` (cause,
  detail, window). Written in one go when the window has closed (or, at
  shutdown, with what there is).
- Continuous mode: consecutive segment bags of `segment` seconds each. A segment is closed (complete and
  readable) as soon as its time has passed, so a killed recorder loses at most the open segment.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

NS = 1_000_000_000


def make_typestore(msg_dirs: list[Path] | None = None):
    """A ROS 2 Kilted typestore with the given interface packages' .msg files registered (each dir is
    <package>/msg or a share/<package>/msg folder)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    pending = {}
    for d in msg_dirs or []:
        d = Path(d)
        pkg = d.parent.name
        for f in sorted(d.glob("*.msg")):
            pending.update(get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}"))
    if pending:
        ts.register(pending)
    return ts


class Stamper:
    """A recorded message's time: its header stamp where its type begins with a std_msgs/Header (read from the CDR
    bytes: 4 bytes of encapsulation, then the stamp's int32 sec and uint32 nanosec), else the receipt time. A message
    of tick t that arrives after the clock moved on still belongs to tick t (a takeover window's edge frame), and
    every topic of one tick sorts together. A zero stamp (upstream's empty route header) or one more than
    `tolerance` seconds from the receipt time (a node with a broken clock) falls back to the receipt time."""

    def __init__(self, typestore, tolerance: float = 5.0):
        self.ts, self.tol_ns = typestore, int(tolerance * NS)
        self.stamped: dict[str, bool] = {}

    def has_header(self, msgtype: str) -> bool:
        if msgtype not in self.stamped:
            try:
                first = self.ts.fielddefs[msgtype][1][0]
                self.stamped[msgtype] = first[1][1] == "std_msgs/msg/Header"
            except (KeyError, IndexError, TypeError):
                self.stamped[msgtype] = False
        return self.stamped[msgtype]

    def __call__(self, msgtype: str, data: bytes, receipt_ns: int) -> int:
        if len(data) < 12 or not self.has_header(msgtype):
            return receipt_ns
        order = "little" if data[1] & 1 else "big"  # encapsulation: CDR_BE 0x0000, CDR_LE 0x0001
        sec = int.from_bytes(data[4:8], order, signed=True)
        nsec = int.from_bytes(data[8:12], order)
        t = sec * NS + nsec
        if t <= 0 or nsec >= NS or abs(t - receipt_ns) > self.tol_ns:
            return receipt_ns
        return t


@dataclass(order=True)
class Recorded:
    t_ns: int
    topic: str = field(compare=False)
    msgtype: str = field(compare=False)
    data: bytes = field(compare=False, repr=False)


class RingBuffer:
    """The last `span` seconds of messages (by their sim-time stamps)."""

    def __init__(self, span: float):
        self.span_ns = int(span * NS)
        self.items: deque[Recorded] = deque()

    def add(self, rec: Recorded) -> None:
        self.items.append(rec)
        cutoff = rec.t_ns - self.span_ns
        while self.items and self.items[0].t_ns < cutoff:
            self.items.popleft()

    def window(self, t0_ns: int, t1_ns: int) -> list[Recorded]:
        return sorted(r for r in self.items if t0_ns <= r.t_ns <= t1_ns)


def offered_qos(latched: bool):
    """The QoS a topic's publisher offers, as a bag records it (`ros2 bag play` replays with it): RELIABLE,
    KEEP_LAST, TRANSIENT_LOCAL for the latched topics (map, route, light info and status; depth 10, the bridge's),
    VOLATILE (depth 20) for the rest."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(history=QosHistory.KEEP_LAST, depth=10 if latched else 20, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE, deadline=never,
               lifespan=never, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=never,
               avoid_ros_namespace_conventions=False)


def write_bag(path: Path, records: list[Recorded], typestore, latched: tuple[str, ...] = ()) -> Path:
    """Write records (any order) to a new rosbag2/MCAP bag folder at `path`, each topic with the QoS its publisher
    offers (`offered_qos`; `latched`: the TRANSIENT_LOCAL topics) and its type's RIHS01 hash (from the typestore).
    Returns the path."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: bag already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {}
        for r in sorted(records):
            if r.topic not in conns:
                conns[r.topic] = w.add_connection(r.topic, r.msgtype, typestore=typestore,
                                                  offered_qos_profiles=[offered_qos(r.topic in latched)])
            w.write(conns[r.topic], r.t_ns, r.data)
    return path


@dataclass
class PendingTakeover:
    index: int
    t_ns: int
    info: dict


class TakeoverBagger:
    """Collects takeovers and writes each one's window [t - pre, t + post] once it has closed."""

    def __init__(self, out_dir: Path, typestore, pre: float = 10.0, post: float = 5.0, latched: tuple[str, ...] = (),
                 grace: float = 0.5):
        self.out_dir, self.ts, self.latched_topics = Path(out_dir), typestore, tuple(latched)
        self.pre_ns, self.post_ns = int(pre * NS), int(post * NS)
        self.grace_ns = int(grace * NS)  # [sim s] a window is written this long after it closed: late messages of
        # its last ticks (stamped inside it, received after) are in
        self.ring = RingBuffer(pre + post + grace + 1.0)
        self.latched: dict[str, list[Recorded]] = {}  # every message of each latched topic (map, route, lights)
        self.pending: list[PendingTakeover] = []
        self.written: list[Path] = []
        self.count = 0

    def add(self, rec: Recorded) -> list[Path]:
        self.ring.add(rec)
        return self.flush(rec.t_ns)

    LATCHED_KEEP = 10_000  # messages kept per latched topic (published once, or on change)

    def latch(self, rec: Recorded) -> None:
        """A message of a latched topic (published once, or only on change: map, route, light info and status,
        often long before a takeover): every takeover bag gets the last one before its window, stamped at the
        window's start, and those inside the window as they came, so the bag replays alone."""
        hist = self.latched.setdefault(rec.topic, [])
        hist.append(rec)
        del hist[: -self.LATCHED_KEEP]

    def carried(self, t0: int, t1: int) -> list[Recorded]:
        """The latched topics' messages a window [t0, t1] carries."""
        out = []
        for hist in self.latched.values():
            before = [r for r in hist if r.t_ns <= t0]
            first = before[-1] if before else hist[0]
            out.append(Recorded(t0, first.topic, first.msgtype, first.data))
            out += [r for r in hist if t0 < r.t_ns <= t1 and r is not first]
        return out

    def takeover(self, t_ns: int, info: dict) -> None:
        self.pending.append(PendingTakeover(self.count, t_ns, info))
        self.count += 1

    def flush(self, now_ns: int, force: bool = False) -> list[Path]:
        done = []
        for p in list(self.pending):
            if force or now_ns > p.t_ns + self.post_ns + self.grace_ns:
                t0, t1 = max(p.t_ns - self.pre_ns, 0), p.t_ns + self.post_ns
                path = self.out_dir / f"takeover_{p.index:03d}_t{p.t_ns / NS:08.2f}"
                k = 1
                while path.exists():  # never overwrite a bag
                    path = self.out_dir / f"takeover_{p.index:03d}_t{p.t_ns / NS:08.2f}_{k}"
                    k += 1
                write_bag(path, sorted(self.carried(t0, t1) + self.ring.window(t0, t1), key=lambda r: r.t_ns), self.ts,
                          self.latched_topics)
                info = dict(p.info, window=[t0 / NS, min(t1, now_ns) / NS], complete=now_ns >= t1,
                            takeover_time=p.t_ns / NS)
                (path / "takeover.json").write_text(json.dumps(info, indent=2))
                self.pending.remove(p)
                self.written.append(path)
                done.append(path)
        return done


class SegmentedRecorder:
    """Continuous recording into consecutive segment bags (seg_00000, seg_00001, ...) of `segment` seconds."""

    def __init__(self, out_dir: Path, typestore, segment: float = 5.0, latched: tuple[str, ...] = ()):
        self.out_dir, self.ts, self.seg_ns = Path(out_dir), typestore, int(segment * NS)
        self.latched_topics = tuple(latched)
        self.buf: list[Recorded] = []
        self.seg_start: int | None = None
        self.written: list[Path] = []

    def add(self, rec: Recorded) -> Path | None:
        if self.seg_start is None:
            self.seg_start = rec.t_ns - rec.t_ns % self.seg_ns
        out = None
        if rec.t_ns >= self.seg_start + self.seg_ns:
            out = self.close_segment()
            self.seg_start = rec.t_ns - rec.t_ns % self.seg_ns
        self.buf.append(rec)
        return out

    def close_segment(self) -> Path | None:
        if not self.buf:
            return None
        path = self.out_dir / f"seg_{len(self.written):05d}"
        write_bag(path, self.buf, self.ts, self.latched_topics)
        self.buf = []
        self.written.append(path)
        return path


class BagError(ValueError):
    """A path that is not a readable bag; the message names the path and what a bag looks like."""


BAG_LAYOUT = ("a bag is a folder holding metadata.yaml and its .mcap file(s), as `stack run` writes under "
              "OUT/bags/ (takeover_*, seg_*)")
MCAP_MAGIC = b"\x89MCAP0\r\n"


def _bag_files(path: Path) -> tuple[Path | None, list[Path]]:
    """(metadata.yaml or None, the .mcap files) of a bag folder (or of a lone .mcap file); BagError otherwise."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag folder; {BAG_LAYOUT}")
    if path.is_file():
        if path.suffix == ".mcap":
            return None, [path]
        raise BagError(f"{path}: a file, not a bag folder; {BAG_LAYOUT}")
    meta = path / "metadata.yaml"
    mcaps = sorted(path.glob("*.mcap"))
    if not mcaps:
        what = "metadata.yaml but no .mcap file" if meta.exists() else "no metadata.yaml and no .mcap file"
        raise BagError(f"{path}: not a bag folder ({what} in it); {BAG_LAYOUT}")
    return (meta if meta.exists() else None), mcaps


def mcap_complete(path: Path) -> bool:
    """Whether an MCAP file ends with its footer's magic (a recorder that died mid-file leaves none)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() < 2 * len(MCAP_MAGIC):
            return False
        f.seek(-len(MCAP_MAGIC), 2)
        return f.read() == MCAP_MAGIC


def _stream_mcap(path: Path, types: dict[str, str], warn) -> Iterator[tuple[str, str, int, bytes]]:
    """Messages of one MCAP file read front to back (mcap's StreamReader), up to where it breaks off: a file cut
    short by a crash is read to its last complete chunk, with a warning naming it."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    n = 0
    try:
        with open(path, "rb") as f:
            for rec in StreamReader(f, validate_crcs=True).records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = rec.name
                elif isinstance(rec, Channel):
                    channels[rec.id] = (rec.topic, schemas.get(rec.schema_id, ""))
                    types.setdefault(rec.topic, channels[rec.id][1])
                elif isinstance(rec, Message) and rec.channel_id in channels:
                    n += 1
                    topic, msgtype = channels[rec.channel_id]
                    yield topic, msgtype, rec.log_time, rec.data
    except Exception as e:  # noqa: BLE001 - any break in the stream ends the readable part
        if mcap_complete(path):
            raise BagError(f"{path}: damaged MCAP file ({type(e).__name__}: {e})") from e
        warn(f"{path}: MCAP file cut short (no footer: the recorder stopped before closing it); read {n} "
             f"messages up to its last complete chunk")


def _open_bag(path: Path, typestore, warn) -> tuple[dict[str, str], Iterator[tuple[str, str, int, bytes]], list[str]]:
    """(topic -> message type, an iterator of (topic, msgtype, t_ns, raw CDR), the files read only in part).
    A complete bag is read with rosbags' AnyReader; a bag a crash left without metadata.yaml or with an MCAP file
    cut short is read as far as it goes, with a warning naming the file."""
    meta, mcaps = _bag_files(path)
    cut = [str(f) for f in mcaps if not mcap_complete(f)]
    if meta is not None and not cut:
        from rosbags.highlevel import AnyReader

        try:
            r = AnyReader([Path(path)], default_typestore=typestore)
            r.open()
        except Exception as e:  # noqa: BLE001 - rosbags' errors carry no common base
            raise BagError(f"{path}: cannot read this bag ({type(e).__name__}: {e}); {BAG_LAYOUT}") from e
        types = {c.topic: c.msgtype for c in r.connections}

        def it():
            try:
                for conn, t, data in r.messages():
                    yield conn.topic, conn.msgtype, t, data
            finally:
                r.close()

        return types, it(), []
    if meta is None and Path(path).is_dir():
        warn(f"{path}: no metadata.yaml (the recorder did not close this bag); reading its .mcap files directly")
    types: dict[str, str] = {}

    def it():
        for f in mcaps:
            yield from _stream_mcap(f, types, warn)

    return types, it(), cut


def _warn_stderr(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def read_bag(path: Path, typestore=None, log=None) -> dict:
    """Summary of a bag: topics with message types and counts, and the time window [s]. A path that is not a bag
    raises BagError (naming it and what a bag folder holds). A bag cut short by a crash (an MCAP file without
    its footer) is read up to its last complete chunk; `log` (default: stderr) gets a warning naming the file,
    and the summary lists it under "truncated"."""
    types, messages, cut = _open_bag(Path(path), typestore, log or _warn_stderr)
    counts: dict[str, int] = {}
    t0 = t1 = None
    for topic, _, t, _ in messages:
        counts[topic] = counts.get(topic, 0) + 1
        t0 = t if t0 is None else min(t0, t)
        t1 = t if t1 is None else max(t1, t)
    out = {"topics": {k: {"type": types[k], "count": counts.get(k, 0)} for k in sorted(types)},
           "start": (t0 or 0) / NS, "end": (t1 or 0) / NS}
    if cut:
        out["truncated"] = cut
    return out
