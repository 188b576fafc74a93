//! faultline's own replica nodes as the system under test: `faultline node` processes in
//! `--mode`, with `--bug`s, the workload's node flags and the cluster secret.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use nodes::{Bug, Mode};
use workloads::{Client, Completion, Op};

use super::{Cluster, ControlError, NodeCommand, NodeSite, NodeSpec, System, SystemError};
use crate::client::HttpClient;
use crate::fault::FaultKind;

/// Port every node's client API listens on (each node has its own address).
pub const NODE_PORT: u16 = 7000;

/// The environment variable that gives a node its cluster secret; when set, the node
/// requires it in [`SECRET_HEADER`] on its `/peer/*` and `/admin/*` routes.
pub const SECRET_ENV: &str = "FAULTLINE_CLUSTER_SECRET";

/// The header that carries the cluster secret.
pub use crate::client::SECRET_HEADER;

/// faultline nodes in one mode, with the same bugs and flags on every node.
#[derive(Debug, Clone)]
pub struct FaultlineSystem {
    /// The `faultline` binary (`faultline node` runs a replica).
    pub exe: PathBuf,
    pub mode: Mode,
    pub bugs: Vec<Bug>,
    /// Further flags every node gets (the bank workload's `--channels`, `--initial-balance`).
    pub node_flags: Vec<String>,
    /// This run's cluster secret (see [`SECRET_ENV`]).
    pub secret: String,
}

impl FaultlineSystem {
    /// A fresh random secret per run, unless the harness's own environment names one (a
    /// compose file gives the harness and its nodes the same).
    pub fn new_secret() -> String {
        match std::env::var(SECRET_ENV) {
            Ok(s) if !s.is_empty() => s,
            _ => format!("{:032x}", rand::random::<u128>()),
        }
    }
}

impl System for FaultlineSystem {
    fn name(&self) -> &'static str {
        "faultline"
    }

    fn describe(&self, nodes: usize) -> String {
        format!("{nodes} {} nodes", self.mode.name())
    }

    fn label(&self) -> String {
        self.mode.name().to_string()
    }

    fn client_port(&self) -> u16 {
        NODE_PORT
    }

    fn node_command(&self, node: usize, cluster: &[NodeSite]) -> NodeCommand {
        let me = &cluster[node];
        let addr = |s: &NodeSite| SocketAddr::new(s.ip, NODE_PORT).to_string();
        let peers = cluster
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != node)
            .map(|(_, s)| format!("{}={}", s.id, addr(s)))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            me.id.clone(),
            "--listen".into(),
            addr(me),
            "--peers".into(),
            peers,
            "--mode".into(),
            self.mode.name().into(),
            "--data-dir".into(),
            me.data_dir.display().to_string(),
        ];
        for bug in &self.bugs {
            args.extend(["--bug".to_string(), bug.name().to_string()]);
        }
        args.extend(self.node_flags.iter().cloned());
        NodeCommand {
            program: self.exe.clone(),
            args,
            env: vec![
                ("NO_COLOR".into(), "1".into()),
                (SECRET_ENV.into(), self.secret.clone()),
            ],
        }
    }

    fn supports(&self, _fault: FaultKind) -> Result<(), SystemError> {
        Ok(()) // every fault, clock offsets included (`/admin/clock`)
    }

    fn check_external(&self, id: &str, env: &HashMap<String, String>) -> Result<(), SystemError> {
        if !self.node_flags.is_empty() {
            return Err(SystemError::Mismatch(format!(
                "this run needs node flags ({}) that compose nodes do not get; use --backend docker or sandbox",
                self.node_flags.join(" ")
            )));
        }
        let mode = env
            .get("FAULTLINE_MODE")
            .map(String::as_str)
            .unwrap_or("passive");
        if mode != self.mode.name() {
            return Err(SystemError::Mismatch(format!(
                "--mode {} but compose node {id} runs FAULTLINE_MODE={mode}; set both the same",
                self.mode.name()
            )));
        }
        let mut bugs: Vec<&str> = env
            .get("FAULTLINE_BUGS")
            .map(|b| {
                b.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut want: Vec<&str> = self.bugs.iter().map(|b| b.name()).collect();
        bugs.sort();
        want.sort();
        if bugs != want {
            return Err(SystemError::Mismatch(format!(
                "--bug [{}] but compose node {id} runs FAULTLINE_BUGS=[{}]; set both the same",
                want.join(","),
                bugs.join(",")
            )));
        }
        Ok(())
    }

    fn admin_headers(&self) -> Vec<(String, String)> {
        vec![(SECRET_HEADER.into(), self.secret.clone())]
    }

    fn connect(&self, nodes: &[NodeSpec]) -> Arc<dyn Cluster> {
        let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.client_addr).collect();
        Arc::new(FaultlineCluster {
            http: Arc::new(HttpClient::new(&addrs).with_secret(Some(self.secret.clone()))),
            ids: nodes.iter().map(|n| n.id.clone()).collect(),
            leaderless: self.mode == nodes::Mode::Leaderless,
        })
    }
}

