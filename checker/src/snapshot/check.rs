//! The four rules, judged on one snapshot. Every violation names the snapshot and the nodes,
//! channel and messages involved; the rules are independent, so one fault usually shows up
//! under more than one (a lost in-flight message breaks both channel state and conservation).
//!
//! A snapshot that did not terminate is still judged, on what its recorded part can show
//! without the rest: the cut and channel state only between two recorded nodes, channel
//! state only on channels closed by their marker, each node's own balance, and the total
//! only when every node recorded and every channel closed. So a violation there is real
//! whatever the missing node would have said, and makes the snapshot inconsistent.

use super::model::{clock_entry, Algorithm, Channel, Checkpoint, NodeId, Snapshot, Transfer};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every node recorded, every channel closed.
    Termination,
    /// No recorded receive without its recorded send.
    ConsistentCut,
    /// Channel i→j holds exactly what i sent before its cut and j received after its cut.
    ChannelState,
    /// Balances plus in-flight amounts equal the initial total; no negative balance; each
    /// node's balance agrees with its own sends and deliveries.
    Conservation,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Termination => "termination",
            Rule::ConsistentCut => "consistent-cut",
            Rule::ChannelState => "channel-state",
            Rule::Conservation => "conservation",
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Violation {
    /// The initiator never got `node`'s checkpoint (crashed, partitioned, or too slow).
    MissingCheckpoint { snapshot: u64, node: NodeId },
    /// No closing marker arrived on `channel`: its recording never stopped.
    ChannelNotClosed { snapshot: u64, channel: Channel },
    /// `channel.to` delivered seqs `sent + 1 ..= received` before its cut, but
    /// `channel.from` had sent only up to `sent` before its cut.
    ReceiveWithoutSend {
        snapshot: u64,
        channel: Channel,
        sent: u64,
        received: u64,
    },
    /// At its cut `node` had seen `seen` events of `of`, but `of` recorded its cut after
    /// only `own` events: `node` saw something `of` did after its cut.
    ClockAhead {
        snapshot: u64,
        node: NodeId,
        of: NodeId,
        seen: u64,
        own: u64,
    },
    /// Recorded in flight, but its seq is past what the sender had sent before its cut.
    InFlightSentAfterCut {
        snapshot: u64,
        channel: Channel,
        seq: u64,
        sent: u64,
    },
    /// Recorded in flight, but its send clock is past the sender's clock at its cut.
    InFlightClockAfterCut {
        snapshot: u64,
        channel: Channel,
        seq: u64,
        send_clock: u64,
        cut_clock: u64,
    },
    /// Recorded in flight, but the receiver had already delivered it before its cut.
    InFlightReceivedBeforeCut {
        snapshot: u64,
        channel: Channel,
        seq: u64,
        received: u64,
    },
    /// Sent before the sender's cut, not delivered before the receiver's cut, and not in
    /// the recorded channel state: lost from the snapshot. `amount` is their total when the
    /// transfer log says.
    InFlightMissing {
        snapshot: u64,
        channel: Channel,
        seqs: Vec<u64>,
        amount: Option<i64>,
    },
    /// The same message recorded twice in the channel state.
    InFlightDuplicate {
        snapshot: u64,
        channel: Channel,
        seq: u64,
    },
    /// The channel state lists `seq` after the later message `after`: not FIFO.
    InFlightOutOfOrder {
        snapshot: u64,
        channel: Channel,
        seq: u64,
        after: u64,
    },
    /// The recorded amount differs from what the transfer log says was sent.
    InFlightWrongAmount {
        snapshot: u64,
        channel: Channel,
        seq: u64,
        recorded: i64,
        sent: i64,
    },
    /// Recorded in flight, but the transfer log has no such message.
    InFlightNotInLog {
        snapshot: u64,
        channel: Channel,
        seq: u64,
    },
    /// The sender claims it had sent up to `sent` before its cut, the log only up to `logged`.
    SentNotInLog {
        snapshot: u64,
        channel: Channel,
        sent: u64,
        logged: u64,
    },
    /// Balances plus in-flight amounts differ from the initial total.
    MoneyNotConserved {
        snapshot: u64,
        expected: i64,
        balances: i64,
        in_flight: i64,
    },
    NegativeBalance {
        snapshot: u64,
        node: NodeId,
        balance: i64,
    },
    /// `node`'s own books do not add up: its recorded balance is not its initial balance
    /// minus what it sent (its seqs `1..=sent` per outgoing channel, amounts from the log)
    /// plus what it was delivered (seqs up to `received` per incoming channel). `received`
    /// is the highest seq delivered, a prefix only on FIFO channels, so the delivered sum is
    /// known only to lie in `delivered_min ..= delivered_max` (each channel's top seq
    /// surely, every lower one possibly). Balance, `sent` and `received` are read at the same
    /// instant, so this holds at every cut whatever the other nodes did.
    BalanceMismatch {
        snapshot: u64,
        node: NodeId,
        recorded: i64,
        initial: i64,
        sent: i64,
        delivered_min: i64,
        delivered_max: i64,
        expected_min: i64,
        expected_max: i64,
    },
}

