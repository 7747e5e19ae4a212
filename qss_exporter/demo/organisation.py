"""The simulated organisation behind ``qss-exporter demo``: accounts, sites, people, networks, incidents.

Pure data and arithmetic: no I/O, no clock, no global random state. Every random draw goes through the
:class:`random.Random` handed in, so a seed fully determines the organisation.
:mod:`qss_exporter.demo.simulator` turns this model into webhook bodies.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "CLIENT_VERSIONS",
    "DATA_CENTRES",
    "DC_INCIDENT",
    "DEFAULT_SITES",
    "PHONE_INCIDENT",
    "PRODUCTS",
    "WIFI_INCIDENT",
    "Conditions",
    "Incident",
    "Link",
    "Organisation",
    "Person",
    "SimAccount",
    "SimSite",
    "SiteProfile",
    "default_accounts",
    "mos",
    "quality_label",
]

PRODUCTS: frozenset[str] = frozenset({"meeting", "webinar", "session", "phone"})
DATA_CENTRES: tuple[str, ...] = ("FR (Sub)", "AMS (Sub)", "DV (Sub)", "SC (Sub)", "NY (Sub)")
_DC_DOMAIN = {"FR (Sub)": "fr", "AMS (Sub)": "nl", "DV (Sub)": "dv", "SC (Sub)": "sc", "NY (Sub)": "ny"}
CLIENT_VERSIONS: tuple[str, ...] = ("6.2.5.41632", "6.1.11.39163", "6.3.1.44879", "6.0.12.38552", "5.17.11.34827")
_VERSION_WEIGHTS = (40, 25, 20, 10, 5)

WIFI_INCIDENT = "office-wifi-packet-loss"
DC_INCIDENT = "data-centre-latency"
PHONE_INCIDENT = "phone-mos-drop"

_MIN = 60.0


@dataclass(frozen=True, slots=True)
class SimAccount:
    """A Zoom account the simulated organisation owns."""

    name: str
    account_id: str
    products: frozenset[str]

    def __post_init__(self) -> None:
        unknown = self.products - PRODUCTS
        if unknown:
            raise ValueError(f"account {self.name!r}: unknown products {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class SimSite:
    """A place people join from; participants there get internal IPs from `cidrs`."""

    name: str
    cidrs: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.cidrs:
            raise ValueError(f"site {self.name!r} has no CIDR")
        for cidr in self.cidrs:
            ipaddress.IPv4Network(cidr)  # raises ValueError when malformed


@dataclass(frozen=True, slots=True)
class Incident:
    """An injected problem, active during [start, end) seconds after t=0 and again every `period` seconds."""

    name: str
    description: str
    start: float
    end: float
    period: float
    site: str | None = None
    data_centre: str | None = None

    def active_at(self, offset: float) -> bool:
        """Whether the incident is active `offset` simulated seconds after t=0."""
        if offset < self.start:
            return False
        if self.period <= 0:
            return offset < self.end
        return (offset - self.start) % self.period < self.end - self.start

    def windows(self, until: float) -> list[tuple[float, float]]:
        """The active windows (offsets in seconds) that start before `until`."""
        out: list[tuple[float, float]] = []
        start = self.start
        while start < until:
            out.append((start, start + self.end - self.start))
            if self.period <= 0:
                break
            start += self.period
        return out


DEFAULT_SITES: tuple[SimSite, ...] = (
    SimSite("london-hq", ("10.10.0.0/16",)),
    SimSite("frankfurt-office", ("10.20.0.0/16",)),
    SimSite("denver-office", ("10.30.0.0/16", "10.31.0.0/16")),
    SimSite("new-york-office", ("10.40.0.0/16",)),
    SimSite("remote", ("192.168.0.0/16",)),
)


def default_accounts() -> tuple[SimAccount, ...]:
    """A Zoom Workplace account and a Video SDK account (ids as in the reference samples)."""
    return (
        SimAccount("acme", "Xq3vTn0bR8aL5mWcY2kPzQ", frozenset({"meeting", "webinar", "phone"})),
        SimAccount("acme-health", "Hd5sWm1qQkO7rLbN3vTzXe", frozenset({"session"})),
    )


# ---------------------------------------------------------------------------------------------------------------
# Site profiles: what the public SimSite does not say (location, egress, preferred data centres and their latency)

_REMOTE_LOCATIONS = (
    "Manchester (GB)",
    "Bristol (GB)",
    "Leeds (GB)",
    "Lisbon (PT)",
    "Utrecht (NL)",
    "Munich (DE)",
    "Dublin (IE)",
    "Boulder (US)",
    "Brooklyn (US)",
    "Austin (US)",
)
_REMOTE_EGRESS = ("198.51.100.0/24", "203.0.113.0/24")
# name -> (locations, share of staff, egress ranges, {data centre: (weight, one-way latency ms)})
_KNOWN_SITES: dict[str, tuple[tuple[str, ...], float, tuple[str, ...], dict[str, tuple[float, float]]]] = {
    "london-hq": (
        ("London (GB)",),
        0.34,
        ("192.0.2.0/28",),
        {"AMS (Sub)": (0.55, 19.0), "FR (Sub)": (0.35, 23.0), "NY (Sub)": (0.10, 45.0)},
    ),
    "frankfurt-office": (
        ("Frankfurt (DE)",),
        0.14,
        ("192.0.2.32/28",),
        {"FR (Sub)": (0.75, 17.0), "AMS (Sub)": (0.25, 22.0)},
    ),
    "denver-office": (
        ("Denver (US)",),
        0.2,
        ("192.0.2.64/28",),
        {"DV (Sub)": (0.6, 18.0), "SC (Sub)": (0.25, 28.0), "NY (Sub)": (0.15, 38.0)},
    ),
    "new-york-office": (
        ("New York (US)",),
        0.1,
        ("192.0.2.96/28",),
        {"NY (Sub)": (0.7, 17.0), "DV (Sub)": (0.2, 33.0), "AMS (Sub)": (0.1, 46.0)},
    ),
    "remote": (
        _REMOTE_LOCATIONS,
        0.22,
        _REMOTE_EGRESS,
        {
            "AMS (Sub)": (0.3, 24.0),
            "FR (Sub)": (0.2, 27.0),
            "NY (Sub)": (0.2, 33.0),
            "DV (Sub)": (0.15, 38.0),
            "SC (Sub)": (0.15, 44.0),
        },
    ),
}
_FALLBACK_CITIES = ("Paris (FR)", "Madrid (ES)", "Toronto (CA)", "Chicago (US)", "Stockholm (SE)", "Sydney (AU)")
_HOME_RANGE = ipaddress.IPv4Network("192.168.0.0/16")


@dataclass(frozen=True, slots=True, eq=False)
class SiteProfile:
    """A site plus the simulator's assumptions about it."""

    site: SimSite
    networks: tuple[ipaddress.IPv4Network, ...]
    remote: bool
    locations: tuple[str, ...]
    weight: float
    egress: tuple[ipaddress.IPv4Network, ...]
    dc_names: tuple[str, ...]
    dc_weights: tuple[float, ...]
    dc_latency: dict[str, float]

    @property
    def name(self) -> str:
        return self.site.name


