//! Labels that tie every Docker object to the harness process that made it, and the
//! removal of what a dead harness left behind.

use std::collections::HashMap;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;

use super::engine::is_not_found;
use super::RUN_LABEL;

pub(super) const PID_LABEL: &str = "faultline.pid";

pub(super) const PID_START_LABEL: &str = "faultline.pid-start";

/// Start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the PID it identifies a process even after PID reuse.
pub(super) fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Whether the harness that labelled a resource is still running.
pub(super) fn owner_alive(labels: &HashMap<String, String>) -> bool {
    let Some(pid) = labels.get(PID_LABEL).and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    process_start(pid).as_deref() == labels.get(PID_START_LABEL).map(String::as_str)
}

/// Removes containers and networks left by `--backend docker` runs whose harness is gone
/// (SIGKILLed, or the machine lost power). Best effort: failures only print a warning.
pub(super) async fn remove_stale(docker: &Docker) {
    let filter: HashMap<String, Vec<String>> =
        [("label".to_string(), vec![RUN_LABEL.to_string()])].into();
    let mut stale_runs = std::collections::BTreeSet::new();
    if let Ok(list) = all_containers(docker, &filter).await {
        for c in list {
            if !is_stale(c.labels, &mut stale_runs) {
                continue;
            }
            if let Some(id) = c.id {
                let opts = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                let removed = docker.remove_container(&id, Some(opts)).await;
                warn_unless_gone("container", &id, removed);
            }
        }
    }
    if let Ok(list) = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
    {
        for n in list {
            if !is_stale(n.labels, &mut stale_runs) {
                continue;
            }
            if let Some(id) = n.id {
                let removed = docker.remove_network(&id).await;
                warn_unless_gone("network", &id, removed);
            }
        }
    }
    if !stale_runs.is_empty() {
        eprintln!(
            "faultline run: removed the leftovers of {} dead run(s): {}",
            stale_runs.len(),
            stale_runs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

/// Every container matching `filter`, running or not.
pub(super) async fn all_containers(
    docker: &Docker,
    filter: &HashMap<String, Vec<String>>,
) -> Result<Vec<ContainerSummary>, DockerError> {
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filter)
                .build(),
        ))
        .await
}

/// Whether a Docker object with `labels` outlived the harness that made it; if so, notes
/// its run in `stale_runs`.
pub(super) fn is_stale(
    labels: Option<HashMap<String, String>>,
    stale_runs: &mut std::collections::BTreeSet<String>,
) -> bool {
    let labels = labels.unwrap_or_default();
    if owner_alive(&labels) {
        return false;
    }
    if let Some(run) = labels.get(RUN_LABEL) {
        stale_runs.insert(run.clone());
    }
    true
}

/// Cleanup of a dead run's leftovers is best effort: a failure is only a warning, and an
/// object someone else removed meanwhile is not even that.
pub(super) fn warn_unless_gone(what: &str, id: &str, removed: Result<(), DockerError>) {
    if let Err(e) = removed {
        if !is_not_found(&e) {
            eprintln!("faultline run: warning: removing stale {what} {id}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_identifies_this_process() {
        let pid = std::process::id();
        let labels: HashMap<String, String> = [
            (PID_LABEL.to_string(), pid.to_string()),
            (PID_START_LABEL.to_string(), process_start(pid).unwrap()),
        ]
        .into();
        assert!(owner_alive(&labels));
        let mut wrong = labels.clone();
        wrong.insert(PID_START_LABEL.into(), "1".into());
        assert!(!owner_alive(&wrong));
        assert!(!owner_alive(&HashMap::new()));
    }
}