impl Violation {
    pub fn rule(&self) -> Rule {
        use Violation::*;
        match self {
            MissingCheckpoint { .. } | ChannelNotClosed { .. } => Rule::Termination,
            ReceiveWithoutSend { .. } | ClockAhead { .. } => Rule::ConsistentCut,
            MoneyNotConserved { .. } | NegativeBalance { .. } | BalanceMismatch { .. } => {
                Rule::Conservation
            }
            _ => Rule::ChannelState,
        }
    }

    /// The kebab-case name used in JSON (`kind`).
    pub fn kind(&self) -> &'static str {
        use Violation::*;
        match self {
            MissingCheckpoint { .. } => "missing-checkpoint",
            ChannelNotClosed { .. } => "channel-not-closed",
            ReceiveWithoutSend { .. } => "receive-without-send",
            ClockAhead { .. } => "clock-ahead",
            InFlightSentAfterCut { .. } => "in-flight-sent-after-cut",
            InFlightClockAfterCut { .. } => "in-flight-clock-after-cut",
            InFlightReceivedBeforeCut { .. } => "in-flight-received-before-cut",
            InFlightMissing { .. } => "in-flight-missing",
            InFlightDuplicate { .. } => "in-flight-duplicate",
            InFlightOutOfOrder { .. } => "in-flight-out-of-order",
            InFlightWrongAmount { .. } => "in-flight-wrong-amount",
            InFlightNotInLog { .. } => "in-flight-not-in-log",
            SentNotInLog { .. } => "sent-not-in-log",
            MoneyNotConserved { .. } => "money-not-conserved",
            NegativeBalance { .. } => "negative-balance",
            BalanceMismatch { .. } => "balance-mismatch",
        }
    }

    pub fn snapshot(&self) -> u64 {
        use Violation::*;
        match self {
            MissingCheckpoint { snapshot, .. }
            | ChannelNotClosed { snapshot, .. }
            | ReceiveWithoutSend { snapshot, .. }
            | ClockAhead { snapshot, .. }
            | InFlightSentAfterCut { snapshot, .. }
            | InFlightClockAfterCut { snapshot, .. }
            | InFlightReceivedBeforeCut { snapshot, .. }
            | InFlightMissing { snapshot, .. }
            | InFlightDuplicate { snapshot, .. }
            | InFlightOutOfOrder { snapshot, .. }
            | InFlightWrongAmount { snapshot, .. }
            | InFlightNotInLog { snapshot, .. }
            | SentNotInLog { snapshot, .. }
            | MoneyNotConserved { snapshot, .. }
            | NegativeBalance { snapshot, .. }
            | BalanceMismatch { snapshot, .. } => *snapshot,
        }
    }

    /// The channel involved, if the violation is about one.
    pub fn channel(&self) -> Option<&Channel> {
        use Violation::*;
        match self {
            ChannelNotClosed { channel, .. }
            | ReceiveWithoutSend { channel, .. }
            | InFlightSentAfterCut { channel, .. }
            | InFlightClockAfterCut { channel, .. }
            | InFlightReceivedBeforeCut { channel, .. }
            | InFlightMissing { channel, .. }
            | InFlightDuplicate { channel, .. }
            | InFlightOutOfOrder { channel, .. }
            | InFlightWrongAmount { channel, .. }
            | InFlightNotInLog { channel, .. }
            | SentNotInLog { channel, .. } => Some(channel),
            _ => None,
        }
    }
}

