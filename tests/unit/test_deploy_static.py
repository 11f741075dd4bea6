"""Static checks of the deployable stack (no Docker engine here, so nothing is run).

Docker Compose, the Dockerfile, Prometheus and Grafana files must agree with each other and
with the code: referenced files exist, ports and env line up, images are pinned, every HOLDWATCH_*
variable is a Settings field, and every metric a rule or panel queries is one the telemetry
modules define (streams/worker/telemetry.py, streams/notifier/telemetry.py, the BorderConnect
connector's `ConnectorMetrics` in streams/feeds/borderconnect.py), with labels it has,
exported from the start (a sample matching the selector, at 0, before any traffic) by the process
of the job it is queried from (issue 11 item 8).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from streams.feeds.borderconnect import ConnectorMetrics
from streams.notifier.telemetry import LATENCY_BUCKETS, NotifierMetrics
from streams.settings import Settings
from streams.worker.telemetry import WorkerMetrics, lag_topics

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES_FILE = PROMETHEUS_DIR / "rules" / "holdwatch.rules.yml"
RULE_TESTS_FILE = PROMETHEUS_DIR / "tests" / "holdwatch.rules.test.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
OPERATIONS_DOC = REPO / "docs" / "operations.md"
RUNBOOK_PAGES = ("docs/operations.md", "docs/connectors.md")  # connectors.md: the feeds' own alerts

HOLDWATCH_COMMAND = "holdwatch"
SCRAPE_LABELS = frozenset({"job", "instance"})
# Grafana's interval variables, replaced by what Grafana would pass (test_prometheus_scrape too).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


# --- loading -------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def holdwatch_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run the image built from our Dockerfile."""
    return {name: svc for name, svc in services.items() if "build" in svc}


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?[-?](?P<default>[^}]*))?\}")


def resolve_default(value: Any) -> str | None:
    """What a compose value becomes with an empty shell: `${X:-d}` -> d, `a${X:-b}c` -> abc, None -> None."""
    if value is None:
        return None
    return _VARIABLE.sub(lambda match: match.group("default") or "", str(value))


def environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return dict(env)


