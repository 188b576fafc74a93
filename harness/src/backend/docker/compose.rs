//! `--backend compose`: the harness runs as the compose file's `test` service and makes
//! the cluster itself, from inside that container — the same containers, network and
//! faults as `--backend docker`, with three differences: the nodes run the harness's own
//! image (so the program is already in them), bind-mount paths are translated to the
//! host's through the harness container's own mounts, and the harness joins the run's
//! network to reach the nodes. With `pid: host` and NET_ADMIN + SYS_ADMIN (see
//! docker-compose.yml) it sees the nodes' host PIDs and enters their network namespaces
//! for nftables partitions and the NFQUEUE packet delayer; without them it falls back,
//! announced, to the nodes' `/admin/isolate` and refuses packet faults.
//!
//! Also here: the nodes' admin API (`/admin/isolate`, the fallback partition route).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::engine::{api_error, block_on, connect, own_runtime};
use super::{DockerBackend, DEFAULT_IMAGE};
use crate::backend::{BackendError, LaunchSpec};

/// The container the harness runs in, and how its paths look on the host.
#[derive(Debug, Clone)]
pub(crate) struct InContainer {
    /// The harness's own container id.
    pub(crate) container: String,
    /// (path inside, path on the host) of each bind mount, longest inside path first.
    mounts: Vec<(PathBuf, PathBuf)>,
}

impl InContainer {
    /// Where `inside` (an absolute path in this container) is on the host; an error when
    /// it is not under a bind mount (the daemon could not mount it into a node).
    pub(crate) fn host_path(&self, inside: &Path) -> Result<PathBuf, BackendError> {
        host_path(&self.mounts, inside).ok_or_else(|| {
            BackendError::Unavailable(format!(
                "{} is not on a bind mount of the harness's container; mount the results folder (e.g. ./store:/store)",
                inside.display()
            ))
        })
    }
}

fn host_path(mounts: &[(PathBuf, PathBuf)], inside: &Path) -> Option<PathBuf> {
    mounts.iter().find_map(|(dest, src)| {
        inside.strip_prefix(dest).ok().map(|rest| {
            if rest.as_os_str().is_empty() {
                src.clone()
            } else {
                src.join(rest)
            }
        })
    })
}