fn seq_list(seqs: &[u64]) -> String {
    // Consecutive runs as ranges: "3..=7, 9".
    let mut parts = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}..={}", seqs[i], seqs[j])
        } else {
            seqs[i].to_string()
        });
        i = j + 1;
    }
    parts.join(", ")
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        write!(f, "snapshot {}: {}: ", self.snapshot(), self.kind())?;
        match self {
            MissingCheckpoint { node, .. } => write!(f, "no checkpoint from {node}"),
            ChannelNotClosed { channel, .. } => {
                write!(f, "channel {channel} never got its closing marker")
            }
            ReceiveWithoutSend {
                channel,
                sent,
                received,
                ..
            } => write!(
                f,
                "{} delivered seq {} on {channel} before its cut, but {} had sent only up to seq {sent} before its cut",
                channel.to,
                seq_list(&((sent + 1)..=*received).collect::<Vec<_>>()),
                channel.from
            ),
            ClockAhead {
                node, of, seen, own, ..
            } => write!(
                f,
                "{node}'s clock at its cut has {of}:{seen}, but {of} recorded its cut at {of}:{own}"
            ),
            InFlightSentAfterCut {
                channel, seq, sent, ..
            } => write!(
                f,
                "{channel} seq {seq} recorded in flight, but {} had sent only up to seq {sent} before its cut",
                channel.from
            ),
            InFlightClockAfterCut {
                channel,
                seq,
                send_clock,
                cut_clock,
                ..
            } => write!(
                f,
                "{channel} seq {seq} recorded in flight, but it was sent at {0}:{send_clock}, after {0}'s cut at {0}:{cut_clock}",
                channel.from
            ),
            InFlightReceivedBeforeCut {
                channel,
                seq,
                received,
                ..
            } => write!(
                f,
                "{channel} seq {seq} recorded in flight, but {} had delivered up to seq {received} before its cut",
                channel.to
            ),
            InFlightMissing {
                channel,
                seqs,
                amount,
                ..
            } => {
                write!(
                    f,
                    "{channel} seq {} sent before {}'s cut and not delivered before {}'s cut, but not in the recorded channel state",
                    seq_list(seqs),
                    channel.from,
                    channel.to
                )?;
                if let Some(a) = amount {
                    write!(f, " (amount {a} lost)")?;
                }
                Ok(())
            }
            InFlightDuplicate { channel, seq, .. } => {
                write!(f, "{channel} seq {seq} recorded in flight twice")
            }
            InFlightOutOfOrder {
                channel, seq, after, ..
            } => write!(f, "{channel} channel state lists seq {seq} after seq {after}"),
            InFlightWrongAmount {
                channel,
                seq,
                recorded,
                sent,
                ..
            } => write!(
                f,
                "{channel} seq {seq} recorded with amount {recorded}, but the transfer log says {sent} was sent"
            ),
            InFlightNotInLog { channel, seq, .. } => write!(
                f,
                "{channel} seq {seq} recorded in flight, but the transfer log has no such message"
            ),
            SentNotInLog {
                channel,
                sent,
                logged,
                ..
            } => write!(
                f,
                "{} claims it sent up to seq {sent} on {channel} before its cut, but the transfer log has only up to seq {logged}",
                channel.from
            ),
            MoneyNotConserved {
                expected,
                balances,
                in_flight,
                ..
            } => write!(
                f,
                "balances {balances} + in flight {in_flight} = {}, expected {expected} (difference {})",
                balances + in_flight,
                balances + in_flight - expected
            ),
            NegativeBalance { node, balance, .. } => {
                write!(f, "{node} recorded a negative balance {balance}")
            }
            BalanceMismatch {
                node,
                recorded,
                initial,
                sent,
                delivered_min,
                delivered_max,
                expected_min,
                expected_max,
                ..
            } => {
                let range = |lo: i64, hi: i64| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}..={hi}")
                    }
                };
                write!(
                    f,
                    "{node} recorded balance {recorded}, but initial {initial} - sent {sent} + delivered {} = {}",
                    range(*delivered_min, *delivered_max),
                    range(*expected_min, *expected_max)
                )
            }
        }
    }
}

