//! Waiting until tagsync and both simulators are quiet: the test world and `serve --demo`
//! (between seeding steps) both wait with [`settle_sides`].

use crate::app::App;
use crate::sim::mall::MallSim;
use crate::sim::wecom::WecomSim;
use std::time::Duration;

/// How often [`settle_sides`] looks, and how far apart its two quiet looks are.
const SETTLE_POLL: Duration = Duration::from_millis(15);

/// Waits until nothing is moving between tagsync and the two simulators: no WeCom callback
/// waiting for delivery, every mall webhook delivered or given up, and tagsync's queue with
/// nothing pending (retries in backoff included) or in flight — on two looks in a row, since a
/// job may enqueue another or write to the mall (which then sends a webhook). Parked jobs do
/// not count (the test world reports them apart). `Err` says what was still moving at the deadline.
/// (`serve --demo` waits with it too, between seeding steps.)
pub async fn settle_sides(
    app: &App,
    wecom: &WecomSim,
    mall: &MallSim,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut quiet_looks = 0;
    loop {
        match moving(app, wecom, mall).await {
            None => {
                quiet_looks += 1;
                if quiet_looks == 2 {
                    return Ok(());
                }
            }
            Some(what) => {
                quiet_looks = 0;
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!("not settled after {timeout:?}: {what}"));
                }
            }
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

/// What is still moving, or `None` when everything is quiet.
async fn moving(app: &App, wecom: &WecomSim, mall: &MallSim) -> Option<String> {
    let mut what = Vec::new();
    let undelivered: Vec<String> = wecom
        .callbacks()
        .iter()
        .filter(|c| !c.done)
        .map(|c| format!("#{} {}/{}", c.seq, c.event, c.change_type))
        .collect();
    if !undelivered.is_empty() {
        what.push(format!(
            "WeCom callbacks being delivered: {}",
            undelivered.join(", ")
        ));
    }
    if !mall.webhooks_settled(Duration::ZERO).await {
        what.push("mall webhooks being delivered".to_owned());
    }
    match app.queue.counts().await {
        Ok(c) if c.pending == 0 && c.in_flight == 0 => {}
        Ok(c) => what.push(format!(
            "tagsync's queue: {} pending, {} in flight",
            c.pending, c.in_flight
        )),
        Err(e) => what.push(format!("tagsync's queue cannot be counted: {e}")),
    }
    (!what.is_empty()).then(|| what.join("; "))
}
