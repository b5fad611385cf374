//! In-process concurrency shared by the routes and the jobs: a bounded fan-out ([`bounded`])
//! and named locks ([`Locks`], held by [`crate::app::App`]; the jobs add the store lease on
//! top, see `jobs::lock`). Kept apart from both so `App` does not depend on the jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// In-process locks by name, so jobs of one process wait for each other without polling the
/// store; the store lease then covers other processes (Lambda instances).
#[derive(Default)]
pub struct Locks {
    held: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    pub(crate) fn get(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = held.get(name).and_then(Weak::upgrade) {
            return m;
        }
        held.retain(|_, w| w.strong_count() > 0);
        let m = Arc::new(tokio::sync::Mutex::new(()));
        held.insert(name.to_owned(), Arc::downgrade(&m));
        m
    }
}

/// Runs `f` over `items`, at most `limit` at once, and answers the results in the order of
/// `items`; a task that panicked is an error. (`futures` is not a dependency: a `JoinSet`
/// keeps the window full.) Each task runs in the caller's span.
pub async fn bounded<I, T, F, Fut>(
    items: Vec<I>,
    limit: usize,
    f: F,
) -> Result<Vec<T>, tokio::task::JoinError>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    use tracing::Instrument;
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let mut running = tokio::task::JoinSet::new();
    let span = tracing::Span::current();
    for (i, item) in items.into_iter().enumerate() {
        if running.len() >= limit.max(1)
            && let Some(r) = running.join_next().await
        {
            let (j, v) = r?;
            out[j] = Some(v);
        }
        let work = f(item);
        running.spawn(async move { (i, work.await) }.instrument(span.clone()));
    }
    while let Some(r) = running.join_next().await {
        let (j, v) = r?;
        out[j] = Some(v);
    }
    Ok(out.into_iter().flatten().collect())
}
