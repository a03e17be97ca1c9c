//! Kubernetes manifests for a bftbench cluster, and the kind cluster to try
//! them on. The shape follows BFT-DEP's deployment in the idiom of today's
//! Kubernetes:
//!
//! - a headless Service gives each replica a stable name
//!   (`<name>-<i>.<name>.<namespace>.svc.cluster.local`) that the cluster file
//!   lists; it publishes pods before they are ready, since replicas must
//!   reach each other to become ready;
//! - a StatefulSet starts the replicas in parallel, each on its own node
//!   (required anti-affinity on the hostname: BFT-DEP's hostPort trick), and
//!   gives each its ordinal through the `apps.kubernetes.io/pod-index` label;
//! - with separated execution, the KV server runs as a sidecar in the
//!   replica's pod (BFT-DEP's co-located application replica);
//! - the cluster file is a ConfigMap, the keys a Secret;
//! - a Job runs one client (a matrix cell's load) and prints its JSON.

use super::yaml;
use bft_net::cluster::{keygen, KeygenOptions};
use serde_json::{json, Value};
use std::path::Path;

pub const REPLICA_PORT: u16 = 7000;
pub const KV_PORT: u16 = 7100;
/// How long replicas and the client wait for the others' names to resolve
/// and their ports to open (pods start in any order, images load slowly).
pub const START_WAIT: &str = "120s";
/// Replicas a render may ask for (one node each).
pub const REPLICAS_MAX: usize = 1_000;

#[derive(Debug, Clone)]
pub struct K8sSpec {
    /// Prefix of every object (and the Service's name).
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub protocol: String,
    pub replicas: usize,
    pub remote_execution: bool,
    /// Extra replica flags (batch, pipeline, …).
    pub replica_flags: Vec<String>,
    /// The client Job: logical clients, workload and timing.
    pub clients: usize,
    pub workload: String,
    pub duration: String,
    pub warmup: String,
    /// A YCSB property file's text, shipped in the ConfigMap and used instead
    /// of `workload` (how a matrix cell passes its exact properties).
    pub workload_file: Option<String>,
    /// More client flags (`--target`, `--signed`).
    pub client_flags: Vec<String>,
    /// The client prints its whole report as one line (for the harness)
    /// instead of the JSON summary.
    pub report_line: bool,
    /// Deterministic keys (tests only).
    pub seed: Option<u64>,
}

impl K8sSpec {
    fn labels(&self, component: &str) -> Value {
        json!({
            "app.kubernetes.io/name": "bftbench",
            "app.kubernetes.io/instance": self.name,
            "app.kubernetes.io/component": component,
        })
    }

    fn metadata(&self, name: &str, component: &str) -> Value {
        json!({"name": name, "namespace": self.namespace, "labels": self.labels(component)})
    }

    /// Replica i's address in the cluster file.
    fn replica_addr(&self, i: usize) -> String {
        format!(
            "{n}-{i}.{n}.{ns}.svc.cluster.local:{REPLICA_PORT}",
            n = self.name,
            ns = self.namespace
        )
    }

    fn check(&self) -> anyhow::Result<()> {
        let dns_label = |s: &str| {
            !s.is_empty()
                && s.len() <= 40
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !s.ends_with('-')
        };
        if !dns_label(&self.name) || !dns_label(&self.namespace) {
            anyhow::bail!(
                "--name `{}` / --namespace `{}`: use lowercase letters, digits and `-` (at most 40)",
                self.name,
                self.namespace
            );
        }
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            anyhow::bail!("--replicas {}: expected 1 to {REPLICAS_MAX}", self.replicas);
        }
        if self.protocol == "bare" && self.replicas != 1 {
            anyhow::bail!("bare runs one server: use --replicas 1");
        }
        Ok(())
    }
}

/// Keys and cluster file for the spec's replica names, from a scratch folder.
fn make_keys(s: &K8sSpec, scratch: &Path) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let ko = KeygenOptions {
        addrs: (0..s.replicas).map(|i| s.replica_addr(i)).collect(),
        protocol: s.protocol.clone(),
        clients: s.clients,
        first_client_id: super::FIRST_CLIENT,
        seed: s.seed,
    };
    keygen(scratch, &ko)?.check(&scratch.join("cluster.toml"))?;
    let cluster = std::fs::read_to_string(scratch.join("cluster.toml"))?;
    let mut keys = Vec::new();
    for i in 0..s.replicas {
        let f = format!("replica-{i}.key");
        keys.push((f.clone(), std::fs::read_to_string(scratch.join(&f))?));
    }
    keys.push((
        "clients.key".into(),
        std::fs::read_to_string(scratch.join("clients.key"))?,
    ));
    Ok((cluster, keys))
}

