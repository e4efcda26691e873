//! An in-process service under test: the task serving on sockets the test
//! bound (port 0), cancelled on drop; [`Service::stop`] cancels it and
//! waits, bounded, for a clean exit.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::PATIENCE;

/// A spawned serving task and its shutdown token.
#[derive(Debug)]
pub struct Service {
    token: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Service {
    /// Spawns `serve(token)` on the current tokio runtime.
    pub fn spawn<F>(serve: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let token = CancellationToken::new();
        let task = tokio::spawn(serve(token.clone()));
        Self {
            token,
            task: Some(task),
        }
    }

    /// Cancels the service and waits (bounded by [`PATIENCE`]) until it
    /// returns; panics unless it returns `Ok`.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the service stops on cancel")
                .expect("service task")
                .expect("service result");
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_cancels_and_waits() {
        let s = Service::spawn(|token| async move {
            token.cancelled().await;
            Ok(())
        });
        s.stop().await;
    }

    #[tokio::test]
    #[should_panic(expected = "service result")]
    async fn an_error_on_the_way_out_fails_the_test() {
        let s = Service::spawn(|token| async move {
            token.cancelled().await;
            Err(std::io::Error::other("boom"))
        });
        s.stop().await;
    }
}