/// What a snapshot turned out to be. Only termination depends on the nodes that never
/// reported; every other rule is judged on what was recorded, where that is sound with
/// partial information (see `check_snapshot`), so a fault in the recorded part is not hidden
/// by a timeout elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Terminated, and every other rule holds.
    Consistent,
    /// Some rule other than termination is broken, whether or not the snapshot terminated
    /// (`SnapshotReport::terminated` says which).
    Inconsistent,
    /// Did not terminate (a node or channel never reported), and nothing that was recorded
    /// breaks a rule.
    Incomplete,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Consistent => "consistent",
            Outcome::Inconsistent => "inconsistent",
            Outcome::Incomplete => "incomplete",
        }
    }
}

/// The judgement of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotReport {
    pub snapshot: u64,
    pub initiator: NodeId,
    pub algorithm: Algorithm,
    pub outcome: Outcome,
    pub nodes: usize,
    pub recorded: usize,
    /// Every node recorded and every channel closed (no termination violation).
    pub terminated: bool,
    /// Sum of recorded balances and of recorded in-flight messages.
    pub balances: i64,
    pub in_flight_messages: usize,
    pub in_flight_amount: i64,
    pub initial_total: i64,
    /// Whether a transfer log was given (amounts and send clocks checked against it).
    pub with_transfer_log: bool,
    /// Whether the total could be judged (only when every node recorded and every channel
    /// closed: a still-open channel's recording is partial).
    pub conservation_judged: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    pub violations: Vec<Violation>,
}

