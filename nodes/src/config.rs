//! Command-line flags (each also an environment variable) and the validated settings
//! derived from them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::bugs::{Bug, BugError, Bugs};
use crate::command::NodeId;
use crate::machine::Timing;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Mode {
    /// Primary–backup: a Raft-like leader orders and replicates writes.
    Passive,
    /// State-machine replication: every replica gets every request; a VR-style sequencer
    /// orders them and every replica executes them.
    Active,
    /// State-machine replication with no leader: Tempo (EuroSys 2021) timestamp
    /// agreement by quorums, execution in timestamp order once stable.
    Leaderless,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Passive => "passive",
            Mode::Active => "active",
            Mode::Leaderless => "leaderless",
        }
    }
}

/// How the bank's channels deliver frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Channels {
    /// In send order: sequence numbers and a hold-back queue (what Chandy–Lamport assumes).
    Fifo,
    /// Each new frame as it arrives (still deduplicated): breaks FIFO on purpose.
    Unordered,
}

impl Channels {
    pub fn name(self) -> &'static str {
        match self {
            Channels::Fifo => "fifo",
            Channels::Unordered => "unordered",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// This node's id, e.g. n1.
    #[arg(long, env = "FAULTLINE_ID")]
    pub id: String,
    /// Address to serve the client, peer and admin HTTP API on.
    #[arg(long, env = "FAULTLINE_LISTEN", default_value = "127.0.0.1:7001")]
    pub listen: String,
    /// The other replicas: ID=HOST:PORT,... (empty for a single node).
    #[arg(long, env = "FAULTLINE_PEERS", default_value = "")]
    pub peers: String,
    /// Replication protocol.
    #[arg(long, env = "FAULTLINE_MODE", value_enum, default_value_t = Mode::Passive)]
    pub mode: Mode,
    /// Directory for the durable term/vote/log; created if missing.
    #[arg(long, env = "FAULTLINE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Switch on a named bug (repeatable; the env var takes a comma-separated list).
    /// Checked against --mode when the flags are validated (`Bug::parse`), so a wrong
    /// name gets one line naming that mode's bugs.
    #[arg(
        long = "bug",
        env = "FAULTLINE_BUGS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub bugs: Vec<String>,
    /// Logical clock tick.
    #[arg(long, env = "FAULTLINE_TICK_MS", default_value_t = 10)]
    pub tick_ms: u64,
    /// Leader/primary heartbeat interval.
    #[arg(long, env = "FAULTLINE_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Minimum election / view-change timeout; each node picks at random in [T, 2T].
    #[arg(long, env = "FAULTLINE_ELECTION_TIMEOUT_MS", default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Connect and total timeout of one call to a peer (messages and forwarded requests).
    #[arg(long, env = "FAULTLINE_PEER_TIMEOUT_MS", default_value_t = 500)]
    pub peer_timeout_ms: u64,
    /// How long a client request may wait for commit before 504 (outcome unknown).
    #[arg(long, env = "FAULTLINE_REQUEST_TIMEOUT_MS", default_value_t = 2000)]
    pub request_timeout_ms: u64,
    /// Largest request body accepted (413 above it).
    #[arg(long, env = "FAULTLINE_MAX_BODY_BYTES", default_value_t = 65536)]
    pub max_body_bytes: usize,
    /// Threads that run the node (HTTP, transport, protocol loop; the disk has its own):
    /// 1 (the default) is tokio's current-thread runtime, N > 1 a multi-thread runtime
    /// with N workers, 0 one worker per CPU core.
    #[arg(long, env = "FAULTLINE_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: u16,
    /// Bank: every node's starting account balance.
    #[arg(long, env = "FAULTLINE_INITIAL_BALANCE", default_value_t = 1000)]
    pub initial_balance: i64,
    /// Bank: how channels between nodes deliver.
    #[arg(long, env = "FAULTLINE_CHANNELS", value_enum, default_value_t = Channels::Fifo)]
    pub channels: Channels,
    /// Shared secret of the cluster: required (header `x-faultline-secret`) on every peer
    /// and /admin route, and sent on every peer call. Unset: those routes are open.
    #[arg(long, env = "FAULTLINE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Rolls (`POST /kv/{key}/roll`): the node the client reached draws the value and it
    /// travels with the request, so every replica that executes it sets the same value.
    /// Off: each executing replica draws its own (active modes then diverge).
    #[arg(long, env = "FAULTLINE_DETERMINISTIC_ROLL")]
    pub deterministic_roll: bool,
    /// A connection that has not sent a complete request head for this long (idle
    /// keep-alive, or a slow sender) is closed.
    #[arg(long, env = "FAULTLINE_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
}

/// Settings after validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    pub listen: String,
    pub peers: Vec<(NodeId, String)>,
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub bugs: Bugs,
    pub tick: Duration,
    pub timing: Timing,
    pub peer_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub initial_balance: i64,
    pub channels: Channels,
    /// `None`: peer and admin routes are open (a warning is logged at start).
    pub cluster_secret: Option<String>,
    pub deterministic_roll: bool,
    pub idle_timeout: Duration,
}

