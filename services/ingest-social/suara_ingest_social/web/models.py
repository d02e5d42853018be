"""What the web channel accepts from citizens and what it reads back from ticketing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from suara_shared import untrusted
from suara_shared.identity import normalize_phone

#: The 14 kecamatan of Kabupaten Rembang (Kemendagri 33.17), in the order the kabupaten lists them.
KECAMATAN: tuple[str, ...] = (
    "Sumber", "Bulu", "Gunem", "Sale", "Sarang", "Sedan", "Pamotan",
    "Sulang", "Kaliori", "Rembang", "Pancur", "Kragan", "Sluke", "Lasem",
)  # fmt: skip
_KECAMATAN_BY_KEY = {name.casefold(): name for name in KECAMATAN}
_KECAMATAN_PREFIXES = ("kecamatan ", "kec. ", "kec ")

TEXT_MIN = 10
TEXT_MAX = 5000
NAME_MAX = 120
DESA_MAX = 120

ComplaintText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=TEXT_MIN, max_length=TEXT_MAX)]


def _blank_to_none(value: Any) -> Any:
    """An empty or all-space optional field means "not given": a browser sends "" for an untouched input."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


class WebComplaintCreate(BaseModel):
    """A complaint from the web form or `POST /api/v1/web/complaints`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    text: ComplaintText = Field(description="the complaint, 10 to 5000 characters")
    # Declared before the identity fields so their validators can see it and drop what an anonymous
    # reporter typed without rejecting it: the identity is never kept, so its shape does not matter.
    anonymous: bool = Field(default=False, description="when true, no name, phone or e-mail is kept")
    confidential: bool = Field(
        default=False, description="when true, the report and its replies are hidden from the public"
    )
    name: str | None = Field(default=None, max_length=NAME_MAX)
    phone: str | None = Field(default=None, description="Indonesian number; stored in E.164 (+62…)")
    email: EmailStr | None = None
    kecamatan: str | None = Field(default=None, description="one of Kabupaten Rembang's 14 kecamatan")
    desa: str | None = Field(default=None, max_length=DESA_MAX, description="desa or kelurahan")

    @model_validator(mode="before")
    @classmethod
    def _no_lone_surrogates(cls, data: Any) -> Any:
        # Valid JSON ("\ud800") that no UTF-8 encoder takes: replaced, or the accepted complaint could not be sent.
        if isinstance(data, dict):
            return {k: untrusted.clean_text(v) if isinstance(v, str) else v for k, v in data.items()}
        return data

    @field_validator("text", mode="after")
    @classmethod
    def _one_newline_style(cls, value: str) -> str:
        # Browsers send CRLF from a textarea; the rest of Suara should see one kind of line break.
        return value.replace("\r\n", "\n").replace("\r", "\n")

    @field_validator("name", "phone", "email", mode="before")
    @classmethod
    def _identity_unless_anonymous(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("anonymous"):
            return None
        return _blank_to_none(value)

    @field_validator("desa", mode="before")
    @classmethod
    def _blank_desa(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("phone", mode="after")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        normalized = normalize_phone(value)
        if normalized is None:
            raise PydanticCustomError(
                "phone_invalid",
                "not a valid Indonesian phone number; write it like 0812-3456-7890 or +6281234567890",
            )
        return normalized

    @field_validator("kecamatan", mode="before")
    @classmethod
    def _known_kecamatan(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None:
            return None
        if not isinstance(value, str):
            return value  # let pydantic report the wrong type
        key = " ".join(value.split()).casefold()
        for prefix in _KECAMATAN_PREFIXES:
            key = key.removeprefix(prefix)
        if key not in _KECAMATAN_BY_KEY:
            raise PydanticCustomError(
                "kecamatan_unknown",
                "not a kecamatan of Kabupaten Rembang; use one of: {choices}",
                {"choices": ", ".join(KECAMATAN)},
            )
        return _KECAMATAN_BY_KEY[key]


class WebComplaintAccepted(BaseModel):
    """The answer to an accepted complaint: where to follow it."""

    id: str = Field(description="submission id (hex UUID4); a ticket reference follows once it is recorded")
    status: Literal["received"] = "received"
    status_url: str


TicketStatus = Literal["new", "open", "pending", "resolved", "closed"]
ReplyPurpose = Literal["acknowledgement", "agent_reply", "status"]
DeliveryStatus = Literal["queued", "sent", "delivered", "read", "failed"]


class PublicReply(BaseModel):
    """One message Suara sent the citizen, as ticketing's public status shows it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    purpose: ReplyPurpose | str
    text: str
    created_at: datetime
    delivery_status: DeliveryStatus | str


class PublicStatus(BaseModel):
    """Ticketing's public view of one ticket: `GET /api/v1/public/status/{key}`."""

    model_config = ConfigDict(extra="ignore")

    reference: str
    submission_id: str | None = None
    status: TicketStatus | str
    #: Ticketing's words for the status, the category and the agency (the same as its `cek` answers).
    status_label: str | None = None
    channel: str
    category: str | None = None
    department: str | None = None
    category_name: str | None = None
    department_name: str | None = None
    created_at: datetime
    updated_at: datetime
    replies: list[PublicReply] = Field(default_factory=list)
    replies_hidden: bool = False