/// Judges one snapshot. `Err` is malformed input (see `Snapshot::validate`), one line.
/// Outcome: inconsistent if any rule other than termination is broken, else incomplete if
/// termination is, else consistent.
pub fn check_snapshot(s: &Snapshot) -> Result<SnapshotReport, String> {
    s.validate()?;
    let id = s.id;
    let mut v = Vec::new();
    let cps: BTreeMap<&str, &Checkpoint> =
        s.checkpoints.iter().map(|c| (c.node.as_str(), c)).collect();

    // (1) Termination.
    let mut missing: BTreeSet<&str> = s.missing.iter().map(String::as_str).collect();
    missing.extend(
        s.nodes
            .iter()
            .map(String::as_str)
            .filter(|n| !cps.contains_key(n)),
    );
    for n in &missing {
        v.push(Violation::MissingCheckpoint {
            snapshot: id,
            node: n.to_string(),
        });
    }
    let open: BTreeSet<&Channel> = s.open_channels.iter().collect();
    for ch in &open {
        v.push(Violation::ChannelNotClosed {
            snapshot: id,
            channel: (*ch).clone(),
        });
    }
    let terminated = v.is_empty();

    // (2) Consistent cut, on every pair of recorded nodes.
    let recorded = |n: &str| cps.get(n).copied().filter(|_| !missing.contains(n));
    for ch in s.channels() {
        let (Some(from), Some(to)) = (recorded(&ch.from), recorded(&ch.to)) else {
            continue;
        };
        let (sent, received) = (from.sent_to(&ch.to), to.received_from(&ch.from));
        if received > sent {
            v.push(Violation::ReceiveWithoutSend {
                snapshot: id,
                channel: ch.clone(),
                sent,
                received,
            });
        }
        let (seen, own) = (
            clock_entry(&to.clock, &ch.from),
            clock_entry(&from.clock, &ch.from),
        );
        if seen > own {
            v.push(Violation::ClockAhead {
                snapshot: id,
                node: ch.to.clone(),
                of: ch.from.clone(),
                seen,
                own,
            });
        }
    }

    // (3) Channel state exact, on closed channels between recorded nodes.
    let log: Option<BTreeMap<(&str, &str, u64), &Transfer>> = s.transfers.as_ref().map(|l| {
        l.iter()
            .map(|m| ((m.from.as_str(), m.to.as_str(), m.seq), m))
            .collect()
    });
    for ch in s.channels() {
        let (Some(from), Some(to)) = (recorded(&ch.from), recorded(&ch.to)) else {
            continue;
        };
        if open.contains(&ch) {
            continue;
        }
        channel_state(s, &ch, from, to, log.as_ref(), &mut v);
    }

    // (4) Conservation.
    let balances: i64 = s.checkpoints.iter().map(|c| c.balance).sum();
    let in_flight: Vec<&Transfer> = s
        .checkpoints
        .iter()
        .flat_map(|c| c.channels.values().flatten())
        .collect();
    let in_flight_amount: i64 = in_flight.iter().map(|m| m.amount).sum();
    for c in &s.checkpoints {
        if c.balance < 0 {
            v.push(Violation::NegativeBalance {
                snapshot: id,
                node: c.node.clone(),
                balance: c.balance,
            });
        }
    }
    let conservation_judged = missing.is_empty() && open.is_empty();
    if conservation_judged && balances + in_flight_amount != s.initial_total {
        v.push(Violation::MoneyNotConserved {
            snapshot: id,
            expected: s.initial_total,
            balances,
            in_flight: in_flight_amount,
        });
    }

    if let Some(log) = &log {
        if let Some(initial) = equal_initial_balance(s) {
            for c in &s.checkpoints {
                node_accounting(s, c, initial, log, &mut v);
            }
        }
    }

    let outcome = if v.iter().any(|x| x.rule() != Rule::Termination) {
        Outcome::Inconsistent
    } else if !terminated {
        Outcome::Incomplete
    } else {
        Outcome::Consistent
    };
    let latency_ms = match (s.started_ns, s.finished_ns) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e6),
        _ => None,
    };
    Ok(SnapshotReport {
        snapshot: id,
        initiator: s.initiator.clone(),
        algorithm: s.algorithm,
        outcome,
        nodes: s.nodes.len(),
        recorded: s.nodes.len() - missing.len(),
        terminated,
        balances,
        in_flight_messages: in_flight.len(),
        in_flight_amount,
        initial_total: s.initial_total,
        with_transfer_log: s.transfers.is_some(),
        conservation_judged,
        latency_ms,
        violations: v,
    })
}

/// Each node's initial balance. The model carries only the total; the bank nodes all start
/// with the same `--initial-balance` (and report `initial_total` as it times the number of
/// nodes), so the share is the total split evenly. A total that does not split evenly
/// cannot come from that, and then no node is judged.
fn equal_initial_balance(s: &Snapshot) -> Option<i64> {
    let n = s.nodes.len() as i64;
    (s.initial_total % n == 0).then(|| s.initial_total / n)
}

/// Rule (4) on one node's own books, from its checkpoint and the transfer log alone — so
/// it is sound in an incomplete snapshot too. Judged only when the log holds every seq it
/// needs (each outgoing channel's `1..=sent`, each incoming channel's `1..=received`);
/// otherwise skipped, as the log-based channel rules are.
fn node_accounting(
    s: &Snapshot,
    c: &Checkpoint,
    initial: i64,
    log: &BTreeMap<(&str, &str, u64), &Transfer>,
    v: &mut Vec<Violation>,
) {
    let amounts = |from: &str, to: &str, upto: u64| -> Option<Vec<i64>> {
        (1..=upto)
            .map(|q| log.get(&(from, to, q)).map(|m| m.amount))
            .collect()
    };
    let me = c.node.as_str();
    let (mut sent, mut delivered_min, mut delivered_max) = (0i64, 0i64, 0i64);
    for peer in s.nodes.iter().map(String::as_str).filter(|p| *p != me) {
        let Some(out) = amounts(me, peer, c.sent_to(peer)) else {
            return;
        };
        sent += out.iter().sum::<i64>();
        let Some(inc) = amounts(peer, me, c.received_from(peer)) else {
            return;
        };
        // `received` is the highest seq delivered: on unordered channels the lower ones may
        // still be on their way, so only the top one is sure to be in the balance.
        delivered_min += inc.last().copied().unwrap_or(0);
        delivered_max += inc.iter().sum::<i64>();
    }
    let (expected_min, expected_max) = (
        initial - sent + delivered_min,
        initial - sent + delivered_max,
    );
    if !(expected_min..=expected_max).contains(&c.balance) {
        v.push(Violation::BalanceMismatch {
            snapshot: s.id,
            node: c.node.clone(),
            recorded: c.balance,
            initial,
            sent,
            delivered_min,
            delivered_max,
            expected_min,
            expected_max,
        });
    }
}

