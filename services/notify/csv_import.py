"""Paper sign-up lists -> subscribers (`kranj subscriber import FILE.csv`).

The file format is part of CONTRACT.md: UTF-8 with or without BOM, comma- or
semicolon-separated (as spreadsheets in Slovenia write them), header columns `email`,
`phone`, `ks`, `topics`, `channels`, `language` (any case, surrounding spaces ignored),
empty cells mean the default, lists inside a cell separated by `|`.

Parsing is pure (bytes in, rows and errors out); `load_rows` writes the good rows with
consent source "import". A bad row never stops the others: it is reported by its line
number in the file (the header is line 1), the way a spreadsheet shows it. Every reason
and warning carries Slovenian and English (`shared.errors.Bilingual`): the volunteer's upload
page shows the Slovenian, `kranj subscriber import` prints the English.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field

from pydantic import ValidationError

from shared.contact import SmsCountries, sms_refusal
from shared.contracts.ks import ALL_KS, KS_NAMES
from shared.db import Database
from shared.errors import Bilingual

from .subscribers import Conflict, SubscriberIn, add_subscriber

COLUMNS: tuple[str, ...] = ("email", "phone", "ks", "topics", "channels", "language")
LIST_COLUMNS: frozenset[str] = frozenset({"ks", "topics", "channels"})
LIST_SEPARATOR = "|"
DELIMITERS: tuple[str, ...] = (";", ",", "\t")
# Spreadsheet users write headers in Slovenian too; these map to the contract's names.
COLUMN_ALIASES: dict[str, str] = {
    "e-mail": "email",
    "e-naslov": "email",
    "telefon": "phone",
    "gsm": "phone",
    "tel": "phone",
    "teme": "topics",
    "kanali": "channels",
    "jezik": "language",
    "topic": "topics",
    "channel": "channels",
}


class CsvFormatError(ValueError):
    """The file as a whole cannot be read (not a row problem); `str()` is the English."""

    def __init__(self, message: Bilingual) -> None:
        super().__init__(message.en)
        self.message = message


@dataclass(frozen=True)
class GoodRow:
    line: int
    subscriber: SubscriberIn


@dataclass(frozen=True)
class RowError:
    line: int
    message: Bilingual

    @property
    def reason(self) -> str:
        """The reason in English (the command line)."""
        return self.message.en

    @property
    def reason_sl(self) -> str:
        """The reason in Slovenian (the volunteer's upload page)."""
        return self.message.sl

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


ALREADY = Bilingual(
    "oseba je že prijavljena (ta e-naslov ali telefonska številka je že na seznamu)",
    "already subscribed (this email or phone is already on the list)",
)
# What a volunteer reads for a cell the subscription model refuses, by column.
COLUMN_PROBLEMS_SL: dict[str, str] = {
    "email": "e-naslov ni pravilen (oblika ime@primer.si)",
    "phone": "to ni slovenska mobilna številka (na primer 040 123 456)",
    "ks": "neznana krajevna skupnost (napišite npr. primskovo ali več kot a|b)",
    "topics": "neznana tema (general, utilities, events, safety)",
    "channels": "neznan kanal (email ali sms)",
    "language": "jezik je sl ali en",
}
CONTACT_PROBLEMS_SL: tuple[tuple[str, str], ...] = (
    ("channel email needs", "kanal email potrebuje e-naslov"),
    ("channel sms needs", "kanal sms potrebuje mobilno številko"),
    ("at least one channel", "izberite vsaj en kanal (email ali sms)"),
    ("or a phone number", "manjka e-naslov ali mobilna številka"),
)


@dataclass
class ParsedCsv:
    rows: list[GoodRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[Bilingual] = field(default_factory=list)
    encoding: str = "utf-8"
    delimiter: str = ","

    def __iter__(self):
        return iter((self.rows, self.errors))


def decode(data: bytes) -> tuple[str, str, list[Bilingual]]:
    """UTF-8 (BOM or not); a file that is not UTF-8 is read as Windows-1250, with a warning."""
    try:
        return data.decode("utf-8-sig"), "utf-8", []
    except UnicodeDecodeError as exc:
        warning = Bilingual(
            f"datoteka ni v kodiranju UTF-8 (bajt {exc.start + 1}); prebrali smo jo kot Windows-1250 — "
            "preverite, ali so č, š in ž pravilni, ali jo shranite kot »CSV UTF-8«",
            f"the file is not UTF-8 (byte {exc.start + 1}); read it as Windows-1250 — "
            "check that č, š and ž came out right, or save it as CSV UTF-8",
        )
        return data.decode("cp1250", errors="replace"), "cp1250", [warning]


def sniff_delimiter(header_line: str) -> str:
    """The separator the header line uses most: `;` (Slovenian Excel), `,` or a tab."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _fold(text: str) -> str:
    """`Čirče` -> `circe`, `Vodovodni stolp` -> `vodovodni-stolp`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(ascii_text.lower().replace("_", " ").split())


_KS_LOOKUP: dict[str, str] = {**{_fold(name): slug for slug, name in KS_NAMES.items()}, **{s: s for s in KS_NAMES}}


def normalise_ks(value: str) -> str:
    """A KS slug from what people write on paper ("Čirče", "Zlato Polje"); unknown ones pass through."""
    value = value.strip()
    if value == ALL_KS:
        return value
    return _KS_LOOKUP.get(_fold(value), value)


def _header(cells: list[str]) -> list[str | None]:
    names: list[str | None] = []
    for cell in cells:
        name = cell.strip().strip("\ufeff").strip().lower()
        name = COLUMN_ALIASES.get(name, name)
        names.append(name if name else None)
    return names


def describe_errors(exc: ValidationError) -> str:
    """One readable line: `phone: not a valid phone number: '123'; ks: unknown KS 'x' ..."""
    parts = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
        value = error.get("input")
        where = loc[0] if loc else ""
        if where and isinstance(value, str) and value and error.get("type") != "value_error":
            message = f"{message} (got {value!r})"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(parts))


def describe_errors_sl(exc: ValidationError) -> str:
    """The same in Slovenian, one reason per column: `phone: to ni slovenska mobilna številka …`."""
    parts = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if not isinstance(p, int)]
        if loc and loc[0] in COLUMN_PROBLEMS_SL:
            parts.append(f"{loc[0]}: {COLUMN_PROBLEMS_SL[loc[0]]}")
            continue
        raw = str(error.get("msg", ""))
        parts.append(
            next((sl for phrase, sl in CONTACT_PROBLEMS_SL if phrase in raw), "podatki v vrstici niso pravilni")
        )
    return "; ".join(dict.fromkeys(parts))