/// A running cluster of faultline nodes.
pub struct FaultlineCluster {
    http: Arc<HttpClient>,
    ids: Vec<String>,
    leaderless: bool,
}

impl FaultlineCluster {
    /// The HTTP client for every route of the nodes (the bank's too), secret included.
    pub fn http(&self) -> Arc<HttpClient> {
        self.http.clone()
    }
}

impl Cluster for FaultlineCluster {
    fn ready(&self, node: usize, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move { self.http.status(node, timeout).await.is_some() })
    }

    fn leader(&self) -> BoxFuture<'_, Option<usize>> {
        Box::pin(find_leader(&self.http, &self.ids))
    }

    fn has_leader(&self) -> bool {
        !self.leaderless
    }

    fn invoke<'a>(
        &'a self,
        node: usize,
        op: &'a Op,
        deadline: Duration,
    ) -> BoxFuture<'a, Completion> {
        Box::pin(Client::invoke(&*self.http, node, op, deadline))
    }

    fn metrics(&self, node: usize) -> BoxFuture<'_, Result<String, ControlError>> {
        Box::pin(async move {
            self.http
                .get_text(node, "/metrics", Duration::from_secs(2))
                .await
                .map_err(|e| ControlError::Node {
                    node: self.ids[node].clone(),
                    why: e.to_string(),
                })
        })
    }

    fn set_clock(&self, node: usize, offset_ms: i64) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move {
            self.http
                .set_clock_offset(node, offset_ms, Duration::from_millis(500))
                .await
                .map_err(|e| ControlError::Node {
                    node: self.ids[node].clone(),
                    why: e.to_string(),
                })
        })
    }

    /// `GET /admin/state` (`?dump=1` for every key), with the cluster secret.
    fn replica_state(
        &self,
        node: usize,
        full: bool,
    ) -> BoxFuture<'_, Result<serde_json::Value, ControlError>> {
        Box::pin(async move {
            let path = if full {
                "/admin/state?dump=1"
            } else {
                "/admin/state"
            };
            let text = self
                .http
                .get_text(node, path, Duration::from_secs(5))
                .await
                .map_err(|e| ControlError::Node {
                    node: self.ids[node].clone(),
                    why: e.to_string(),
                })?;
            serde_json::from_str(&text).map_err(|e| ControlError::Node {
                node: self.ids[node].clone(),
                why: format!("GET {path}: bad body: {e}"),
            })
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Asks every node who leads (`GET /status`); the claim made by the node with the
/// highest term wins.
pub async fn find_leader(client: &HttpClient, ids: &[String]) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for i in 0..ids.len() {
        let Some(status) = client.status(i, Duration::from_millis(300)).await else {
            continue;
        };
        let term = status.get("term").and_then(|t| t.as_u64()).unwrap_or(0);
        let Some(leader) = status.get("leader").and_then(|l| l.as_str()) else {
            continue;
        };
        let Some(index) = ids.iter().position(|id| id == leader) else {
            continue;
        };
        if best.is_none_or(|(t, _)| term > t) {
            best = Some((term, index));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system() -> FaultlineSystem {
        FaultlineSystem {
            exe: "/bin/faultline".into(),
            mode: Mode::Active,
            bugs: vec![Bug::DeliverUnagreed],
            node_flags: vec!["--channels".into(), "fifo".into()],
            secret: "0123abcd".into(),
        }
    }

    fn sites() -> Vec<NodeSite> {
        (1..=3)
            .map(|i| NodeSite {
                id: format!("n{i}"),
                ip: format!("10.77.{i}.2").parse().unwrap(),
                data_dir: format!("/data/n{i}").into(),
            })
            .collect()
    }

    #[test]
    fn node_command_names_the_node_its_peers_and_the_secret() {
        let cmd = system().node_command(1, &sites());
        assert_eq!(cmd.program, PathBuf::from("/bin/faultline"));
        let args = cmd.args.join(" ");
        assert_eq!(
            args,
            "node --id n2 --listen 10.77.2.2:7000 --peers n1=10.77.1.2:7000,n3=10.77.3.2:7000 \
             --mode active --data-dir /data/n2 --bug deliver-unagreed --channels fifo"
        );
        assert!(cmd
            .env
            .contains(&(SECRET_ENV.to_string(), "0123abcd".to_string())));
        assert_eq!(
            system().admin_headers(),
            vec![(SECRET_HEADER.to_string(), "0123abcd".to_string())]
        );
    }

    #[test]
    fn every_run_gets_its_own_secret() {
        if std::env::var_os(SECRET_ENV).is_some() {
            return; // the harness's own environment names one on purpose
        }
        let (a, b) = (FaultlineSystem::new_secret(), FaultlineSystem::new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn compose_nodes_must_run_the_planned_mode_and_bugs() {
        let mut plain = system();
        plain.node_flags.clear();
        let env = |mode: &str, bugs: &str| -> HashMap<String, String> {
            [
                ("FAULTLINE_MODE".to_string(), mode.to_string()),
                ("FAULTLINE_BUGS".to_string(), bugs.to_string()),
            ]
            .into()
        };
        assert!(plain
            .check_external("n1", &env("active", "deliver-unagreed"))
            .is_ok());
        let e = plain
            .check_external("n1", &env("passive", "deliver-unagreed"))
            .unwrap_err();
        assert!(e.to_string().contains("FAULTLINE_MODE=passive"), "{e}");
        let e = plain.check_external("n1", &env("active", "")).unwrap_err();
        assert!(e.to_string().contains("FAULTLINE_BUGS"), "{e}");
        let e = system()
            .check_external("n1", &env("active", "deliver-unagreed"))
            .unwrap_err();
        assert!(e.to_string().contains("node flags"), "{e}");
    }

    /// Metrics and replica state are read with the secret; a node that requires it and
    /// does not get it answers 401, which is reported naming the node.
    #[tokio::test]
    async fn control_reads_name_the_node_and_carry_the_secret() {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/admin/state",
            get(|headers: HeaderMap| async move {
                if headers.get(SECRET_HEADER).map(|v| v.as_bytes()) == Some(b"0123abcd") {
                    (StatusCode::OK, r#"{"applied":7,"digest":"ab12"}"#)
                } else {
                    (StatusCode::UNAUTHORIZED, r#"{"error":"no secret"}"#)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let nodes = [NodeSpec {
            id: "n1".into(),
            client_addr: addr,
        }];
        let cluster = system().connect(&nodes);
        let state = cluster.replica_state(0, false).await.unwrap();
        assert_eq!(state["applied"], 7);
        let mut wrong = system();
        wrong.secret = "nope".into();
        let e = wrong
            .connect(&nodes)
            .replica_state(0, false)
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("n1: ") && e.to_string().contains("401"),
            "{e}"
        );
        let e = cluster.metrics(0).await.unwrap_err();
        assert!(e.to_string().contains("404"), "{e}");
    }
}