def published_ports(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host port, container port) of each `ports:` entry, defaults resolved."""
    result = []
    for entry in service.get("ports") or []:
        parts = str(resolve_default(entry)).split(":")
        result.append((parts[-2], int(parts[-1].split("/")[0])))
    return result


# --- metrics and PromQL --------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    kind: str
    labels: frozenset[str]

    def sample_names(self) -> dict[str, frozenset[str]]:
        """Series names a scrape produces, each with the labels it carries."""
        if self.kind == "counter":
            return {f"{self.name}_total": self.labels, f"{self.name}_created": self.labels}
        if self.kind == "histogram":
            return {
                f"{self.name}_bucket": self.labels | {"le"},
                f"{self.name}_count": self.labels,
                f"{self.name}_sum": self.labels,
                f"{self.name}_created": self.labels,
            }
        return {self.name: self.labels}


def process_registry(command: str, *, with_notifier: bool) -> CollectorRegistry:
    """What a process serves on /metrics: `notifier` its own families; `worker` its own, plus the
    notifier's when it runs its notifier (no --no-notifier), as streams/worker/app.py wires them;
    `connect` (the BorderConnect connector) its own."""
    registry = CollectorRegistry()
    if command == "connect":
        ConnectorMetrics(registry)
    if command == "worker":
        # As `streams.worker.app._telemetry` builds it: the consumed topics' lag exists at 0.
        WorkerMetrics(registry, topics=lag_topics(Settings()))
    if command == "notifier" or with_notifier:
        NotifierMetrics(registry)
    return registry


def registry_families(registry: CollectorRegistry) -> list[Family]:
    families = []
    for collector in list(registry._collector_to_names):
        assert isinstance(collector, MetricWrapperBase)
        (described,) = collector.describe()
        # Label names of a labelled metric without children are only on the wrapper.
        families.append(Family(described.name, described.type, frozenset(collector._labelnames)))
    return families


def metric_families() -> list[Family]:
    """Every metric the worker, the notifier and the connector can expose."""
    return registry_families(process_registry("worker", with_notifier=True)) + registry_families(
        process_registry("connect", with_notifier=False)
    )


def series_of(families: list[Family]) -> dict[str, frozenset[str]]:
    series: dict[str, frozenset[str]] = {}
    for family in families:
        series.update(family.sample_names())
    return series


def exposed_series() -> dict[str, frozenset[str]]:
    return series_of(metric_families())


def startup_samples(registry: CollectorRegistry) -> set[str]:
    """Sample names a first scrape of a fresh process returns (series created at 0)."""
    return {sample.name for metric in registry.collect() for sample in metric.samples}


_SELECTOR = re.compile(r"\b(?P<name>holdwatch_[a-z0-9_]+|holdwatch:[a-z0-9_:]+)\b(?P<matchers>\{[^}]*\})?")
_MATCHER_KEY = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def selectors(expr: str) -> Iterator[tuple[str, frozenset[str]]]:
    """(metric or recording-rule name, label names matched) for each selector in a PromQL expression."""
    for match in _SELECTOR.finditer(expr):
        matchers = match.group("matchers") or ""
        yield match.group("name"), frozenset(_MATCHER_KEY.findall(matchers))


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def unknown_metrics(expr: str, series: dict[str, frozenset[str]], records: set[str]) -> set[str]:
    return {name for name, _ in selectors(expr) if name not in series and name not in records}


def unknown_labels(expr: str, series: dict[str, frozenset[str]]) -> set[str]:
    """Label names matched on a raw series, or grouped by, that no referenced series carries."""
    problems: set[str] = set()
    known_here: set[str] = set(SCRAPE_LABELS)
    raw_only = True
    for name, matched in selectors(expr):
        if name not in series:
            raw_only = False  # a recording rule: its labels are checked by promtool tests
            continue
        allowed = series[name] | SCRAPE_LABELS
        problems |= {f"{name}{{{label}}}" for label in matched - allowed}
        known_here |= allowed
    if raw_only:
        problems |= {f"by ({label})" for label in grouping_labels(expr) - known_here}
    return problems


def rule_groups() -> list[dict[str, Any]]:
    data = load_yaml(RULES_FILE)
    groups: list[dict[str, Any]] = data["groups"]
    return groups


def rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def recording_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def load_dashboard(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL with Grafana variables replaced) for every target of every panel."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel["title"], expr


def every_expression() -> list[tuple[str, str]]:
    found = [(f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in rules()]
    for path in DASHBOARDS:
        found += [(f"{path.name}: {title}", expr) for title, expr in panel_queries(load_dashboard(path))]
    return found


# --- the checkers themselves can fail ----------------------------------------------------------------


def test_checkers_flag_unknown_metrics_and_labels() -> None:
    series = exposed_series()
    records = {"holdwatch:known:rate5m"}
    assert unknown_metrics("rate(holdwatch_nope_total[5m]) + holdwatch:known:rate5m", series, records) == {
        "holdwatch_nope_total"
    }
    assert unknown_metrics("sum(rate(holdwatch_events_consumed_total[5m]))", series, records) == set()
    assert unknown_metrics("holdwatch_events_consumed", series, records) == {"holdwatch_events_consumed"}
    assert unknown_labels('holdwatch_open_alerts{ccn="ABCD1"}', series) == {"holdwatch_open_alerts{ccn}"}
    assert unknown_labels("sum by (ccn) (holdwatch_open_alerts)", series) == {"by (ccn)"}
    assert unknown_labels(
        'sum by (le) (rate(holdwatch_end_to_end_seconds_bucket{traffic="live"}[1m]))', series
    ) == (set())
    assert resolve_default("${A:-x}y${B:-}z${C}") == "xyz"


def test_metric_families_come_from_both_telemetry_modules() -> None:
    names = {family.name: family for family in metric_families()}
    assert names["holdwatch_events_consumed"].kind == "counter"
    assert names["holdwatch_end_to_end_seconds"].labels == {"traffic"}
    assert "holdwatch_open_alerts" in exposed_series()
    assert names["holdwatch_slack_permanent_errors"].labels == {"error"}  # the notifier's own


# --- Prometheus rules and dashboards against the telemetry modules -----------------------------------


def test_every_metric_in_rules_and_dashboards_exists() -> None:
    series = exposed_series()
    records = recording_names()
    problems = {
        where: sorted(missing)
        for where, expr in every_expression()
        if (missing := unknown_metrics(expr, series, records))
    }
    assert problems == {}, "metric names not defined by the telemetry modules or the recording rules"


def test_every_label_in_rules_and_dashboards_exists_on_its_metric() -> None:
    series = exposed_series()
    problems = {
        where: sorted(bad) for where, expr in every_expression() if (bad := unknown_labels(expr, series))
    }
    assert problems == {}


def test_expressions_reference_holdwatch_metrics() -> None:
    """A panel or rule reading nothing of ours would pass the name check vacuously."""
    exempt = {"HoldwatchWorkerDown", "HoldwatchTargetDown", "Targets up"}
    empty = [
        where
        for where, expr in every_expression()
        if not any(True for _ in selectors(expr)) and not any(name in where for name in exempt)
    ]
    assert empty == []


def test_latency_rules_use_live_traffic_and_slo_buckets() -> None:
    for rule in rules():
        for name, _ in selectors(rule["expr"]):
            if name.endswith("_seconds_bucket") or name.endswith("_seconds_count"):
                assert 'traffic="live"' in rule["expr"], rule.get("record") or rule.get("alert")
        for bucket in re.findall(r'le="([^"]+)"', rule["expr"]):
            assert float(bucket) in LATENCY_BUCKETS, f"le={bucket} is not a bucket boundary"
            assert re.fullmatch(r"\d+\.\d+", bucket), f"le={bucket}: write it as exposed, e.g. 1.0"


def test_alerts_have_severity_text_and_a_runbook_section() -> None:
    for rule in alerting_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page in RUNBOOK_PAGES, rule["alert"]
        doc = (REPO / page).read_text(encoding="utf-8")
        anchors = {github_anchor(line.lstrip("#")) for line in doc.splitlines() if line.startswith("#")}
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in {page}"
        assert rule["alert"].lower() in anchor, rule["alert"]


def github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    suite = load_yaml(RULE_TESTS_FILE)
    assert suite["rule_files"] == ["../rules/holdwatch.rules.yml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - silent == set(), "alerts never shown staying silent"
    assert (fires | silent) - alerts == set(), "tests of alerts that do not exist"


def test_grouped_recording_rules_are_unique() -> None:
    keys = [
        (rule["record"], tuple(sorted((rule.get("labels") or {}).items())))
        for rule in rules()
        if "record" in rule
    ]
    assert len(keys) == len(set(keys))


# --- metrics per process: each job's targets export what is queried from that job, from the start ---

_JOB_MATCHER = re.compile(r'\bjob\s*(=~|!~|!=|=)\s*"([^"]*)"')
_LABEL_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def label_matchers(matchers: str) -> list[tuple[str, str, str]]:
    """(label, op, value) of a selector's matchers on the series' own labels (not job/instance)."""
    return [m for m in _LABEL_MATCHER.findall(matchers) if m[0] not in SCRAPE_LABELS]


def matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    """PromQL matching: a missing label is the empty string; regexes are anchored."""
    for label, op, value in matchers:
        have = labels.get(label, "")
        hit = have == value if op in ("=", "!=") else re.fullmatch(value, have) is not None
        if hit != (op in ("=", "=~")):
            return False
    return True


def startup_match(registry: CollectorRegistry, name: str, matchers: str) -> bool:
    """A first scrape of a fresh process (no traffic) has a sample `name` the selector selects."""
    wanted = label_matchers(matchers)
    return any(
        sample.name == name and matches(sample.labels, wanted)
        for metric in registry.collect()
        for sample in metric.samples
    )


def job_registries(services: dict[str, dict[str, Any]]) -> dict[str, CollectorRegistry]:
    """Scrape job -> the registry its targets serve, from prometheus.yml and each compose command."""
    from streams.cli.main import build_parser

    parser = build_parser()
    jobs = {}
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        names = [name for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
        if not names:
            continue  # Prometheus itself
        (service,) = names
        args = parser.parse_args([str(resolve_default(arg)) for arg in services[service]["command"]])
        with_notifier = not getattr(args, "no_notifier", True)
        jobs[job["job_name"]] = process_registry(args.command, with_notifier=with_notifier)
    return jobs


def queried_jobs(matchers: str, jobs: set[str]) -> set[str]:
    """The jobs a selector's `job` matchers select (all of them without one)."""
    selected = set(jobs)
    for op, value in _JOB_MATCHER.findall(matchers):
        hit = {job for job in jobs if (job == value if op in ("=", "!=") else re.fullmatch(value, job))}
        selected &= hit if op in ("=", "=~") else jobs - hit
    return selected