def _validation(exc: ValidationError) -> Bilingual:
    return Bilingual(describe_errors_sl(exc), describe_errors(exc))


def parse_subscribers_csv(data: bytes | str, *, settings: SmsCountries | None = None) -> ParsedCsv:
    """Rows that make valid subscriptions (with their line numbers) and readable row errors.
    With `settings`, a phone of a country `KRANJ_SMS_COUNTRY_CODES` leaves out is a row error.

    Raises CsvFormatError when the file cannot be used at all (empty, no `ks` column, no
    contact column). A contact that appears twice in the file is an error on the second row.
    """
    if isinstance(data, bytes):
        text, encoding, warnings = decode(data)
    else:
        text, encoding, warnings = data.lstrip("\ufeff"), "utf-8", []
    lines = text.splitlines()
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise CsvFormatError(Bilingual("datoteka je prazna", "the file is empty"))
    delimiter = sniff_delimiter(lines[header_index])
    result = ParsedCsv(warnings=warnings, encoding=encoding, delimiter=delimiter)

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str | None] | None = None
    seen: dict[str, int] = {}
    previous_end = 0
    try:
        for cells in reader:
            line = previous_end + 1  # the line this row starts on (quoted cells may span lines)
            previous_end = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = _header(cells)
                _check_header(header, result)
                continue
            _parse_row(line, cells, header, seen, result, settings)
    except csv.Error as exc:
        result.errors.append(
            RowError(
                previous_end + 1,
                Bilingual(
                    f"datoteke od tu naprej ni mogoče prebrati: {exc}", f"the file cannot be read from here on: {exc}"
                ),
            )
        )
    if header is None:
        raise CsvFormatError(Bilingual("datoteka je prazna", "the file is empty"))
    return result


def _check_header(header: list[str | None], result: ParsedCsv) -> None:
    present = [h for h in header if h]
    duplicates = sorted({h for h in present if present.count(h) > 1})
    if duplicates:
        names = ", ".join(duplicates)
        raise CsvFormatError(
            Bilingual(f"stolpec {names} je v glavi večkrat", f"column {names} appears more than once in the header")
        )
    if "ks" not in present:
        expected, found = ", ".join(COLUMNS), ", ".join(present)
        raise CsvFormatError(
            Bilingual(
                f"v glavi ni stolpca ks; pričakovani stolpci: {expected} (najdeni: {found or 'nobeden'})",
                f"the header has no `ks` column; expected columns: {expected} (found: {found or 'none'})",
            )
        )
    if "email" not in present and "phone" not in present:
        raise CsvFormatError(
            Bilingual(
                "glava potrebuje stolpec email ali phone (ali oba)",
                "the header needs an `email` or a `phone` column (or both)",
            )
        )
    unknown = [h for h in present if h not in COLUMNS]
    if unknown:
        names = ", ".join(unknown)
        result.warnings.append(
            Bilingual(
                f"stolpcev, ki jih oblika ne pozna, nismo upoštevali: {names}",
                f"ignored column(s) not in the format: {names}",
            )
        )