def _profile(site: SimSite, index: int) -> SiteProfile:
    networks = tuple(ipaddress.IPv4Network(c) for c in site.cidrs)
    known = _KNOWN_SITES.get(site.name)
    if known is not None:
        locations, weight, egress, dcs = known
        remote = site.name == "remote"
    else:
        remote = all(n.subnet_of(_HOME_RANGE) for n in networks)
        locations = _REMOTE_LOCATIONS if remote else (_FALLBACK_CITIES[index % len(_FALLBACK_CITIES)],)
        weight = 0.2
        egress = _REMOTE_EGRESS if remote else (f"192.0.2.{(16 * index) % 256}/28",)
        dcs = {dc: (1.0, 15.0 + 8.0 * ((index + i) % len(DATA_CENTRES))) for i, dc in enumerate(DATA_CENTRES)}
    return SiteProfile(
        site=site,
        networks=networks,
        remote=remote,
        locations=locations,
        weight=weight,
        egress=tuple(ipaddress.IPv4Network(e) for e in egress),
        dc_names=tuple(dcs),
        dc_weights=tuple(w for w, _ in dcs.values()),
        dc_latency={dc: lat for dc, (_, lat) in dcs.items()},
    )


_PERIOD_MIN = 30
# incident -> first window in simulated minutes after t=0 (it recurs every _PERIOD_MIN minutes)
_WINDOWS = {WIFI_INCIDENT: (4, 11), PHONE_INCIDENT: (7, 14), DC_INCIDENT: (12, 19)}