def job_problems(expr: str, jobs: dict[str, CollectorRegistry]) -> list[str]:
    """Raw selectors that select no sample of a fresh process of the queried job (before any traffic).

    A selector naming a job must find its series on every job it selects; one naming none (the
    Slack families come from `holdwatch-notifier`, or from a worker running its notifier) on one.
    """
    problems = []
    for match in _SELECTOR.finditer(expr):
        name, matchers = match.group("name"), match.group("matchers") or ""
        if name.startswith("holdwatch:"):
            continue  # a recording rule: its own expression is checked
        selected = queried_jobs(matchers, set(jobs))
        found = {job for job in selected if startup_match(jobs[job], name, matchers)}
        if not found or ("job" in _MATCHER_KEY.findall(matchers) and found != selected):
            problems.append(f"{name}{matchers} (jobs {sorted(selected)}, exported by {sorted(found)})")
    return problems


def test_job_checker_can_fail(services: dict[str, dict[str, Any]]) -> None:
    jobs = job_registries(services)
    assert queried_jobs('{job=~"holdwatch-.*", job!="holdwatch-replay"}', set(jobs)) == {
        "holdwatch-worker",
        "holdwatch-notifier",
        "holdwatch-borderconnect",
    }
    assert job_problems('holdwatch_slack_pending_alerts{job="holdwatch-worker"}', jobs)
    assert job_problems('holdwatch_shipments_in_state{job="holdwatch-notifier"}', jobs)
    assert job_problems('sum(holdwatch_kafka_to_alert_seconds_count{job=~"holdwatch-.*"})', jobs)
    assert not job_problems("sum(holdwatch_slack_pending_alerts)", jobs)
    assert not job_problems('holdwatch_shipments_in_state{job="holdwatch-worker"}', jobs)
    # label matchers must select a series that exists at 0 from the start
    assert job_problems('rate(holdwatch_slack_calls_total{outcome="nope"}[5m])', jobs)
    assert job_problems('holdwatch_kafka_to_alert_seconds_bucket{le="0.7"}', jobs)
    assert job_problems('holdwatch_dead_letters_total{reason=~"internal"}', jobs)  # anchored
    assert not job_problems('holdwatch_dead_letters_total{reason=~"internal_.*"}', jobs)
    assert not job_problems('holdwatch_slack_calls_total{outcome!~"ok|rate_limited"}', jobs)
    assert not job_problems('holdwatch_kafka_to_alert_seconds_bucket{traffic="live", le="1.0"}', jobs)
    assert not job_problems('holdwatch_consumer_lag_records{job="holdwatch-worker"}', jobs)