/// Rule (3) on one channel: the recorded state must be exactly seqs
/// `received + 1 ..= sent`, in order, each once (and, with a log, as logged). The clock
/// algorithm records no channel state and is judged the same way, so whatever was in flight
/// at its instant shows up as `InFlightMissing`.
fn channel_state(
    s: &Snapshot,
    ch: &Channel,
    from: &Checkpoint,
    to: &Checkpoint,
    log: Option<&BTreeMap<(&str, &str, u64), &Transfer>>,
    v: &mut Vec<Violation>,
) {
    let id = s.id;
    let (sent, received) = (from.sent_to(&ch.to), to.received_from(&ch.from));
    let cut_clock = clock_entry(&from.clock, &ch.from);
    let recorded = to.in_flight_from(&ch.from);
    let mut seen = BTreeSet::new();
    let mut highest = 0;
    for m in recorded {
        if !seen.insert(m.seq) {
            v.push(Violation::InFlightDuplicate {
                snapshot: id,
                channel: ch.clone(),
                seq: m.seq,
            });
            continue;
        }
        if m.seq < highest {
            v.push(Violation::InFlightOutOfOrder {
                snapshot: id,
                channel: ch.clone(),
                seq: m.seq,
                after: highest,
            });
        }
        highest = highest.max(m.seq);
        if m.seq > sent {
            v.push(Violation::InFlightSentAfterCut {
                snapshot: id,
                channel: ch.clone(),
                seq: m.seq,
                sent,
            });
        } else if m.seq <= received {
            v.push(Violation::InFlightReceivedBeforeCut {
                snapshot: id,
                channel: ch.clone(),
                seq: m.seq,
                received,
            });
        }
        let send_clock = clock_entry(&m.clock, &ch.from);
        if send_clock > cut_clock {
            v.push(Violation::InFlightClockAfterCut {
                snapshot: id,
                channel: ch.clone(),
                seq: m.seq,
                send_clock,
                cut_clock,
            });
        }
        if let Some(log) = log {
            match log.get(&(ch.from.as_str(), ch.to.as_str(), m.seq)) {
                None => v.push(Violation::InFlightNotInLog {
                    snapshot: id,
                    channel: ch.clone(),
                    seq: m.seq,
                }),
                Some(l) if l.amount != m.amount => v.push(Violation::InFlightWrongAmount {
                    snapshot: id,
                    channel: ch.clone(),
                    seq: m.seq,
                    recorded: m.amount,
                    sent: l.amount,
                }),
                Some(_) => {}
            }
        }
    }
    let lost: Vec<u64> = ((received + 1)..=sent)
        .filter(|q| !seen.contains(q))
        .collect();
    if !lost.is_empty() {
        let amount = log.and_then(|log| {
            lost.iter()
                .map(|q| {
                    log.get(&(ch.from.as_str(), ch.to.as_str(), *q))
                        .map(|m| m.amount)
                })
                .sum::<Option<i64>>()
        });
        v.push(Violation::InFlightMissing {
            snapshot: id,
            channel: ch.clone(),
            seqs: lost,
            amount,
        });
    }
    if let Some(log) = log {
        let logged = log
            .range(
                (ch.from.as_str(), ch.to.as_str(), 0)
                    ..=(ch.from.as_str(), ch.to.as_str(), u64::MAX),
            )
            .map(|(k, _)| k.2)
            .max()
            .unwrap_or(0);
        if logged < sent {
            v.push(Violation::SentNotInLog {
                snapshot: id,
                channel: ch.clone(),
                sent,
                logged,
            });
        }
    }
}
