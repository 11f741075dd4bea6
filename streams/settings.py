"""One frozen settings object, built at the entry point from `HOLDWATCH_*` variables.

Nothing here is read at import time: `Settings()` reads the environment when called.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerting.engine.config import Thresholds


def _default_home() -> Path:
    return Path.home() / ".cache" / "holdwatch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOLDWATCH_", frozen=True, extra="ignore")

    # --- Kafka ---------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        default=None,
        description="bootstrap servers of an existing cluster; unset = the local broker",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    topic_emanifest: str = "emanifest.events"
    topic_rns: str = "rns.events"
    topic_carm: str = "carm.readiness"
    topic_alerts: str = "holdwatch.alerts"
    topic_deadletter: str = "holdwatch.deadletter"
    topic_actions: str = Field(
        default="",
        description="dispatch's actions in Slack; default: the alert topic's name with alerts -> actions "
        "(holdwatch.actions)",
    )
    partitions: int = Field(default=6, ge=1, description="partitions of every topic (inputs must match)")
    replication_factor: int = Field(default=1, ge=1)

    # --- local broker ----------------------------------------------------------
    kafka_version: str = "3.9.2"
    home: Path = Field(default_factory=_default_home, description="cache for broker jars, broker data, state")

    # --- worker ----------------------------------------------------------------
    app_id: str = "holdwatch"
    clock: Literal["wall", "event"] = "wall"
    store: Literal["rocksdb", "memory"] = "rocksdb"
    state_dir: Path | None = None
    metrics_port: int = Field(default=9108, ge=0, le=65535)

    # --- status API and dispatch board (docs/status-api.md) -----------------------
    web_port: int = Field(default=6066, ge=0, le=65535, description="the worker's HTTP port; 0 turns it off")
    web_bind: str = Field(
        default="0.0.0.0",
        description="address to listen on when tokens are set; with no token only 127.0.0.1",
    )
    web_tokens: tuple[SecretStr, ...] = Field(
        default=(),
        description='bearer tokens accepted by the API and the board, a JSON list: ["t1","t2"]',
    )
    web_url: str = Field(
        default="",
        description="where `holdwatch status|check` find a worker (default http://127.0.0.1:WEB_PORT)",
    )
    board_hours: float = Field(
        default=6.0, gt=0, description="the board shows loads due within this many hours"
    )
    ready_max_idle_s: float = Field(
        default=120.0, gt=0, description="/readyz: caught up means no input lag, or lag but input within this"
    )

    def web_base_url(self) -> str:
        return self.web_url.rstrip("/") or f"http://127.0.0.1:{self.web_port}"

    # --- real feeds (docs/connectors.md) -------------------------------------------
    borderconnect_url: str = Field(
        default="", description="BorderConnect WebSocket endpoint, wss://<host>/api/sockets/<account>"
    )
    borderconnect_api_key: SecretStr | None = Field(default=None, description="sent only in the handshake")
    borderconnect_company_keys: dict[str, str] = Field(
        default_factory=dict,
        description='service-provider mode: company key → carrier code, a JSON object {"key": "ABCD"}',
    )
    borderconnect_disconnected_alert_min: float = Field(default=10.0, gt=0)
    feed_local_tz: str = Field(
        default="America/Toronto", description="time zone of feed times that carry none (IANA name)"
    )
    trip_mapping_file: Path | None = Field(
        default=None, description="shipper/consignee → importer BN and broker code, for trips that lack them"
    )
    carm_date_order: Literal["mdy", "dmy"] = Field(
        default="mdy", description="how the CARM spreadsheet writes 11/03/2026: month first (mdy) or day"
    )
    broker_directory_file: Path | None = Field(
        default=None, description="broker code → name, 24 h phone, email, office hours (TOML or CSV)"
    )
    ports_file: Path | None = Field(default=None, description="extra or corrected CBSA offices (CSV)")

    # --- Slack -----------------------------------------------------------------
    slack_token: SecretStr | None = None
    slack_base_url: str = "https://slack.com/api/"
    slack_channel: str = "#dispatch"
    slack_routing_file: Path | None = None
    slack_critical_mention: str | None = Field(default=None, description="user group id, e.g. S0123ABC")
    slack_min_interval_s: float = Field(default=1.0, ge=0)
    storm_threshold: int = Field(default=10, ge=2)
    storm_window_s: float = Field(default=120.0, gt=0)
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="app-level token (xapp-...): buttons and /holdwatch over Socket Mode, no public endpoint",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="signing secret: buttons and /holdwatch over the HTTP Request URL (when no app token)",
    )
    slack_interactions_bind: str = Field(default="0.0.0.0", description="HTTP Request URL mode: address")
    slack_interactions_port: int = Field(
        default=3000, ge=0, le=65535, description="HTTP Request URL mode: port"
    )
    slack_actor_groups: tuple[str, ...] = Field(
        default=(),
        description='user group ids whose members may act on any alert, a JSON list ["S0123ABC"]; '
        "members of the alert's channel always may",
    )
    escalate_after_min: float = Field(
        default=10.0, gt=0, description="a critical alert nobody acknowledged is paged to on-call after this"
    )
    notify_replayed: bool = Field(
        default=False,
        description="deliver alerts of replayed traffic (hw-traffic: replay) to Slack; only for a replay "
        "app with its own alert topic and channel (default: skipped and counted)",
    )

    # --- rules (rules.md defaults) -----------------------------------------------
    rule_pars_warning_min: float = 120
    rule_emanifest_deadline_min: float = 60
    rule_pars_critical_min: float = 30
    rule_release_grace_min: float = 30
    rule_login_dormant_days: float = 180
    rule_minimum_security_cad: float = 5000
    rule_surety_ratio: float = 0.5

    # --- retention, in event time (docs/operations.md) -----------------------------
    retention_closed_h: float = Field(
        default=72,
        gt=0,
        description="hours a released/cancelled/expired load stays in the tables (late events for it "
        "are ignored until then); resolved lifecycles leave the Slack ledger after the same time",
    )
    retention_unknown_h: float = Field(
        default=72,
        gt=0,
        description="hours the events of a CCN that never got a cargo_reported are kept",
    )
    expire_after_eta_h: float = Field(
        default=24,
        gt=0,
        description="an open load with no event for this long after its ETA closes as `expired`",
    )

    def thresholds(self) -> Thresholds:
        return Thresholds(
            pars_warning_before_eta=timedelta(minutes=self.rule_pars_warning_min),
            emanifest_deadline_before_eta=timedelta(minutes=self.rule_emanifest_deadline_min),
            pars_critical_before_eta=timedelta(minutes=self.rule_pars_critical_min),
            release_grace_after_arrival=timedelta(minutes=self.rule_release_grace_min),
            login_dormant_after=timedelta(days=self.rule_login_dormant_days),
            minimum_security_cad=self.rule_minimum_security_cad,
            surety_ratio=self.rule_surety_ratio,
            retention_closed=timedelta(hours=self.retention_closed_h),
            retention_unknown=timedelta(hours=self.retention_unknown_h),
            expire_after_eta=timedelta(hours=self.expire_after_eta_h),
        )

    def actions_topic(self) -> str:
        """`holdwatch.actions`, or next to a renamed alert topic (so test and demo namespaces get theirs)."""
        if self.topic_actions:
            return self.topic_actions
        name = self.topic_alerts
        return name.replace("alerts", "actions", 1) if "alerts" in name else f"{name}.actions"

    def topic_names(self) -> dict[str, str]:
        return {
            "emanifest": self.topic_emanifest,
            "rns": self.topic_rns,
            "carm": self.topic_carm,
            "alerts": self.topic_alerts,
            "deadletter": self.topic_deadletter,
        }