def test_scrape_jobs_run_the_processes_they_are_named_after(services: dict[str, dict[str, Any]]) -> None:
    """docker-compose's worker runs --no-notifier beside a standalone notifier: one family set each."""
    families = {job: {f.name for f in registry_families(r)} for job, r in job_registries(services).items()}
    assert set(families) == {
        "holdwatch-worker",
        "holdwatch-notifier",
        "holdwatch-replay",
        "holdwatch-borderconnect",
    }
    worker = {f.name for f in registry_families(process_registry("worker", with_notifier=False))}
    notifier = {f.name for f in registry_families(process_registry("notifier", with_notifier=False))}
    connector = {f.name for f in registry_families(process_registry("connect", with_notifier=False))}
    assert worker and notifier and connector and not worker & notifier and not (worker | notifier) & connector
    assert families == {
        "holdwatch-worker": worker,
        "holdwatch-notifier": notifier,
        "holdwatch-replay": worker,
        "holdwatch-borderconnect": connector,
    }


def test_every_queried_metric_has_a_sample_before_any_traffic(services: dict[str, dict[str, Any]]) -> None:
    """Issue 11 item 8: every selector of every panel and rule finds a series at 0 on a fresh process
    of the job it queries, so rate() sees the first increment and no panel starts as "No data"."""
    jobs = job_registries(services)
    expressions = every_expression()
    assert len(expressions) > 50 and {where.split(":")[0] for where, _ in expressions} >= {
        "dispatch.json",
        "pipeline.json",
    }
    problems = {where: bad for where, expr in expressions if (bad := job_problems(expr, jobs))}
    assert problems == {}


