//! `--backend compose`: attaching to the node containers a docker-compose.yml started,
//! and the nodes' own `/admin/isolate` / `/admin/heal` as the partition route there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use bollard::Docker;

use super::engine::{api_error, block_on, connect, own_runtime};
use super::leftovers::all_containers;
use super::network::ensure_on_link;
use super::{DockerBackend, Node, PartitionVia, NODE_LABEL};
use crate::backend::{BackendError, LaunchSpec, NodeSpec};

impl DockerBackend {
    /// `--backend compose`: finds the node containers of the compose project this
    /// harness belongs to (`COMPOSE_PROJECT_NAME`, or the project of the container the
    /// harness runs in) and checks they run what the plan says.
    pub fn attach_compose(launch: &LaunchSpec) -> Result<Self, BackendError> {
        let count = launch.count;
        let rt = own_runtime()?;
        let docker = block_on(&rt, connect())?;
        let found = block_on(&rt, find_compose_nodes(&docker))?;
        if found.len() != count {
            return Err(BackendError::Unsupported(format!(
                "--nodes {count}, but the compose project has {} containers labelled {NODE_LABEL} ({})",
                found.len(),
                found.iter().map(|(id, ..)| id.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut specs = Vec::new();
        let mut nodes = Vec::new();
        for (id, container, env) in found {
            let listen = env.get("FAULTLINE_LISTEN").ok_or_else(|| {
                format!("compose node {id}: FAULTLINE_LISTEN is not set; give it the node's pinned address, e.g. 10.213.0.11:7000")
            })?;
            let addr: SocketAddr = listen.parse().map_err(|_| {
                format!("compose node {id}: FAULTLINE_LISTEN={listen} is not IP:PORT (pin the address; a name is lost when the container is killed)")
            })?;
            let std::net::IpAddr::V4(v4) = addr.ip() else {
                return Err(BackendError::Unsupported(format!(
                    "compose node {id}: FAULTLINE_LISTEN={listen} must be an IPv4 address"
                )));
            };
            // Compose started the nodes: they must run what this run's system describes.
            launch.system.check_external(&id, &env)?;
            ensure_on_link(v4, None)?;
            specs.push(NodeSpec {
                id,
                client_addr: addr,
            });
            nodes.push(Node {
                container,
                addr: v4,
            });
        }
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("creating {}: {e}", launch.dir.display()))?;
        Ok(Self {
            rt: Some(rt),
            docker,
            http: admin_client(),
            admin_headers: launch.system.admin_headers(),
            specs,
            nodes,
            network: None,
            partition_via: PartitionVia::AdminApi,
            run_id: String::new(),
            seed: 0,
            packet: Mutex::new(Vec::new()),
            log_dir: launch.dir.clone(),
            torn_down: AtomicBool::new(false),
        })
    }

    /// POSTs to node `i`'s admin API; a node that is down or paused cannot answer, and
    /// is reported as an error naming it.
    pub(super) fn admin(
        &self,
        i: usize,
        path: &str,
        body: serde_json::Value,
    ) -> Result<(), BackendError> {
        let url = format!("http://{}{path}", self.specs[i].client_addr);
        let http = self.http.clone();
        let id = self.specs[i].id.clone();
        let headers = self.admin_headers.clone();
        self.block(async move {
            let mut request = http.post(&url).json(&body);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let resp = request
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| BackendError::Failed(format!("{path} on {id}: {e}")))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(BackendError::Failed(format!(
                    "{path} on {id}: HTTP {}: {}",
                    resp.status(),
                    resp.text().await.unwrap_or_default()
                )))
            }
        })
    }
}

pub(super) fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("a plain-HTTP reqwest client always builds")
}

/// The compose project's node containers: (node id, container id, environment), sorted
/// by node id.
pub(super) async fn find_compose_nodes(
    docker: &Docker,
) -> Result<Vec<(String, String, HashMap<String, String>)>, BackendError> {
    let project = match std::env::var("COMPOSE_PROJECT_NAME") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            // Inside a container the hostname is the container's id prefix by default.
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            let me = docker.inspect_container(host, None).await.map_err(|e| {
                format!(
                    "--backend compose: cannot tell which compose project this is (not in a compose container: {e}); \
                     set COMPOSE_PROJECT_NAME"
                )
            })?;
            me.config
                .and_then(|c| c.labels)
                .and_then(|l| l.get("com.docker.compose.project").cloned())
                .ok_or_else(|| {
                    "--backend compose: this container has no com.docker.compose.project label; set COMPOSE_PROJECT_NAME".to_string()
                })?
        }
    };
    let filter: HashMap<String, Vec<String>> = [(
        "label".to_string(),
        vec![
            format!("com.docker.compose.project={project}"),
            NODE_LABEL.to_string(),
        ],
    )]
    .into();
    let list = all_containers(docker, &filter)
        .await
        .map_err(|e| api_error("listing the compose project's containers", e))?;
    let mut nodes = Vec::new();
    for c in list {
        let (Some(id), Some(labels)) = (c.id, c.labels) else {
            continue;
        };
        let Some(node) = labels.get(NODE_LABEL).cloned() else {
            continue;
        };
        let info = docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| api_error(&format!("inspecting compose node {node}"), e))?;
        let env = info
            .config
            .and_then(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        nodes.push((node, id, env));
    }
    if nodes.is_empty() {
        return Err(format!(
            "--backend compose: compose project {project} has no containers labelled {NODE_LABEL}; \
             start the nodes first (docker-compose up)"
        )
        .into());
    }
    nodes.sort_by_key(|n| natural_key(&n.0));
    Ok(nodes)
}

/// `n2` before `n10`.
pub(super) fn natural_key(id: &str) -> (String, u64) {
    let digits = id.trim_start_matches(|c: char| !c.is_ascii_digit());
    let prefix = &id[..id.len() - digits.len()];
    (prefix.to_string(), digits.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_of_node_ids() {
        let mut ids = vec!["n10", "n2", "n1"];
        ids.sort_by_key(|id| natural_key(id));
        assert_eq!(ids, ["n1", "n2", "n10"]);
    }
}