def _incident(name: str, what: str, *, site: str | None = None, data_centre: str | None = None) -> Incident:
    first, last = _WINDOWS[name]
    return Incident(
        name,
        f"{what} (simulated minutes {first}-{last}, again every {_PERIOD_MIN} min)",
        start=first * _MIN,
        end=last * _MIN,
        period=_PERIOD_MIN * _MIN,
        site=site,
        data_centre=data_centre,
    )


def _incidents(profiles: Sequence[SiteProfile], *, phone: bool) -> tuple[Incident, ...]:
    offices = sorted((p for p in profiles if not p.remote), key=lambda p: -p.weight) or list(profiles)
    wifi_site = offices[0].name
    used = [dc for dc in DATA_CENTRES if any(dc in p.dc_latency for p in profiles)]
    dc = "AMS (Sub)" if "AMS (Sub)" in used else used[0]
    out = [
        _incident(
            WIFI_INCIDENT,
            f"Wi-Fi at {wifi_site} drops packets: 3-10 % loss, poor/bad audio, weak RSSI and "
            "'internet connection unstable' warnings for Wi-Fi users there",
            site=wifi_site,
        ),
        _incident(
            DC_INCIDENT,
            f"Zoom data centre {dc} is slow: 200-400 ms latency for everyone connected to it",
            data_centre=dc,
        ),
    ]
    if phone:
        phone_site = (offices[1] if len(offices) > 1 else offices[0]).name
        what = f"Voice network at {phone_site} is congested: Zoom Phone MOS below 3.5 on calls there"
        out.append(_incident(PHONE_INCIDENT, what, site=phone_site))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# People and devices

_FIRST = (
    "Dana", "Amir", "Imani", "Lena", "Tomasz", "Priya", "Marcus", "Sofia", "Kenji", "Aisha", "Jonas", "Maya",
    "Rafael", "Chloe", "Oren", "Nadia", "Felix", "Grace", "Mateo", "Yara", "Liam", "Hana", "Victor", "Zoe",
    "Elif", "Noah", "Ines", "Samuel", "Freya", "Arjun", "Clara", "Omar", "Ruth", "Diego", "Mira", "Hugo",
)  # fmt: skip
_LAST = (
    "Okafor", "Haddad", "Reyes", "Fischer", "Nowak", "Sharma", "Bennett", "Rossi", "Tanaka", "Bello", "Berg",
    "Cohen", "Silva", "Martin", "Levi", "Kowalski", "Wagner", "Osei", "Garcia", "Nasser", "Murphy", "Kim",
    "Dubois", "Novak", "Yilmaz", "Jensen", "Moreau", "Adeyemi", "Larsen", "Patel", "Costa", "Khan",
)  # fmt: skip
# device -> (microphone, speaker, camera) choices
_PERIPHERALS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Windows": (
        ("Headset Microphone (Jabra Evolve2 65)", "Headphones (Jabra Evolve2 65)", "Integrated Webcam"),
        ("Microphone Array (Realtek(R) Audio)", "Speakers (Realtek(R) Audio)", "Integrated Webcam"),
        ("Microphone (Logitech Zone Wireless)", "Headphones (Logitech Zone Wireless)", "Logitech BRIO"),
        ("Echo Cancelling Speakerphone (Jabra Speak 510)", "Echo Cancelling Speakerphone (Jabra Speak 510)",
         "HD Pro Webcam C920"),
    ),
    "Mac": (
        ("MacBook Pro Microphone", "MacBook Pro Speakers", "FaceTime HD Camera"),
        ("AirPods Pro", "AirPods Pro", "FaceTime HD Camera"),
        ("External Microphone", "External Headphones", "Logitech BRIO"),
    ),
    "iOS": (("iPhone Microphone", "iPhone Speaker", "Front Camera"), ("AirPods", "AirPods", "Front Camera")),
    "Android": (("Default Microphone", "Default Speaker", "Front Camera"),),
    "H.323/SIP": (("Poly Studio X50 Microphone", "Poly Studio X50 Speaker", "Poly Studio X50 Camera"),),
}  # fmt: skip
_DEVICE_DETAIL = {
    "Windows": ("Windows 11 Enterprise 23H2", "Windows 10 Enterprise 22H2", "Windows 11 Pro 24H2"),
    "Mac": ("macOS 14.6.1", "macOS 15.1"),
    "iOS": ("iOS 17.6.1", "iOS 18.1"),
    "Android": ("Android 14", "Android 15"),
    "H.323/SIP": ("Poly Studio X50",),
}
_BROWSERS = ("GoogleChrome 141", "Edge 141", "Safari 18", "Firefox 144")
_DESKTOP = ("Windows", "Mac")


