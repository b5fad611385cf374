//! The cloud stand-ins themselves: the world really runs on DynamoDB Local and moto, behind
//! the API Gateway and event source mapping stand-ins.

use crate::steps::*;
use crate::support::world::Backend;

#[tokio::test]
async fn the_cloud_world_runs_on_dynamodb_and_sqs_behind_the_lambda_adapters() {
    assert_eq!(Backend::of_this_binary(), Backend::Cloud);
    let w = start().await;
    let (status, _) = w.request(Method::GET, "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, body) = w.request(Method::GET, "/nowhere", None).await;
    assert_eq!(
        status, 404,
        "API Gateway answers a route it does not have: {body}"
    );
    assert_eq!(body["message"], "Not Found");
    w.stop().await;
}

/// The event source mapping's partial batch failures, on moto's queue: of a dozen jobs (two
/// batches), the one that fails every time is left on the queue after each invocation while
/// the others are deleted and done once; it comes back after its retry delay and is parked on
/// its fifth receive with its reason, as the redrive policy's `maxReceiveCount` says.
#[tokio::test]
async fn a_failing_message_stays_for_its_retries_and_is_parked_on_its_fifth_receive_while_its_batch_is_done()
 {
    use tagsync::domain::{Job, JobKind};
    let w = start().await;
    let probe = |note: String, fail: bool| {
        Job::new(
            w.tenant.clone(),
            JobKind::Probe {
                note,
                fail,
                work_ms: 0,
                panic: false,
            },
            w.app.clock.now(),
        )
    };
    let mut jobs: Vec<Job> = (0..11).map(|i| probe(format!("ok {i}"), false)).collect();
    let failing = probe("fails".into(), true);
    jobs.insert(5, failing.clone());
    w.app.queue.send(&jobs).await.expect("send the jobs to SQS");

    wait_until_within(
        "the failing job is parked",
        std::time::Duration::from_secs(60),
        || async {
            let c = w.app.queue.counts().await.expect("queue counts");
            c.dead == 1 && c.pending == 0 && c.in_flight == 0
        },
    )
    .await;
    let processed: Vec<String> = audit(&w)
        .await
        .into_iter()
        .filter(|e| e.action == "probe.processed")
        .map(|e| e.entity)
        .collect();
    let mut expected: Vec<String> = jobs
        .iter()
        .filter(|j| j.id != failing.id)
        .map(|j| format!("job:{}", j.id))
        .collect();
    let mut seen = processed.clone();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected, "every other job done exactly once");
    let dead = w.app.queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].job.as_ref().map(|j| &j.id), Some(&failing.id));
    assert_eq!(dead[0].receive_count, 5, "{dead:?}");
    assert!(
        dead[0].reason.contains("probe asked to fail")
            && dead[0].reason.contains("gave up after 5 tries"),
        "{}",
        dead[0].reason
    );
    w.stop().await;
}
