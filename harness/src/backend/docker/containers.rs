//! `--backend docker`: the run's containers — one per node, running the system's own
//! command with its program and data directory bind-mounted — and their logs.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use futures_util::StreamExt;

use super::engine::{api_error, block_on, connect, is_not_found, own_runtime};
use super::leftovers::{process_start, remove_stale, PID_LABEL, PID_START_LABEL};
use super::netns::nftables_usable;
use super::network::{create_network, ensure_on_link, FIRST_NODE_HOST};
use super::{
    compose::{admin_client, InContainer},
    DockerBackend, Node, PartitionVia, DEFAULT_IMAGE, NODE_LABEL, RUN_LABEL,
};
use crate::backend::{Backend, BackendError, LaunchSpec, NodeSpec};
use crate::system::{NodeCommand, NodeSite};

/// Where a node's data directory is mounted inside its container.
const CONTAINER_DATA: &str = "/data";

impl DockerBackend {
    /// `--backend docker`: cleans up after dead runs, creates the network and one
    /// container per node, and starts them all.
    pub fn create(launch: &LaunchSpec) -> Result<Self, BackendError> {
        let rt = own_runtime()?;
        let docker = block_on(&rt, connect())?;
        let image = std::env::var("FAULTLINE_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.into());
        Self::create_on(launch, rt, docker, image, None)
    }

    /// `create`, made either from the host (`site` = `None`) or from inside a container
    /// (the compose file's `test` service, see `compose.rs`).
    pub(super) fn create_on(
        launch: &LaunchSpec,
        rt: tokio::runtime::Runtime,
        docker: bollard::Docker,
        image: String,
        site: Option<InContainer>,
    ) -> Result<Self, BackendError> {
        let (count, seed) = (launch.count, launch.seed);
        block_on(&rt, async {
            docker.inspect_image(&image).await.map_err(|e| {
                if is_not_found(&e) {
                    BackendError::Unavailable(format!("the Docker image {image} does not exist; build it with scripts/docker-image.sh"))
                } else {
                    api_error(&format!("inspecting image {image}"), e)
                }
            })
        })?;
        block_on(&rt, remove_stale(&docker));

        let run_id = format!("{:08x}", rand::random::<u32>());
        let pid = std::process::id();
        let labels: HashMap<String, String> = [
            (RUN_LABEL.to_string(), run_id.clone()),
            (PID_LABEL.to_string(), pid.to_string()),
            (
                PID_START_LABEL.to_string(),
                process_start(pid).unwrap_or_default(),
            ),
        ]
        .into();
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("creating {}: {e}", launch.dir.display()))?;
        let log_dir = std::fs::canonicalize(&launch.dir)
            .map_err(|e| format!("resolving {}: {e}", launch.dir.display()))?;

        let network = format!("faultline-{run_id}");
        let bridge = format!("fl-{run_id}");
        let subnet = block_on(
            &rt,
            create_network(&docker, &network, &bridge, &run_id, &labels),
        );
        let mut backend = Self {
            rt: Some(rt),
            docker,
            http: admin_client(),
            admin_headers: launch.system.admin_headers(),
            specs: Vec::new(),
            nodes: Vec::new(),
            network: Some(network.clone()),
            seed,
            run_id: run_id.clone(),
            packet: Mutex::new(Vec::new()),
            cut: Mutex::new(None),
            partition_via: if nftables_usable() {
                PartitionVia::Nftables
            } else {
                PartitionVia::AdminApi
            },
            log_dir: log_dir.clone(),
            torn_down: AtomicBool::new(false),
            site,
        };
        // From here on, an error drops `backend`, which removes whatever was made.
        let subnet = match subnet {
            Ok(s) => s,
            Err(e) => {
                backend.network = None;
                return Err(e);
            }
        };
        if let Some(site) = &backend.site {
            // The harness joins the run's network (at .2, before any node takes an
            // address) to reach the nodes; teardown takes it off again.
            backend.join_network(&site.container, &network)?;
            if !backend.ns_reachable() {
                backend.partition_via = PartitionVia::AdminApi;
            }
        }
        for i in 0..count {
            let host = FIRST_NODE_HOST as usize + i;
            let addr = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], host as u8);
            let id = format!("n{}", i + 1);
            backend.specs.push(NodeSpec {
                id: id.clone(),
                client_addr: SocketAddr::new(addr.into(), launch.system.client_port()),
            });
            backend.nodes.push(Node {
                container: format!("faultline-{run_id}-{id}"),
                addr,
            });
        }
        let iface = backend.site.is_none().then_some(bridge.as_str());
        ensure_on_link(backend.nodes[0].addr, iface)?;
        let sites: Vec<NodeSite> = backend
            .specs
            .iter()
            .zip(&backend.nodes)
            .map(|(spec, node)| NodeSite {
                id: spec.id.clone(),
                ip: node.addr.into(),
                data_dir: CONTAINER_DATA.into(),
            })
            .collect();
        for i in 0..count {
            let command = launch.system.node_command(i, &sites);
            let body = backend.container_body(i, command, &log_dir, &image, &network, &labels)?;
            let name = backend.nodes[i].container.clone();
            backend.block(async {
                let opts = CreateContainerOptionsBuilder::new().name(&name).build();
                backend
                    .docker
                    .create_container(Some(opts), body)
                    .await
                    .map_err(|e| api_error(&format!("creating container {name}"), e))
            })?;
        }
        for i in 0..count {
            backend.start(i)?;
        }
        Ok(backend)
    }

    /// The container for node `i`: the system's command, its program bind-mounted
    /// read-only at `/sut/<file name>` and its data directory (`nodes/<id>.data/`) at
    /// `/data`, at the node's pinned address on the run's network.
    pub(super) fn container_body(
        &self,
        i: usize,
        command: NodeCommand,
        log_dir: &Path,
        image: &str,
        network: &str,
        labels: &HashMap<String, String>,
    ) -> Result<ContainerCreateBody, BackendError> {
        let spec = &self.specs[i];
        let data = log_dir.join(format!("{}.data", spec.id));
        std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        let program = std::fs::canonicalize(&command.program)
            .map_err(|e| format!("resolving {}: {e}", command.program.display()))?;
        let (inside, binds) = match &self.site {
            // From a container: the nodes run the same image, so the program is already
            // at the same path in theirs; the data directory is named by its host path.
            Some(site) => (
                program.display().to_string(),
                vec![format!(
                    "{}:{CONTAINER_DATA}",
                    site.host_path(&data)?.display()
                )],
            ),
            None => {
                let file_name = program
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "node".into());
                let inside = format!("/sut/{file_name}");
                let binds = vec![
                    format!("{}:{CONTAINER_DATA}", data.display()),
                    format!("{}:{inside}:ro", program.display()),
                ];
                (inside, binds)
            }
        };
        let mut labels = labels.clone();
        labels.insert(NODE_LABEL.into(), spec.id.clone());
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec![inside.clone()]),
            cmd: Some(command.args),
            env: Some(
                command
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            hostname: Some(spec.id.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(binds),
                network_mode: Some(network.to_string()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(
                    [(
                        network.to_string(),
                        EndpointSettings {
                            ipam_config: Some(EndpointIpamConfig {
                                ipv4_address: Some(self.nodes[i].addr.to_string()),
                                ..Default::default()
                            }),
                            aliases: Some(vec![spec.id.clone()]),
                            ..Default::default()
                        },
                    )]
                    .into(),
                ),
            }),
            ..Default::default()
        })
    }

    /// Writes each container's output to `nodes/<id>.log` (all of it, across restarts).
    pub(super) fn save_logs(&self) {
        for (i, spec) in self.specs.iter().enumerate() {
            let name = self.nodes[i].container.clone();
            let bytes = self.block(async {
                let opts = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
                let mut stream = self.docker.logs(&name, Some(opts));
                let mut out = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(10);
                while let Ok(Some(chunk)) =
                    tokio::time::timeout(Duration::from_secs(5), stream.next()).await
                {
                    match chunk {
                        Ok(c) => out.extend_from_slice(&c.into_bytes()),
                        Err(e) => {
                            out.extend_from_slice(
                                format!("\n[faultline: reading logs: {e}]\n").as_bytes(),
                            );
                            break;
                        }
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                }
                out
            });
            let path = self.log_dir.join(format!("{}.log", spec.id));
            if let Err(e) = std::fs::write(&path, bytes) {
                eprintln!("faultline run: writing {}: {e}", path.display());
            }
        }
    }
}