impl DockerBackend {
    /// `--backend compose`: finds the container this harness runs in (its hostname is its
    /// id), then makes the cluster as `--backend docker` does, from in there.
    pub fn create_in_compose(launch: &LaunchSpec) -> Result<Self, BackendError> {
        let rt = own_runtime()?;
        let docker = block_on(&rt, connect())?;
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let host = host.trim().to_string();
        let me = block_on(&rt, docker.inspect_container(&host, None)).map_err(|e| {
            BackendError::Unavailable(format!(
                "--backend compose runs inside the compose file's test service (`docker compose run --rm test`); \
                 this process is not in a container the daemon knows ({host}: {e}); use --backend docker on a host"
            ))
        })?;
        let container = me.id.clone().unwrap_or(host);
        let image = std::env::var("FAULTLINE_IMAGE")
            .ok()
            .or_else(|| me.config.as_ref().and_then(|c| c.image.clone()))
            .unwrap_or_else(|| DEFAULT_IMAGE.into());
        let mut mounts: Vec<(PathBuf, PathBuf)> = me
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| Some((PathBuf::from(m.destination?), PathBuf::from(m.source?))))
            .collect();
        mounts.sort_by_key(|(dest, _)| std::cmp::Reverse(dest.as_os_str().len()));
        Self::create_on(
            launch,
            rt,
            docker,
            image,
            Some(InContainer { container, mounts }),
        )
    }

    /// Joins `network` (the harness's own container), so the nodes are reachable.
    pub(super) fn join_network(&self, container: &str, network: &str) -> Result<(), BackendError> {
        let req = bollard::models::NetworkConnectRequest {
            container: container.to_string(),
            endpoint_config: None,
        };
        self.block(self.docker.connect_network(network, req))
            .map_err(|e| api_error(&format!("joining the test network {network}"), e))
    }

    /// Whether this process can enter other containers' network namespaces: it needs
    /// their host PIDs (`pid: host`) and the rights to enter (root, SYS_ADMIN, NET_ADMIN,
    /// nft and nsenter in the image).
    pub(super) fn ns_reachable(&self) -> bool {
        super::netns::nftables_usable() && sees_host_pids()
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

/// Set by docker-compose.yml's test service: on its way out the harness leaves the
/// project's own network and removes it (see [`leave_compose_network`]).
pub const LEAVE_NETWORK_ENV: &str = "FAULTLINE_LEAVE_COMPOSE_NETWORK";

/// Disconnects this container (the compose file's test service) from its compose
/// project's networks and removes each one no other container uses, so a finished —
/// or refused, or failed — `docker compose run --rm test` leaves no network until
/// `down` (compose makes it again on the next run). Best effort and silent: a network
/// another run of the project still uses stays, for that run to remove. A no-op outside
/// the test service (no [`LEAVE_NETWORK_ENV`], no container the daemon knows).
pub fn leave_compose_network() {
    if std::env::var_os(LEAVE_NETWORK_ENV).is_none_or(|v| v.is_empty()) {
        return;
    }
    let Ok(rt) = own_runtime() else { return };
    block_on(&rt, async {
        let Ok(docker) = connect().await else { return };
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let Ok(me) = docker.inspect_container(host.trim(), None).await else {
            return;
        };
        let label = "com.docker.compose.project";
        let Some(project) = me
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(label).cloned())
        else {
            return;
        };
        let id = me.id.clone().unwrap_or_default();
        let networks: Vec<String> = me
            .network_settings
            .and_then(|n| n.networks)
            .map(|n| n.into_keys().collect())
            .unwrap_or_default();
        for net in networks {
            let Ok(info) = docker.inspect_network(&net, None).await else {
                continue;
            };
            if info.labels.as_ref().and_then(|l| l.get(label)) != Some(&project) {
                continue;
            }
            let req = bollard::models::NetworkDisconnectRequest {
                container: id.clone(),
                force: Some(true),
            };
            if docker.disconnect_network(&net, req).await.is_ok() {
                // Refused while another container of the project is attached: it stays.
                let _ = docker.remove_network(&net).await;
            }
        }
    });
    rt.shutdown_background();
}

pub(super) fn admin_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("a plain-HTTP reqwest client always builds")
}

/// Whether this process sees the host's PIDs (`pid: host`), which the Docker API reports
/// for the nodes: in a PID namespace of its own, PID 1 is this harness itself.
pub(super) fn sees_host_pids() -> bool {
    if std::process::id() == 1 {
        return false;
    }
    let init = std::fs::read("/proc/1/cmdline").unwrap_or_default();
    let first = init.split(|b| *b == 0).next().unwrap_or_default();
    let me = std::env::current_exe().unwrap_or_default();
    first != me.as_os_str().as_encoded_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_map_to_the_host_through_the_longest_mount() {
        let mounts = vec![
            (PathBuf::from("/store/x"), PathBuf::from("/elsewhere")),
            (
                PathBuf::from("/store"),
                PathBuf::from("/home/u/clone/store"),
            ),
        ];
        assert_eq!(
            host_path(&mounts, Path::new("/store/t/1/nodes/n1.data")),
            Some(PathBuf::from("/home/u/clone/store/t/1/nodes/n1.data"))
        );
        assert_eq!(
            host_path(&mounts, Path::new("/store/x/a")),
            Some(PathBuf::from("/elsewhere/a"))
        );
        assert_eq!(host_path(&mounts, Path::new("/storex")), None);
        assert_eq!(host_path(&mounts, Path::new("/tmp")), None);
    }
}
