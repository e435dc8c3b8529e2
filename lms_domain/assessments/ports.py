"""What the assessments domain needs from the outside world, as small interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from lms_domain.i18n import Language


@dataclass(frozen=True)
class CertificateView:
    """Everything printed on a certificate; times already in Africa/Nairobi."""

    code: str
    learner_name: str
    course_title: str
    institution_name: str
    score_percent: int
    issued_at_local: datetime
    verify_url: str
    language: Language
    revoked: bool


class CertificateRenderer(Protocol):
    def render(self, view: CertificateView) -> bytes:
        """Return the certificate as a PDF document."""
        ...