def test_operations_doc_lists_each_family_with_the_process_exporting_it() -> None:
    rows = re.findall(
        r"^\| `(holdwatch_[a-z0-9_]+)` \|[^|]*\|[^|]*\| (worker|notifier|connector) \|$",
        OPERATIONS_DOC.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    documented = {name: process for name, process in rows}
    assert len(documented) == len(rows), "a family listed twice"
    commands = {"worker": "worker", "notifier": "notifier", "connector": "connect"}
    exported = {
        (family.name + "_total" if family.kind == "counter" else family.name): process
        for process, command in commands.items()
        for family in registry_families(process_registry(command, with_notifier=False))
    }
    assert documented == exported


def test_every_family_has_series_from_the_start() -> None:
    registry = process_registry("worker", with_notifier=True)
    at_start = startup_samples(registry)
    empty = {f.name for f in registry_families(registry) if not set(f.sample_names()) & at_start}
    assert empty == set()


# --- Grafana -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_with_unique_panel_ids(path: Path) -> None:
    dashboard = load_dashboard(path)
    assert dashboard["uid"] and dashboard["title"]
    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] in ("row", "text"):
            continue
        assert panel["targets"], f"{panel['title']}: no query"
        assert panel["datasource"]["uid"] == datasource_uid()
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource_uid()
            assert target["expr"].strip()


