//! The etcd client against real etcd members on 127.0.0.1. Without an etcd binary these
//! tests print a loud SKIPPED line and pass, unless `FAULTLINE_REQUIRE_ETCD=1` (CI sets
//! it where it installed etcd), which makes a missing binary a failure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use workloads::{Client, Completion, Op, OpFn};

use super::launch::{self, Member, Timing};
use super::{EtcdClient, ReadConsistency};

use super::bin_for_test as etcd_bin;

/// A free loopback port, never one handed out before in this process: the kernel may
/// give a just-closed ephemeral port again, and two members on one URL refuse to start
/// ("initial cluster ... has duplicate url", seen in CI).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Members on 127.0.0.1, each on its own pair of ports, SIGKILLed when dropped.
struct LocalCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<Member>,
    procs: Vec<Option<Child>>,
}

impl LocalCluster {
    fn start(bin: PathBuf, n: usize) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let members = (1..=n)
            .map(|i| Member {
                name: format!("n{i}"),
                ip,
                client_port: free_port(),
                peer_port: free_port(),
            })
            .collect();
        let mut cluster = Self {
            bin,
            dir: tempfile::tempdir().unwrap(),
            members,
            procs: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.data", self.members[i].name))
    }

    fn start_member(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1))).unwrap();
        let args = launch::args(
            i,
            &self.members,
            &self.data_dir(i),
            "unit-test",
            Timing::default(),
        );
        let child = Command::new(&self.bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.procs[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self, consistency: ReadConsistency) -> EtcdClient {
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        let addrs: Vec<SocketAddr> = self.members.iter().map(Member::client_addr).collect();
        EtcdClient::new(&names, &addrs, consistency)
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{}.log", i + 1))).unwrap_or_default()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill(i);
        }
    }
}

/// Waits (bounded) until the cluster names a leader.
async fn await_leader(client: &EtcdClient, cluster: &LocalCluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(leader) = client.leader().await {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no leader within 20 s; n1 log:\n{}",
            cluster.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn op(key: &str, f: OpFn) -> Op {
    Op {
        key: Some(key.into()),
        f,
    }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn one_member_reads_writes_and_cases_with_the_right_outcomes() {
    let Some(bin) = etcd_bin("etcd one_member") else {
        return;
    };
    let mut cluster = LocalCluster::start(bin, 1);
    let client = cluster.client(ReadConsistency::Linearizable);
    assert_eq!(await_leader(&client, &cluster).await, 0);

    // Keys start absent; odd characters travel as base64.
    for key in ["k1", "x/y?%..é"] {
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Read), T).await,
            Completion::Ok { read: None }
        );
        assert!(matches!(
            client.invoke(0, &op(key, OpFn::Cas(0, 1)), T).await,
            Completion::Fail { error } if error == "cas mismatch (key absent)"
        ));
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Write(3)), T).await,
            Completion::Ok { read: None }
        );
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Read), T).await,
            Completion::Ok { read: Some(3) }
        );
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Cas(2, 5)), T).await,
            Completion::Fail {
                error: "cas mismatch (value was 3)".into()
            }
        );
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Cas(3, -5)), T).await,
            Completion::Ok { read: None }
        );
        assert_eq!(
            client.invoke(0, &op(key, OpFn::Read), T).await,
            Completion::Ok { read: Some(-5) }
        );
    }
    assert_eq!(
        client.invoke(0, &op("k2", OpFn::Read), T).await,
        Completion::Ok { read: None }
    );

    let serializable = cluster.client(ReadConsistency::Serializable);
    assert_eq!(
        serializable.invoke(0, &op("k1", OpFn::Read), T).await,
        Completion::Ok { read: Some(-5) }
    );

    let status = client.status(0, T).await.expect("status answers");
    assert_eq!(status.leader, Some(status.member_id));
    let metrics = client.metrics(0, T).await.expect("metrics answer");
    assert!(metrics.contains("\netcd_server_has_leader 1"), "{metrics}");

    // A member that is gone refuses the connection: the op never left, a definite fail.
    cluster.kill(0);
    for f in [OpFn::Write(9), OpFn::Cas(1, 2), OpFn::Read] {
        let outcome = client.invoke(0, &op("k1", f), T).await;
        assert!(
            matches!(outcome, Completion::Fail { .. }),
            "{f:?}: {outcome:?}"
        );
    }
    assert_eq!(client.status(0, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn three_members_leader_follows_a_kill_and_a_restart_keeps_its_data() {
    let Some(bin) = etcd_bin("etcd three_members") else {
        return;
    };
    let mut cluster = LocalCluster::start(bin, 3);
    let client = cluster.client(ReadConsistency::Linearizable);
    let first = await_leader(&client, &cluster).await;
    // Every member agrees, and the index is the member that calls itself leader.
    let status = client.status(first, T).await.unwrap();
    assert_eq!(status.leader, Some(status.member_id));

    // Through a follower: the gateway's server forwards the proposal to the leader.
    let follower = (first + 1) % 3;
    assert_eq!(
        client.invoke(follower, &op("k", OpFn::Write(7)), T).await,
        Completion::Ok { read: None }
    );

    cluster.kill(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        match client.leader().await {
            Some(l) if l != first => break l,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within 20 s after killing n{}",
            first + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(second, first);
    assert_eq!(
        client.invoke(second, &op("k", OpFn::Cas(7, 8)), T).await,
        Completion::Ok { read: None }
    );

    // The killed member comes back on the same command line and data directory.
    assert!(cluster.data_dir(first).join("member").is_dir());
    cluster.start_member(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.invoke(first, &op("k", OpFn::Read), T).await {
            Completion::Ok { read } => {
                assert_eq!(read, Some(8));
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "restarted n{} never served a read: {other:?}\n{}",
                first + 1,
                cluster.log(first)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
