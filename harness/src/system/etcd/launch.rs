//! How an etcd member is started: its command line, from the cluster's addresses.
//!
//! Every member gets the same `--initial-cluster` and `--initial-cluster-state new`; etcd
//! reads those only when its data directory is empty, so the same command line restarts a
//! killed member on the data it kept (etcd's own rule, `etcdmain` "the member has already
//! been bootstrapped"). Timing is shortened for tests: a 50-ms heartbeat and a 500-ms
//! election timeout (etcd's defaults are 100 ms and 1000 ms; the election timeout must be
//! at least 5 heartbeats, see etcd's tuning guide).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The client port (etcd's IANA default); the v3 JSON gateway and `/metrics` are here.
pub const CLIENT_PORT: u16 = 2379;
/// The peer port (etcd's IANA default): raft traffic between members.
pub const PEER_PORT: u16 = 2380;

/// Raft timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub heartbeat_ms: u32,
    pub election_ms: u32,
}

impl Default for Timing {
    /// Short enough that a leader change under the nemesis takes about a second.
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_ms: 500,
        }
    }
}

/// One member of the cluster as the command lines name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `n1`, `n2`, ... (etcd's `--name`; also how member ids are mapped back to nodes).
    pub name: String,
    pub ip: IpAddr,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Member {
    /// A member on the standard ports (each member has its own address).
    pub fn new(name: impl Into<String>, ip: IpAddr) -> Self {
        Self {
            name: name.into(),
            ip,
            client_port: CLIENT_PORT,
            peer_port: PEER_PORT,
        }
    }

    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.client_port)
    }

    pub fn client_url(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}", SocketAddr::new(self.ip, self.peer_port))
    }
}

/// The arguments (after the program) that start member `node` of `cluster`, with its data
/// in `data_dir` and `token` as the cluster token (a run id: members of another run cannot
/// join by mistake).
pub fn args(
    node: usize,
    cluster: &[Member],
    data_dir: &Path,
    token: &str,
    timing: Timing,
) -> Vec<String> {
    let me = &cluster[node];
    let initial_cluster = cluster
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    let mut args: Vec<String> = Vec::new();
    let mut flag = |name: &str, value: String| {
        args.push(format!("--{name}"));
        args.push(value);
    };
    flag("name", me.name.clone());
    flag("data-dir", data_dir.display().to_string());
    flag("listen-client-urls", me.client_url());
    flag("advertise-client-urls", me.client_url());
    flag("listen-peer-urls", me.peer_url());
    flag("initial-advertise-peer-urls", me.peer_url());
    flag("initial-cluster", initial_cluster);
    flag("initial-cluster-state", "new".into());
    flag("initial-cluster-token", token.into());
    flag("heartbeat-interval", timing.heartbeat_ms.to_string());
    flag("election-timeout", timing.election_ms.to_string());
    // zap is 3.4's structured logger (capnslog is deprecated there and warns on start).
    flag("logger", "zap".into());
    flag("log-outputs", "stderr".into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_names_every_member_and_keeps_the_data_dir() {
        let cluster: Vec<Member> = (1..=3)
            .map(|i| Member::new(format!("n{i}"), format!("10.77.0.{i}").parse().unwrap()))
            .collect();
        let a = args(
            1,
            &cluster,
            Path::new("/r/nodes/n2.data"),
            "run-7",
            Timing::default(),
        );
        let get = |flag: &str| {
            let i = a
                .iter()
                .position(|x| x == flag)
                .unwrap_or_else(|| panic!("{flag} missing: {a:?}"));
            a[i + 1].as_str()
        };
        assert_eq!(get("--name"), "n2");
        assert_eq!(get("--data-dir"), "/r/nodes/n2.data");
        assert_eq!(get("--listen-client-urls"), "http://10.77.0.2:2379");
        assert_eq!(get("--advertise-client-urls"), "http://10.77.0.2:2379");
        assert_eq!(get("--listen-peer-urls"), "http://10.77.0.2:2380");
        assert_eq!(
            get("--initial-advertise-peer-urls"),
            "http://10.77.0.2:2380"
        );
        assert_eq!(
            get("--initial-cluster"),
            "n1=http://10.77.0.1:2380,n2=http://10.77.0.2:2380,n3=http://10.77.0.3:2380"
        );
        assert_eq!(get("--initial-cluster-state"), "new");
        assert_eq!(get("--initial-cluster-token"), "run-7");
        assert_eq!(get("--heartbeat-interval"), "50");
        assert_eq!(get("--election-timeout"), "500");
        // A restart uses the same line: etcd ignores the bootstrap flags once data exists.
        assert_eq!(
            a,
            args(
                1,
                &cluster,
                Path::new("/r/nodes/n2.data"),
                "run-7",
                Timing::default()
            )
        );
    }
}