@dataclass(slots=True, eq=False)
class Person:
    """Someone (or a room system) who joins meetings, webinars, sessions or calls."""

    index: int
    name: str
    email: str
    user_id: str  # account user id; "" for external guests
    site: SiteProfile
    location: str
    device: str
    network: str  # Wired | Wifi | Cellular | PPP | Others
    version: str
    pc_name: str
    domain: str
    mac_addr: str
    harddisk_id: str
    microphone: str
    speaker: str
    camera: str
    internal_ip: str
    public_ip: str
    device_detail: str
    web_client: bool
    room_system: bool
    cpu_pressure: bool
    cpu_base: float
    rssi_base: float
    busy: bool = False

    @property
    def client(self) -> str:
        short = ".".join(self.version.split(".")[:3])
        if self.room_system:
            return f"Zoom Rooms Connector {short}"
        return f"Web client {short}" if self.web_client else f"Zoom Workplace {short}"


@dataclass(slots=True, eq=False)
class Link:
    """One participant's (or phone leg's) network path to Zoom for one join."""

    person: Person
    data_centre: str
    latency: float
    jitter: float
    loss: float


@dataclass(slots=True)
class Conditions:
    """Network conditions of one link for one reporting interval."""

    latency: float
    jitter: float
    loss: float
    rssi: float  # dBm; only meaningful on Wi-Fi
    unstable: bool  # the client would warn "internet connection unstable"


# network type -> (extra latency range, jitter range, loss % range)
_NETWORK_BASE: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "Wired": ((0.0, 4.0), (1.0, 3.0), (0.02, 0.15)),
    "Wifi": ((4.0, 12.0), (3.0, 8.0), (0.1, 0.6)),
    "Cellular": ((30.0, 70.0), (8.0, 20.0), (0.5, 1.5)),
    "PPP": ((15.0, 30.0), (5.0, 10.0), (0.3, 0.9)),
    "Others": ((5.0, 15.0), (3.0, 8.0), (0.1, 0.5)),
}


def mos(delay: float, jitter: float, loss: float) -> float:
    """Simplified ITU-T G.107 E-model: one-way delay (ms), jitter (ms), packet loss (%) -> MOS 1..4.5."""
    d = delay + 2.0 * jitter + 10.0
    impairment_delay = 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)
    impairment_loss = 95.0 * loss / (loss + 6.0)
    r = 93.2 - impairment_delay - impairment_loss
    if r <= 0:
        return 1.0
    value = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    return min(4.5, max(1.0, value))


def quality_label(score: float) -> str:
    """Zoom-style quality grade for a MOS-like score."""
    if score >= 3.5:
        return "good"
    if score >= 3.0:
        return "fair"
    if score >= 2.0:
        return "poor"
    return "bad"


def _uid(rng: random.Random) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(16)).decode().rstrip("=")


def _host(rng: random.Random, networks: Sequence[ipaddress.IPv4Network]) -> str:
    net = networks[rng.randrange(len(networks))]
    size = net.num_addresses
    offset = rng.randint(1, size - 2) if size > 2 else rng.randrange(size)
    return str(net.network_address + offset)


