//! The connection to the Docker daemon: connecting (with version negotiation), the
//! backend's own small runtime, and blocking on it from synchronous backend calls.

use crate::backend::BackendError;
use std::future::Future;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::Docker;

/// The one-line answer when the daemon cannot be reached.
pub(super) fn unreachable(e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!(
        "the Docker daemon is not reachable ({e}); start it (`dockerd &`, or `systemctl start docker`) \
         or use --backend sandbox"
    ))
}

/// Connects to the local daemon (`DOCKER_HOST` or `/var/run/docker.sock`) and agrees on an
/// API version, so an older engine (e.g. 20.10, API 1.41) is spoken to in its own version.
pub(super) async fn connect() -> Result<Docker, BackendError> {
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
        .await
        .map_err(|_| unreachable("no answer within 10 s"))?
        .map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// A small multi-thread runtime: `block_on` may be entered from several threads at once.
pub(super) fn own_runtime() -> Result<tokio::runtime::Runtime, BackendError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("docker-backend")
        .enable_all()
        .build()
        .map_err(BackendError::io("starting the Docker backend's runtime"))
}

/// Runs `f` to completion on `rt`, from whatever thread calls.
pub(super) fn block_on<F>(rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(f))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    } else {
        rt.block_on(f)
    }
}

pub(super) fn api_error(what: &str, e: DockerError) -> BackendError {
    BackendError::Failed(format!("{what}: {e}"))
}

/// Whether the daemon said "no such container/network".
pub(super) fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