def test_dashboards_expected_and_uids_unique() -> None:
    assert {path.name for path in DASHBOARDS} == {"dispatch.json", "pipeline.json"}
    uids = [load_dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


def test_dashboards_cover_the_views_of_the_issue() -> None:
    pipeline = " ".join(
        expr for _, expr in panel_queries(load_dashboard(GRAFANA_DIR / "dashboards/pipeline.json"))
    )
    for needle in (
        "holdwatch_events_consumed_total",
        "holdwatch_consumer_lag_records",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "holdwatch_slack_calls_total",
        "holdwatch_dead_letters_total",
    ):
        assert needle in pipeline, needle
    dispatch = " ".join(
        expr for _, expr in panel_queries(load_dashboard(GRAFANA_DIR / "dashboards/dispatch.json"))
    )
    for needle in ("holdwatch_open_alerts", "holdwatch_alert_rule_events_total", "[1h]"):
        assert needle in dispatch, needle


def datasource_uid() -> str:
    provisioned = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = provisioned["datasources"]
    uid: str = source["uid"]
    return uid


def test_grafana_provisioning_matches_compose(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounts = {target: source for source, target in bind_mounts(grafana)}
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "holdwatch.yml")
    (entry,) = provider["providers"]
    assert mounts[entry["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == entry["options"]["path"]
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()
    source = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services
    assert int(port) in container_ports(services[host])


# --- Compose and Dockerfile -------------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the `./...` bind mounts (named and anonymous volumes left out)."""
    found = []
    for volume in service.get("volumes") or []:
        source, _, rest = str(volume).partition(":")
        if source.startswith((".", "/")) and rest:
            found.append((source, rest.split(":")[0]))
    return found


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {container for _, container in published_ports(service)}
    ports |= {int(str(port)) for port in service.get("expose") or []}
    return ports


def test_every_file_compose_refers_to_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in bind_mounts(service):
            assert (REPO / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (REPO / build["context"]).is_dir(), name
            assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_compose_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in services.values():
        for volume in service.get("volumes") or []:
            source, sep, _ = str(volume).partition(":")
            if sep and not source.startswith((".", "/")):
                used.add(source)
    assert used == declared


def test_dockerfile_copies_existing_files_not_ignored() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    assert DOCKERIGNORE.read_text(encoding="utf-8").splitlines()[0:5].count("*") == 1, "allow-list expected"
    copied = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied, "no COPY found"
    for source in copied:
        assert (REPO / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"
    packages = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for package in packages["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied, f"package {package} not copied into the image"


def dockerfile_images() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
    images = []
    for stage in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE):
        images.append(args.get(stage.strip("${}"), stage))
    return images


def is_pinned(image: str) -> bool:
    """An explicit version tag (digits and dots) or a digest; never :latest or no tag."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    return tag != "latest" and re.match(r"^v?\d+(\.\d+)+", tag) is not None


def test_pinning_check_rejects_floating_tags() -> None:
    assert not is_pinned("prom/prometheus")
    assert not is_pinned("prom/prometheus:latest")
    assert not is_pinned("grafana/grafana:main")
    assert not is_pinned("python:3-slim")
    assert is_pinned("python:3.11.7-slim-bookworm")
    assert is_pinned("prom/prometheus:v2.55.1")


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    images = dockerfile_images()
    assert images and all(image.startswith("python:3.11.") for image in images)
    for name, service in services.items():
        image = resolve_default(service.get("image"))
        assert image, f"{name}: no image"
        images.append(image)
    for image in images:
        assert is_pinned(image), f"{image} is not pinned to an explicit version"


def test_holdwatch_image_tag_is_the_package_version(services: dict[str, dict[str, Any]]) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for name, service in holdwatch_services(services).items():
        assert resolve_default(service["image"]) == f"holdwatch:{version}", name


def dockerfile_env() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_every_holdwatch_variable_is_a_settings_field(services: dict[str, dict[str, Any]]) -> None:
    fields = set(Settings.model_fields)
    names = {key for service in services.values() for key in environment(service)} | set(dockerfile_env())
    holdwatch = {name for name in names if name.startswith("HOLDWATCH_")}
    assert len(holdwatch) > 10
    unknown = {name for name in holdwatch if name.removeprefix("HOLDWATCH_").lower() not in fields}
    unknown -= {"HOLDWATCH_IMAGE_TAG", "HOLDWATCH_REPLAY_APP_ID"}  # compose-only, never in a container
    assert unknown == set()
    for name, service in services.items():
        for key in environment(service):
            assert key not in ("HOLDWATCH_IMAGE_TAG", "HOLDWATCH_REPLAY_APP_ID"), name


def test_compose_defaults_are_valid_settings(services: dict[str, dict[str, Any]]) -> None:
    """Each holdwatch container's env, with an empty shell, builds a valid Settings."""
    for name, service in holdwatch_services(services).items():
        values: dict[str, Any] = {}
        for key, raw in {**dockerfile_env(), **environment(service)}.items():
            value = resolve_default(raw)
            if key.startswith("HOLDWATCH_") and value is not None and "$" not in value:
                values[key.removeprefix("HOLDWATCH_").lower()] = value
        settings = Settings(**values)
        if "kafka_bootstrap" in values:
            assert settings.kafka_bootstrap == "kafka:9092", name
        assert settings.metrics_port == Settings.model_fields["metrics_port"].default, name


def test_secrets_are_only_passed_through(services: dict[str, dict[str, Any]]) -> None:
    secret = {"HOLDWATCH_KAFKA_SASL_PASSWORD", "HOLDWATCH_SLACK_TOKEN", "HOLDWATCH_BORDERCONNECT_API_KEY"}
    for name, service in services.items():
        env = environment(service)
        for key in secret & set(env):
            assert env[key] is None, f"{name}: {key} must come from the shell, not the file"
    assert not secret & set(dockerfile_env())


def test_ports_line_up(services: dict[str, dict[str, Any]]) -> None:
    metrics_port = int(dockerfile_env()["HOLDWATCH_METRICS_PORT"])
    assert metrics_port == Settings.model_fields["metrics_port"].default
    assert f"EXPOSE {metrics_port}" in DOCKERFILE.read_text(encoding="utf-8")
    scrape = load_yaml(PROMETHEUS_CONFIG)
    scraped_services = set()
    for job in scrape["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for dns_name in sd["names"]:
                assert dns_name in services, f"{job['job_name']} scrapes unknown service {dns_name}"
                service = services[dns_name]
                port = int(resolve_default(environment(service)["HOLDWATCH_METRICS_PORT"]) or 0)
                assert sd["port"] == port == metrics_port, dns_name
                assert port in container_ports(service), f"{dns_name} does not expose {port}"
                scraped_services.add(dns_name)
    long_running = {name for name, svc in holdwatch_services(services).items() if svc.get("restart") != "no"}
    assert long_running <= scraped_services, "a holdwatch process Prometheus does not scrape"
    host_ports = [host for service in services.values() for host, _ in published_ports(service)]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    listen = [arg for arg in services["prometheus"]["command"] if arg.startswith("--web.listen-address")]
    assert listen == ["--web.listen-address=:9090"] and 9090 in container_ports(services["prometheus"])


def test_scalable_services_have_no_fixed_name_or_host_port(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "replay-worker", "notifier"):
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], name
        assert "hostname" not in services[name], name


def test_kafka_bootstrap_matches_the_broker(services: dict[str, dict[str, Any]]) -> None:
    kafka = environment(services["kafka"])
    advertised = str(resolve_default(kafka["KAFKA_ADVERTISED_LISTENERS"])).split(",")
    bootstrap = resolve_default(environment(services["worker"])["HOLDWATCH_KAFKA_BOOTSTRAP"])
    assert f"PLAINTEXT://{bootstrap}" in advertised
    names = {listener.split("://")[0] for listener in str(kafka["KAFKA_LISTENERS"]).split(",")}
    mapped = {pair.split(":")[0] for pair in str(kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).split(",")}
    assert names == mapped
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft


def test_dependencies_exist_and_profiles_are_respected(services: dict[str, dict[str, Any]]) -> None:
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency, spec in dict(depends).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in conditions
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            if spec["condition"] == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", dependency
            if not service.get("profiles"):
                assert not services[dependency].get("profiles"), f"{name} needs optional {dependency}"


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shot jobs
        check = service.get("healthcheck")
        assert check and check["test"], f"{name} has no health check"


def test_worker_health_check_probes_the_metrics_port(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "notifier", "replay-worker"):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert "HOLDWATCH_METRICS_PORT" in probe and "/metrics" in probe, name


def test_roles_run_real_commands(services: dict[str, dict[str, Any]]) -> None:
    from streams.cli.main import build_parser

    parser = build_parser()
    for name, service in holdwatch_services(services).items():
        argv = [str(resolve_default(arg)) for arg in service["command"]]
        args = parser.parse_args(argv)
        assert callable(args.func), name
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert f'ENTRYPOINT ["{HOLDWATCH_COMMAND}"]' in text
    assert re.search(r"^USER (?!root|0\b)\S+", text, flags=re.MULTILINE), "the image must not run as root"


def test_prometheus_mounts_match_its_config(services: dict[str, dict[str, Any]]) -> None:
    mounts = dict(bind_mounts(services["prometheus"]))
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config_dir = Path("/etc/prometheus")
    rules_target = Path(mounts["./deploy/prometheus/rules"])
    for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert (config_dir / pattern).parent == rules_target
        assert list(PROMETHEUS_DIR.glob(pattern)) == [RULES_FILE]
