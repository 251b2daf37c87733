"""Settings of the surveys service only (documented extensions, prefix `KRANJ_SURVEYS_`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SurveysConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KRANJ_SURVEYS_", extra="ignore", env_ignore_empty=True)

    cluster_threshold: int = Field(
        default=20,
        ge=2,
        le=100_000,
        description=(
            "`KRANJ_SURVEYS_CLUSTER_THRESHOLD`: more web answers than this from one network address within "
            "10 minutes are flagged to staff as a suspicious cluster (results API `suspicious_clusters` and the "
            "staff results page). Nothing is refused: a school class on one network is such a cluster too; "
            "staff judge. (Replaces the old cap of 10 answers a day per address, issue 15.)"
        ),
    )
    close_check_seconds: float = Field(
        default=30.0, gt=0, description="How often surveys past their closing time are closed (and announced)."
    )
    reminder_hours_before: float = Field(
        default=48.0,
        gt=0,
        description=(
            "`KRANJ_SURVEYS_REMINDER_HOURS_BEFORE`: how long before its closing time a survey announces "
            "`surveys.survey.closing-soon` (once), so notify reminds the invited who have not answered."
        ),
    )
    reminder_not_within_hours_of_opening: float = Field(
        default=24.0,
        ge=0,
        description="No reminder for a survey opened less than this many hours ago (the invitation is still fresh).",
    )