fn config_volumes(s: &K8sSpec) -> Value {
    json!([
        {"name": "cluster", "configMap": {"name": format!("{}-cluster", s.name)}},
        {"name": "keys", "secret": {"secretName": format!("{}-keys", s.name), "defaultMode": 0o400}},
    ])
}

fn config_mounts() -> Value {
    json!([
        {"name": "cluster", "mountPath": "/etc/bftbench", "readOnly": true},
        {"name": "keys", "mountPath": "/etc/bftbench-keys", "readOnly": true},
    ])
}

/// The replica's own volume: its first-launch mark and, on disk, its log. A
/// claim per pod outlives restarts and rescheduling, so a restarted replica
/// knows it ran before (and rejoins) instead of starting from genesis.
const DATA_DIR: &str = "/var/lib/bftbench";

fn replica_mounts() -> Value {
    let mut m = config_mounts();
    if let Some(v) = m.as_array_mut() {
        v.push(json!({"name": "data", "mountPath": DATA_DIR}));
    }
    m
}

fn data_claim(s: &K8sSpec) -> Value {
    json!({
        "metadata": {"name": "data", "labels": s.labels("replica")},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    })
}

fn tcp_probe(port: u16) -> Value {
    json!({"tcpSocket": {"port": port}, "periodSeconds": 2, "failureThreshold": 3})
}

fn replica_container(s: &K8sSpec) -> Value {
    let mut args: Vec<String> = [
        "replica",
        "--cluster",
        "/etc/bftbench/cluster.toml",
        "--id",
        "$(POD_INDEX)",
        "--key",
        "/etc/bftbench-keys/replica-$(POD_INDEX).key",
        "--resolve-wait",
        START_WAIT,
        "--data-dir",
        DATA_DIR,
        "--execution",
    ]
    .map(String::from)
    .into();
    args.push(if s.remote_execution {
        format!("remote=127.0.0.1:{KV_PORT}")
    } else {
        "embedded".into()
    });
    args.extend(s.replica_flags.iter().cloned());
    json!({
        "name": "replica",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": [{
            "name": "POD_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
        }],
        "ports": [{"name": "replica", "containerPort": REPLICA_PORT}],
        "readinessProbe": tcp_probe(REPLICA_PORT),
        "volumeMounts": replica_mounts(),
        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
    })
}

fn kv_container(s: &K8sSpec) -> Value {
    json!({
        "name": "kv-server",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        // No readiness probe: the kubelet probes the pod IP, and the KV
        // server listens on loopback only (its replica is its one client).
        "args": ["kv-server", "--listen", format!("127.0.0.1:{KV_PORT}")],
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
    })
}

/// `config_digest` is a hash of the cluster file and keys: as a pod
/// annotation it makes a re-apply with new keys restart the replicas, which
/// would otherwise keep the old ones.
fn statefulset(s: &K8sSpec, config_digest: &str) -> Value {
    let mut containers = vec![replica_container(s)];
    if s.remote_execution {
        containers.push(kv_container(s));
    }
    let selector = json!({
        "app.kubernetes.io/instance": s.name,
        "app.kubernetes.io/component": "replica",
    });
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": s.metadata(&s.name, "replica"),
        "spec": {
            "serviceName": s.name,
            "replicas": s.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector},
            "volumeClaimTemplates": [data_claim(s)],
            // A deleted deployment takes its claims: a later one is a new cluster.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {
                "metadata": {
                    "labels": s.labels("replica"),
                    "annotations": {"bftbench.dev/config-sha256": config_digest},
                },
                "spec": {
                    "affinity": {"podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{
                            "labelSelector": {"matchLabels": selector},
                            "topologyKey": "kubernetes.io/hostname",
                        }],
                    }},
                    "terminationGracePeriodSeconds": 5,
                    "containers": containers,
                    "volumes": config_volumes(s),
                },
            },
        },
    })
}

