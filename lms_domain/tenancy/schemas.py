"""Schemas for institutions, users and learner profiles, shared by the REST API and the docs.

Free text refuses control characters: PostgreSQL rejects NUL in text columns, and a name
with a line break would corrupt the USSD screens it is shown on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints

from lms_domain.courses.schemas import ListQuery
from lms_domain.i18n import Language
from lms_domain.money import DEFAULT_VAT_RATE_BP
from lms_domain.tenancy.models import Role, UnknownPhonePolicy

# At least one visible character, and no control characters anywhere.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
# Search text may be anything printable (it is matched, never stored).
_SEARCH = r"^[^\x00-\x1f\x7f]*$"

InstitutionName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
InstitutionCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9]{2,16}$", min_length=2, max_length=16)
]  # typed on a keypad during USSD registration
FullName = Annotated[str, StringConstraints(max_length=200, pattern=_SEARCH)]
# Explicit classes, not \s: the Rust regex pydantic runs and the JSON Schema regex clients
# run disagree on which Unicode characters are whitespace.
_EMAIL_PART = r"[^@ \x00-\x1f\x7f]+"
Email = Annotated[str, StringConstraints(max_length=254, pattern=rf"^{_EMAIL_PART}@{_EMAIL_PART}\.{_EMAIL_PART}$")]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=120, pattern=_PRINTABLE)]
Grade = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=_PRINTABLE)]
Pin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$", min_length=4, max_length=4)]
PhoneText = Annotated[
    str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9+ ()-]+$")
]  # 07.., 01.., 254.. or +254..; normalised to E.164 by the service
SearchText = Annotated[str, StringConstraints(max_length=100, pattern=_SEARCH)]


def _json_number(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# Bodies are parsed leniently, which would read ``false`` or ``"12"`` as a number and
# ``"yes"`` as true. A whole float such as 16.0 stays a valid integer, as JSON Schema says.
VatRateBp = Annotated[int, Field(ge=0, le=10_000, description="VAT in basis points."), BeforeValidator(_json_number)]
StrictBool = Annotated[bool, Strict()]


# Institutions ---------------------------------------------------------------------------


class InstitutionListQuery(ListQuery):
    q: SearchText | None = Field(default=None, description="Search in the name and the code.")


class InstitutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: InstitutionName
    code: InstitutionCode = Field(description="What unknown learners type to join by USSD; stored upper-case.")
    default_language: Language = Language.EN
    vat_rate_bp: VatRateBp = DEFAULT_VAT_RATE_BP
    unknown_phone_policy: UnknownPhonePolicy = UnknownPhonePolicy.REGISTER


class InstitutionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: InstitutionName | None = None
    code: InstitutionCode | None = None
    default_language: Language | None = None
    vat_rate_bp: VatRateBp | None = None
    unknown_phone_policy: UnknownPhonePolicy | None = None
    is_active: StrictBool | None = None


class InstitutionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    code: str
    country: str
    timezone: str
    default_language: Language
    vat_rate_bp: int
    unknown_phone_policy: UnknownPhonePolicy
    is_active: bool
    created_at: datetime
    updated_at: datetime


class InstitutionPage(BaseModel):
    items: list[InstitutionOut]
    next_cursor: str | None = None


# Users ----------------------------------------------------------------------------------


class UserListQuery(ListQuery):
    q: SearchText | None = Field(default=None, description="Search in the username and the full name.")
    role: Role | None = None
    institution_id: uuid.UUID | None = Field(default=None, description="Platform admins: one institution's users.")


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        min_length=3,
        max_length=150,
        pattern=r"^[A-Za-z0-9._@-]*[A-Za-z][A-Za-z0-9._@-]*$",
        description="Letters, digits and . _ @ -, with at least one letter so that it never reads as a phone "
        "number; stored lower-case.",
    )
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    full_name: FullName = ""
    email: Email | None = None
    institution_id: uuid.UUID | None = Field(
        default=None,
        description="Platform admins: the user's institution (null for another platform admin). "
        "Institution admins always create users in their own institution.",
    )


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: FullName | None = None
    email: Email | None = Field(default=None, description="null clears it.")
    is_active: StrictBool | None = Field(default=None, description="Admins cannot deactivate themselves.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    username: str
    email: str | None
    full_name: str
    role: Role
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None = None


class MeOut(UserOut):
    learner_id: uuid.UUID | None = Field(description="The learner profile behind a learner login.")


# Learner profiles -----------------------------------------------------------------------


class LearnerListQuery(ListQuery):
    q: SearchText | None = Field(
        default=None, description="Search in the display name, or a phone number in any local format."
    )


class LearnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName
    phone: PhoneText | None = Field(default=None, description="07.., 01.., 254.. or +254..; may be shared.")
    language: Language = Language.EN
    pin: Pin | None = Field(default=None, description="The 4-digit USSD PIN.")
    grade: Grade | None = None
    user_id: uuid.UUID | None = Field(default=None, description="A learner-role login of the same institution.")
    institution_id: uuid.UUID | None = Field(default=None, description="Platform admins only: the learner's school.")


class LearnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayName | None = None
    language: Language | None = None
    grade: Grade | None = Field(default=None, description="Staff only; null clears it.")


class PinReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pin: Pin


class LearnerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    display_name: str
    language: Language
    account_no: str = Field(description="The M-Pesa paybill account number.")
    phone: str | None = Field(description="E.164.")
    grade: str | None
    has_pin: bool
    pin_locked_until: datetime | None
    created_at: datetime


class LearnerPage(BaseModel):
    items: list[LearnerOut]
    next_cursor: str | None = None


class PhoneLearners(BaseModel):
    phone: str = Field(description="E.164.")
    items: list[LearnerOut]
