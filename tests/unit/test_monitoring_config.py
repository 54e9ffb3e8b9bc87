"""The Prometheus Operator's generated configuration, made to run on the host: only the rule
files' folder and the Kubernetes discovery credentials change; a file only a pod has is an
error, never dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from modelship_dev.monitoring import local_config

GENERATED = """
global:
  scrape_interval: 1s
  external_labels:
    prometheus: ns/modelship
    prometheus_replica: $(POD_NAME)
rule_files:
- /etc/prometheus/rules/prometheus-modelship-rulefiles-0/*.yaml
scrape_configs:
- job_name: podMonitor/ns/modelship-triton/0
  kubernetes_sd_configs:
  - role: pod
    namespaces: {names: [ns]}
  relabel_configs:
  - {source_labels: [__meta_kubernetes_pod_container_port_name], regex: metrics, action: keep}
alerting:
  alertmanagers:
  - static_configs: [{targets: ["127.0.0.1:9093"]}]
"""


def test_rules_and_discovery_point_to_the_host(tmp_path: Path) -> None:
    config = local_config(GENERATED, tmp_path / "rules", tmp_path / "kubeconfig",
                          {"POD_NAME": "prometheus-modelship-0"})
    assert config["rule_files"] == [
        f"{tmp_path}/rules/prometheus-modelship-rulefiles-0/*.yaml"]
    (sd,) = config["scrape_configs"][0]["kubernetes_sd_configs"]
    assert sd == {"role": "pod", "namespaces": {"names": ["ns"]},
                  "kubeconfig_file": str(tmp_path / "kubeconfig")}
    assert config["global"]["external_labels"]["prometheus_replica"] == "prometheus-modelship-0"
    # Everything else as the operator wrote it.
    original = yaml.safe_load(GENERATED)
    assert config["alerting"] == original["alerting"]
    assert config["scrape_configs"][0]["relabel_configs"] == \
        original["scrape_configs"][0]["relabel_configs"]


def test_a_file_only_a_pod_has_is_an_error(tmp_path: Path) -> None:
    generated = GENERATED + """
  - tls_config: {ca_file: /etc/prometheus/certs/secret_ns_am-tls_ca.crt}
    static_configs: [{targets: ["am:9093"]}]
"""
    ca = "/etc/prometheus/certs/secret_ns_am-tls_ca.crt"
    with pytest.raises(ValueError, match=re.escape(ca)):
        local_config(generated, tmp_path, tmp_path / "kubeconfig", {"POD_NAME": "p"})


def test_an_unknown_environment_variable_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\$\(POD_NAME\)"):
        local_config(GENERATED, tmp_path, tmp_path / "kubeconfig", {})