fn client_job(s: &K8sSpec) -> Value {
    let workload = match s.workload_file {
        Some(_) => "/etc/bftbench/workload.properties".to_string(),
        None => s.workload.clone(),
    };
    let mut args: Vec<String> = [
        "client",
        "--cluster",
        "/etc/bftbench/cluster.toml",
        "--keys",
        "/etc/bftbench-keys/clients.key",
        "--resolve-wait",
        START_WAIT,
        "--connect-wait",
        START_WAIT,
        "--workload",
        &workload,
        "--threads",
        &s.clients.to_string(),
        "--duration",
        &s.duration,
        "--warmup",
        &s.warmup,
        "--load-first",
        if s.report_line {
            "--report-line"
        } else {
            "--json"
        },
    ]
    .map(String::from)
    .into();
    args.extend(s.client_flags.iter().cloned());
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": s.metadata(&format!("{}-client", s.name), "client"),
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": s.labels("client")},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "client",
                        "image": s.image,
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "volumeMounts": config_mounts(),
                        "resources": {"requests": {"cpu": "1", "memory": "256Mi"}},
                    }],
                    "volumes": config_volumes(s),
                },
            },
        },
    })
}

fn config_data(s: &K8sSpec, cluster: String) -> Value {
    let mut data = serde_json::Map::new();
    data.insert("cluster.toml".into(), Value::String(cluster));
    if let Some(w) = &s.workload_file {
        data.insert("workload.properties".into(), Value::String(w.clone()));
    }
    Value::Object(data)
}

/// Every object of the deployment, in apply order.
pub fn manifests(s: &K8sSpec, scratch: &Path) -> anyhow::Result<Vec<Value>> {
    s.check()?;
    let (cluster, keys) = make_keys(s, scratch)?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, cluster.as_bytes());
    for (_, k) in &keys {
        sha2::Digest::update(&mut hasher, k.as_bytes());
    }
    let digest = bft_net::cluster::hex(&sha2::Digest::finalize(hasher));
    let key_data: serde_json::Map<String, Value> = keys
        .into_iter()
        .map(|(f, k)| (f, Value::String(k.trim().to_string())))
        .collect();
    Ok(vec![
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": s.metadata(&format!("{}-cluster", s.name), "config"),
            "data": config_data(s, cluster),
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": s.metadata(&format!("{}-keys", s.name), "config"),
            "type": "Opaque",
            "stringData": key_data,
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": s.metadata(&s.name, "replica"),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": true,
                "selector": {
                    "app.kubernetes.io/instance": s.name,
                    "app.kubernetes.io/component": "replica",
                },
                "ports": [{"name": "replica", "port": REPLICA_PORT, "targetPort": REPLICA_PORT}],
            },
        }),
        statefulset(s, &digest),
        client_job(s),
    ])
}