class Organisation:
    """Staff roster, guests, room systems, network paths and incidents of the simulated organisation."""

    def __init__(self, sites: Sequence[SimSite], rng: random.Random, *, staff: int, phone: bool) -> None:
        if not sites:
            raise ValueError("at least one site is needed")
        self._rng = rng
        self.profiles = tuple(_profile(s, i) for i, s in enumerate(sites))
        self.offices = tuple(p for p in self.profiles if not p.remote) or self.profiles
        self.home = next((p for p in self.profiles if p.remote), None)
        self.incidents = _incidents(self.profiles, phone=phone)
        self._wifi = next(i for i in self.incidents if i.name == WIFI_INCIDENT)
        self._dc = next(i for i in self.incidents if i.name == DC_INCIDENT)
        self._phone = next((i for i in self.incidents if i.name == PHONE_INCIDENT), None)
        self._weights = [p.weight for p in self.profiles]
        self._office_weights = [p.weight for p in self.offices]
        self._emails: set[str] = set()
        self._count = 0
        self.staff = [self._person(guest=False) for _ in range(max(staff, 8))]

    # -- people ---------------------------------------------------------------------------------------------

    def employee(self, *, office: bool = False) -> Person:
        """A free member of staff (marked busy); a new hire when everyone tried is busy."""
        rng = self._rng
        for _ in range(8):
            person = self.staff[rng.randrange(len(self.staff))]
            if not person.busy and (not office or not person.site.remote):
                person.busy = True
                return person
        person = self._person(guest=False, office=office)
        self.staff.append(person)
        person.busy = True
        return person

    def guest(self) -> Person:
        """An external participant (not signed in to the account, usually no e-mail)."""
        return self._person(guest=True)

    def room_system(self) -> Person:
        """A meeting-room H.323/SIP system connected through the Cloud Room Connector."""
        return self._person(guest=False, office=True, room=True)

    def release(self, person: Person) -> None:
        person.busy = False

    def _person(self, *, guest: bool, office: bool = False, room: bool = False) -> Person:
        rng = self._rng
        self._count += 1
        if guest and self.home is not None:
            site = self.home
        elif office:
            site = rng.choices(self.offices, self._office_weights)[0]
        else:
            site = rng.choices(self.profiles, self._weights)[0]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        if room:
            device = "H.323/SIP"
        elif guest:
            device = rng.choices(("Windows", "Mac", "iOS", "Android"), (40, 30, 15, 15))[0]
        else:
            device = rng.choices(("Windows", "Mac", "iOS", "Android"), (52, 30, 10, 8))[0]
        desktop = device in _DESKTOP
        if room:
            network = "Wired"
        elif not site.remote:
            network = rng.choices(("Wired", "Wifi", "Others"), (50, 45, 5))[0] if desktop else "Wifi"
            if not desktop and rng.random() < 0.15:
                network = "Cellular"
        elif desktop:
            network = rng.choices(("Wifi", "Wired", "Cellular", "PPP", "Others"), (78, 10, 5, 4, 3))[0]
        else:
            network = rng.choices(("Wifi", "Cellular"), (55, 45))[0]
        web = desktop and rng.random() < (0.15 if guest else 0.08)
        if room:
            name = f"Room {rng.randint(1, 6)}{rng.choice('ABCD')} ({site.name})"
            email = f"room.{self._count}@example.com"
        elif guest and rng.random() < 0.15:
            name, email = f"Guest {rng.randint(1000, 9999)}", ""
        else:
            name = f"{first} {last}"
            if not guest:
                email = self._email(first, last)
            else:  # external: usually hidden; otherwise their own (not unique-checked: guests come and go)
                email = "" if rng.random() < 0.75 else f"{first[0]}{last}{rng.randint(10, 99)}@example.com".lower()
        mic, speaker, camera = rng.choice(_PERIPHERALS[device])
        version = rng.choices(CLIENT_VERSIONS, _VERSION_WEIGHTS)[0]
        managed = not guest and device == "Windows" and not web
        return Person(
            index=self._count,
            name=name,
            email=email,
            user_id="" if guest else _uid(rng),
            site=site,
            location=rng.choice(site.locations),
            device=device,
            network=network,
            version=version,
            pc_name=(f"LT-{first[0]}{last}".upper()[:15] if managed else "")
            or (f"{first}s-MacBook-Pro" if device == "Mac" and not guest and not web else ""),
            domain="corp.example.com" if managed else "",
            mac_addr="-".join(f"{b:02X}" for b in rng.randbytes(6)) if managed else "",
            harddisk_id=f"S4EVNF0M{rng.randint(100000, 999999)}" if managed else "",
            microphone=mic,
            speaker=speaker,
            camera=camera,
            internal_ip=_host(rng, site.networks),
            public_ip=_host(rng, site.egress),
            device_detail=rng.choice(_BROWSERS) if web else rng.choice(_DEVICE_DETAIL[device]),
            web_client=web,
            room_system=room,
            cpu_pressure=desktop and not version.startswith(("5.", "6.0.")) and rng.random() < 0.6,
            cpu_base=rng.uniform(5.0, 16.0) if desktop or room else rng.uniform(14.0, 28.0),
            rssi_base=rng.uniform(-66.0, -48.0) if not site.remote else rng.uniform(-72.0, -46.0),
        )

    def _email(self, first: str, last: str) -> str:
        base = f"{first}.{last}".lower()
        email, n = f"{base}@example.com", 1
        while email in self._emails:
            n += 1
            email = f"{base}{n}@example.com"
        self._emails.add(email)
        return email

    def peripherals(self, person: Person) -> tuple[str, str, str]:
        """Another (microphone, speaker, camera) set for a mid-meeting device change."""
        return self._rng.choice(_PERIPHERALS[person.device])

    # -- networks -------------------------------------------------------------------------------------------

    def link(self, person: Person, *, data_centre: str | None = None) -> Link:
        """The network path for one join (picks the Zoom data centre unless given)."""
        rng = self._rng
        site = person.site
        dc = data_centre or rng.choices(site.dc_names, site.dc_weights)[0]
        (lat_lo, lat_hi), (jit_lo, jit_hi), (loss_lo, loss_hi) = _NETWORK_BASE[person.network]
        base = site.dc_latency.get(dc, 60.0)
        return Link(
            person=person,
            data_centre=dc,
            latency=base + rng.uniform(lat_lo, lat_hi) + (rng.uniform(3.0, 12.0) if site.remote else 0.0),
            jitter=rng.uniform(jit_lo, jit_hi),
            loss=rng.uniform(loss_lo, loss_hi),
        )

    def phone_link(self, person: Person) -> Link:
        """The network path of a Zoom Phone leg (to the nearest Zoom Phone data centre)."""
        site = person.site
        nearest = min(site.dc_latency, key=lambda dc: site.dc_latency[dc])
        return self.link(person, data_centre=nearest)

    def conditions(self, link: Link, offset: float) -> Conditions:
        """Conditions of a meeting/webinar/session link during the minute ending `offset` s after t=0."""
        rng = self._rng
        person = link.person
        latency = link.latency * rng.uniform(0.92, 1.15) + rng.uniform(0.0, 3.0)
        jitter = link.jitter * rng.uniform(0.6, 1.5)
        loss = min(rng.expovariate(1.0 / link.loss), 3.0 * link.loss + 0.2)
        rssi = person.rssi_base + rng.uniform(-4.0, 4.0)
        unstable = False
        if rng.random() < 0.015:  # background hiccup
            loss += rng.uniform(1.0, 3.0)
            jitter += rng.uniform(8.0, 20.0)
            unstable = True
        wifi = self._wifi
        if person.network == "Wifi" and person.site.name == wifi.site and wifi.active_at(offset):
            loss = rng.uniform(3.5, 10.0)
            jitter += rng.uniform(10.0, 30.0)
            rssi = rng.uniform(-88.0, -77.0)
            unstable = True
        dc = self._dc
        if link.data_centre == dc.data_centre and dc.active_at(offset):
            latency = rng.uniform(200.0, 380.0)
            jitter += rng.uniform(2.0, 8.0)
        return Conditions(latency, jitter, loss, rssi, unstable)

    def phone_conditions(self, link: Link, offset: float) -> Conditions:
        """Conditions of a Zoom Phone leg for one reporting interval."""
        rng = self._rng
        person = link.person
        latency = link.latency * rng.uniform(0.9, 1.2) + 12.0
        jitter = link.jitter * rng.uniform(0.6, 1.5)
        loss = min(rng.expovariate(1.0 / link.loss), 3.0 * link.loss + 0.2)
        unstable = False
        wifi = self._wifi
        if person.network == "Wifi" and person.site.name == wifi.site and wifi.active_at(offset):
            loss = rng.uniform(3.5, 10.0)
            jitter += rng.uniform(10.0, 30.0)
            unstable = True
        phone = self._phone
        if phone is not None and person.site.name == phone.site and phone.active_at(offset):
            loss = max(loss, rng.uniform(2.0, 5.0))
            jitter += rng.uniform(20.0, 40.0)
            latency += rng.uniform(100.0, 180.0)
            unstable = True
        return Conditions(latency, jitter, loss, 0.0, unstable)

    def destination(self, data_centre: str) -> str:
        """A Zoom media server host name in `data_centre`."""
        code = _DC_DOMAIN.get(data_centre, "us")
        return f"zoom{code}{self._rng.randint(10, 250)}mmr.{code}.zoom.us"