/// Why the flags cannot run a node; the message is one line naming the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Bug(#[from] BugError),
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError::Invalid(s)
    }
}

impl From<&str> for ConfigError {
    fn from(s: &str) -> Self {
        ConfigError::Invalid(s.to_string())
    }
}

impl Config {
    /// Validates flags; the error is one line naming the flag and the problem.
    pub fn from_args(args: NodeArgs) -> Result<Config, ConfigError> {
        let id = args.id.trim().to_string();
        if id.is_empty() || id.contains([',', '=', '/', ' ']) {
            return Err(format!("--id: '{}' is not a usable node id", args.id).into());
        }
        let bugs = args
            .bugs
            .iter()
            .filter(|b| !b.trim().is_empty())
            .map(|b| Bug::parse(b, args.mode))
            .collect::<Result<Vec<Bug>, BugError>>()?;
        let cluster_secret = args.cluster_secret.filter(|s| !s.is_empty());
        if cluster_secret
            .as_deref()
            .is_some_and(|s| !s.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("--cluster-secret: must be printable ASCII without spaces".into());
        }
        if args.idle_timeout_ms == 0 {
            return Err("--idle-timeout-ms: must be positive".into());
        }
        let mut peers: Vec<(NodeId, String)> = Vec::new();
        for item in args
            .peers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((pid, addr)) = item.split_once('=') else {
                return Err(format!("--peers: '{item}' is not ID=HOST:PORT").into());
            };
            let valid_addr = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if pid.is_empty() || !valid_addr {
                return Err(format!("--peers: '{item}' is not ID=HOST:PORT").into());
            }
            if pid == id {
                return Err(format!("--peers: '{pid}' is this node's own id").into());
            }
            if peers.iter().any(|(p, _)| p == pid) {
                return Err(format!("--peers: '{pid}' appears twice").into());
            }
            peers.push((pid.to_string(), addr.to_string()));
        }
        if args.initial_balance < 0 {
            return Err(format!(
                "--initial-balance {}: must not be negative",
                args.initial_balance
            )
            .into());
        }
        if args.tick_ms == 0 {
            return Err("--tick-ms: must be at least 1".into());
        }
        let ticks = |ms: u64| (ms / args.tick_ms).max(1);
        let timing = Timing {
            heartbeat: ticks(args.heartbeat_ms),
            election_min: ticks(args.election_timeout_ms),
            election_max: ticks(args.election_timeout_ms * 2),
        };
        if timing.election_min <= timing.heartbeat {
            return Err(format!(
                "--election-timeout-ms {}: must be longer than --heartbeat-ms {}",
                args.election_timeout_ms, args.heartbeat_ms
            )
            .into());
        }
        if args.peer_timeout_ms == 0 || args.request_timeout_ms == 0 {
            return Err("--peer-timeout-ms and --request-timeout-ms must be positive".into());
        }
        Ok(Config {
            id,
            listen: args.listen,
            peers,
            mode: args.mode,
            data_dir: args.data_dir,
            bugs: Bugs::new(bugs),
            tick: Duration::from_millis(args.tick_ms),
            timing,
            peer_timeout: Duration::from_millis(args.peer_timeout_ms),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_body_bytes: args.max_body_bytes,
            initial_balance: args.initial_balance,
            channels: args.channels,
            cluster_secret,
            deterministic_roll: args.deterministic_roll,
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        })
    }
}