/// A new folder only this user can enter, for keys on their way into YAML
/// (created, never reused: a folder someone else made first is an error).
fn private_dir() -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("bftbench-k8s-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// The manifests as one multi-document YAML stream.
pub fn render(s: &K8sSpec) -> anyhow::Result<String> {
    let scratch = private_dir()?;
    let docs = manifests(s, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(format!(
        "# bftbench on Kubernetes: {} {} replica(s), execution {} (bftbench deploy k8s render)\n{}",
        s.replicas,
        s.protocol,
        if s.remote_execution {
            "remote"
        } else {
            "embedded"
        },
        yaml::documents(&docs?)
    ))
}

/// A kind cluster: one control plane and `workers` workers (required
/// anti-affinity puts each replica on its own worker, so workers ≥ n).
pub fn kind_config(workers: usize) -> String {
    let mut nodes = vec![json!({"role": "control-plane"})];
    nodes.extend((0..workers).map(|_| json!({"role": "worker"})));
    format!(
        "# kind cluster for bftbench: one control plane, {workers} workers \
         (bftbench deploy k8s kind-config --workers {workers})\n{}",
        yaml::document(&json!({
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "kind": "Cluster",
            "nodes": nodes,
        }))
    )
}

/// `kubectl delete` arguments for everything a render with `name` created.
pub fn delete_args(name: &str, namespace: &str) -> Vec<String> {
    vec![
        "delete".into(),
        "--namespace".into(),
        namespace.into(),
        "--ignore-not-found".into(),
        "statefulset,service,job,configmap,secret,pod,persistentvolumeclaim".into(),
        "-l".into(),
        format!("app.kubernetes.io/name=bftbench,app.kubernetes.io/instance={name}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(remote: bool) -> K8sSpec {
        K8sSpec {
            name: "bft".into(),
            namespace: "bench".into(),
            image: "bftbench:local".into(),
            protocol: "bft".into(),
            replicas: 4,
            remote_execution: remote,
            replica_flags: vec!["--batch".into(), "100".into()],
            clients: 8,
            workload: "a".into(),
            duration: "30s".into(),
            warmup: "5s".into(),
            workload_file: None,
            client_flags: Vec::new(),
            report_line: false,
            seed: Some(1),
        }
    }

    fn docs(remote: bool) -> Vec<Value> {
        let dir =
            std::env::temp_dir().join(format!("bftbench-k8s-test-{}-{remote}", std::process::id()));
        let d = manifests(&spec(remote), &dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        d
    }

    #[test]
    fn the_statefulset_spreads_replicas_and_names_them_in_the_cluster_file() {
        let d = docs(false);
        let kinds: Vec<&str> = d.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["ConfigMap", "Secret", "Service", "StatefulSet", "Job"]
        );
        let cluster = d[0]["data"]["cluster.toml"].as_str().unwrap();
        assert!(
            cluster.contains("bft-3.bft.bench.svc.cluster.local:7000"),
            "{cluster}"
        );
        assert_eq!(
            d[1]["stringData"].as_object().unwrap().len(),
            5,
            "4 replica keys + clients"
        );
        assert_eq!(d[2]["spec"]["clusterIP"], "None");
        assert_eq!(d[2]["spec"]["publishNotReadyAddresses"], true);
        let sts = &d[3]["spec"];
        assert_eq!(sts["podManagementPolicy"], "Parallel");
        assert_eq!(sts["replicas"], 4);
        let pod = &sts["template"]["spec"];
        let anti = &pod["affinity"]["podAntiAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(anti["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
        let args = pod["containers"][0]["args"].to_string();
        assert!(
            args.contains("\"embedded\"") && args.contains("\"--batch\",\"100\""),
            "{args}"
        );
        assert_eq!(d[4]["spec"]["template"]["spec"]["restartPolicy"], "Never");
        let digest = &sts["template"]["metadata"]["annotations"]["bftbench.dev/config-sha256"];
        assert_eq!(digest.as_str().map(str::len), Some(64), "{digest}");
    }

    /// A restarted or rescheduled pod must find its first-launch mark (and
    /// log): the data folder is a claim per pod, deleted with the deployment.
    #[test]
    fn each_replica_keeps_its_data_folder_on_a_claim_of_its_own() {
        let d = docs(false);
        let sts = &d[3]["spec"];
        let claim = &sts["volumeClaimTemplates"][0];
        assert_eq!(claim["metadata"]["name"], "data");
        assert_eq!(
            claim["metadata"]["labels"]["app.kubernetes.io/instance"],
            "bft"
        );
        assert_eq!(
            sts["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
            "Delete"
        );
        let c = &sts["template"]["spec"]["containers"][0];
        let args = c["args"].to_string();
        assert!(
            args.contains(&format!("\"--data-dir\",\"{DATA_DIR}\"")),
            "{args}"
        );
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m["name"] == "data" && m["mountPath"] == DATA_DIR));
        assert!(delete_args("bft", "bench")
            .iter()
            .any(|a| a.contains("persistentvolumeclaim")));
    }

    #[test]
    fn remote_execution_adds_the_kv_server_sidecar() {
        let d = docs(true);
        let containers = d[3]["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[1]["name"], "kv-server");
        assert!(containers[0]["args"]
            .to_string()
            .contains("remote=127.0.0.1:7100"));
    }

    #[test]
    fn bad_names_and_counts_are_refused() {
        let dir = std::env::temp_dir().join(format!("bftbench-k8s-bad-{}", std::process::id()));
        let mut s = spec(false);
        s.name = "Bad_Name".into();
        assert!(manifests(&s, &dir).is_err());
        let mut s = spec(false);
        s.replicas = REPLICAS_MAX + 1;
        assert!(format!("{:#}", manifests(&s, &dir).unwrap_err()).contains("expected 1 to"));
        let mut s = spec(false);
        s.replicas = 5;
        let err = manifests(&s, &dir).unwrap_err();
        assert!(format!("{err:#}").contains("3f+1"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_kind_config_has_one_control_plane_and_the_workers() {
        let k = kind_config(4);
        assert_eq!(k.matches("role: \"worker\"").count(), 4);
        assert_eq!(k.matches("role: \"control-plane\"").count(), 1);
        assert!(k.contains("apiVersion: \"kind.x-k8s.io/v1alpha4\""));
    }

    #[test]
    fn the_checked_in_kind_config_is_the_rendered_one() {
        let file = include_str!("../../../infra/kind/cluster.yaml");
        assert_eq!(
            file,
            kind_config(4),
            "regenerate: bftbench deploy k8s kind-config --workers 4"
        );
    }
}