def _parse_row(
    line: int,
    cells: list[str],
    header: list[str | None],
    seen: dict[str, int],
    result: ParsedCsv,
    settings: SmsCountries | None = None,
) -> None:
    extra = [c for c in cells[len(header) :] if c.strip()]
    if extra:
        result.errors.append(
            RowError(
                line,
                Bilingual(
                    f"vrstica ima {len(cells)} celic, glava pa {len(header)}; je kje odvečno ločilo?",
                    f"{len(cells)} cells but the header has {len(header)}; is there a stray separator?",
                ),
            )
        )
        return
    values: dict[str, object] = {}
    for name, cell in zip(header, cells, strict=False):
        if name not in COLUMNS:
            continue
        cell = cell.strip()
        if not cell:
            continue  # empty cell: the default
        if name in LIST_COLUMNS:
            items = [item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()]
            if name == "ks":
                items = [normalise_ks(item) for item in items]
            else:
                items = [item.lower() for item in items]
            if items:
                values[name] = items
        elif name == "language":
            values[name] = cell.lower()
        else:
            values[name] = cell
    if "ks" not in values:
        result.errors.append(
            RowError(
                line,
                Bilingual(
                    "ks: manjka krajevna skupnost (napišite npr. primskovo ali več kot a|b)",
                    "ks: no KS given (write e.g. primskovo, or several as a|b)",
                ),
            )
        )
        return
    try:
        subscriber = SubscriberIn.model_validate(values)
    except ValidationError as exc:
        result.errors.append(RowError(line, _validation(exc)))
        return
    if settings is not None and (refusal := sms_refusal(subscriber.phone, settings)):
        result.errors.append(RowError(line, refusal.prefixed("phone: ", "phone: ")))
        return
    for key in (subscriber.email, subscriber.phone):
        if key and key in seen:
            result.errors.append(
                RowError(
                    line,
                    Bilingual(
                        f"isti kontakt kot v vrstici {seen[key]} — v tej datoteki je že",
                        f"the same contact as line {seen[key]} — already in this file",
                    ),
                )
            )
            return
    for key in (subscriber.email, subscriber.phone):
        if key:
            seen[key] = line
    result.rows.append(GoodRow(line, subscriber))


@dataclass
class LoadResult:
    loaded: list[tuple[int, str]] = field(default_factory=list)  # (line, subscriber id)
    errors: list[RowError] = field(default_factory=list)


async def load_rows(
    db: Database, rows: list[GoodRow], *, consent_source: str = "import", entered_by: str | None = None
) -> LoadResult:
    """Add each good row; one already subscribed (or failing) becomes a row error, the rest load."""
    result = LoadResult()
    for row in rows:
        try:
            out = await add_subscriber(db, row.subscriber, consent_source=consent_source, entered_by=entered_by)
        except Conflict:
            result.errors.append(RowError(row.line, ALREADY))
            continue
        result.loaded.append((row.line, out.id))
    return result


async def already_subscribed(db: Database, rows: list[GoodRow]) -> list[RowError]:
    """For a dry run: the rows whose email or phone is already subscribed (nothing is written)."""
    import sqlalchemy as sa
    from sqlmodel import col, select

    from .models import Subscriber

    emails = [r.subscriber.email for r in rows if r.subscriber.email]
    phones = [r.subscriber.phone for r in rows if r.subscriber.phone]
    known: set[str] = set()
    async with db.session() as session:
        for chunk_start in range(0, max(len(emails), len(phones)), 500):
            e_chunk = emails[chunk_start : chunk_start + 500]
            p_chunk = phones[chunk_start : chunk_start + 500]
            found = await session.exec(
                select(Subscriber.email, Subscriber.phone).where(
                    sa.or_(col(Subscriber.email).in_(e_chunk), col(Subscriber.phone).in_(p_chunk))
                )
            )
            for email, phone in found.all():
                known.update(v for v in (email, phone) if v)
        await session.rollback()
    return [RowError(r.line, ALREADY) for r in rows if (r.subscriber.email in known) or (r.subscriber.phone in known)]
