//! The SQS queue: a standard queue plus its dead-letter queue (DLQ), as `template.yaml`
//! creates them. SQS keeps the visibility timeout and the receive count itself; tagsync adds
//! only what SQS lacks: a reason on parked messages (message attributes on the DLQ copy) and
//! a redrive that moves messages by id.

use crate::aws_error;
use crate::domain::{Job, Timestamp};
use crate::ports::{Clock, DeadLetter, Delivery, Queue, QueueCounts, QueueError, SystemClock};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// SQS's limit on messages per batch call and per receive.
const MAX_BATCH: usize = 10;
/// SQS's longest visibility timeout (12 h) and longest long poll (20 s).
const MAX_VISIBILITY_SECS: u64 = 12 * 3600;
const MAX_WAIT_SECS: u64 = 20;
/// SQS's longest message delay (15 minutes).
const MAX_DELAY_SECS: u64 = 900;
/// Listing dead letters receives them; they are hidden this long at most, in case putting
/// them straight back fails.
const LISTING_VISIBILITY_SECS: i32 = 2;
/// Messages a redrive passes over are hidden while it walks the DLQ, then put back.
const REDRIVE_VISIBILITY_SECS: i32 = 30;
/// The wait of each DLQ receive: a long poll (unlike a short one) asks every SQS server, so an
/// empty answer means the DLQ is empty.
const DLQ_WAIT_SECS: i32 = 1;

/// Message attributes of a parked message.
const ATTR_REASON: &str = "reason";
const ATTR_SOURCE_MESSAGE_ID: &str = "source_message_id";
const ATTR_PARKED_AT: &str = "parked_at";
/// The main queue's receive count when parked (the DLQ's own count grows with every listing).
const ATTR_RECEIVE_COUNT: &str = "receive_count";

/// Messages SQS itself moved after `maxReceiveCount` receives carry no reason of ours.
const REDRIVE_POLICY_REASON: &str = "moved by the queue's redrive policy after too many receives";

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dlq_url: String,
    max_receives: u32,
    requests: Arc<SqsRequests>,
}

/// The SQS requests this queue made, by API action (SQS bills per request; a batch of up to
/// 10 messages is one). The cost table in BENCHMARKS.md is counted with it.
#[derive(Debug, Default)]
pub struct SqsRequests(Mutex<BTreeMap<&'static str, u64>>);

impl SqsRequests {
    pub fn count(&self, action: &'static str) {
        *self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(action)
            .or_default() += 1;
    }

    /// Requests so far, by action.
    pub fn by_action(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: String, dlq_url: String, max_receives: u32) -> Self {
        Self {
            client,
            queue_url,
            dlq_url,
            max_receives,
            requests: Arc::default(),
        }
    }

    /// The requests this queue made so far (see [`SqsRequests`]).
    pub fn requests(&self) -> Arc<SqsRequests> {
        self.requests.clone()
    }

    /// The client, for one request of `action`, counted.
    fn client_for(&self, action: &'static str) -> &Client {
        self.requests.count(action);
        &self.client
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// One receive from the DLQ, with our attributes.
    async fn receive_dead(
        &self,
        max: usize,
        visibility_secs: i32,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client_for("ReceiveMessage")
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .visibility_timeout(visibility_secs)
            .wait_time_seconds(DLQ_WAIT_SECS)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &self.dlq_url, e))?;
        Ok(out.messages().to_vec())
    }

    /// Makes DLQ messages visible again; failures only delay them by their short visibility.
    async fn release_dead(&self, receipts: &[String]) {
        for receipt in receipts {
            if let Err(e) = self
                .client_for("ChangeMessageVisibility")
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
            {
                tracing::warn!(queue = %self.dlq_url, error = %DisplayErrorContext(&e), "could not make a dead letter visible again");
            }
        }
    }

    async fn delete(
        &self,
        queue_url: &str,
        message_id: &str,
        receipt: &str,
    ) -> Result<(), QueueError> {
        self.client_for("DeleteMessage")
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| receipt_error("DeleteMessage", message_id, queue_url, e))?;
        Ok(())
    }

    /// Moves the DLQ messages `wanted` names (all when `None`); see [`Queue::redrive`].
    async fn redrive_walk(
        &self,
        wanted: Option<&HashSet<&str>>,
        passed_over: &mut Vec<String>,
    ) -> Result<usize, QueueError> {
        let mut moved = 0;
        let mut moved_ids = HashSet::new();
        let mut seen = HashSet::new();
        loop {
            if wanted.is_some_and(|w| w.iter().all(|id| moved_ids.contains(*id))) {
                return Ok(moved);
            }
            let messages = self
                .receive_dead(MAX_BATCH, REDRIVE_VISIBILITY_SECS)
                .await?;
            let mut progressed = false;
            for m in &messages {
                let (Some(dlq_id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    continue;
                };
                progressed |= seen.insert(dlq_id.to_string());
                let id = stable_id(m);
                if wanted.is_some_and(|w| !w.contains(id.as_str())) {
                    passed_over.push(receipt.to_string());
                    continue;
                }
                // Send before delete: a failure in between leaves a duplicate, never a loss.
                self.client_for("SendMessage")
                    .send_message()
                    .queue_url(&self.queue_url)
                    .message_body(m.body().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| sqs_error("SendMessage", &self.queue_url, e))?;
                self.delete(&self.dlq_url, &id, receipt).await?;
                moved_ids.insert(id);
                moved += 1;
            }
            // Empty, or only messages we already passed over (their visibility lapsed): done.
            if !progressed {
                return Ok(moved);
            }
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for chunk in jobs.chunks(MAX_BATCH) {
            // Entry ids are positions in the chunk, so failures map back to their job.
            let mut pending = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job).map_err(|e| {
                        QueueError::Invalid(format!("job {} does not encode: {e}", job.id))
                    })?;
                    Ok((i.to_string(), body))
                })
                .collect::<Result<Vec<(String, String)>, QueueError>>()?;
            // Per-entry failures (e.g. throttling of one entry) get one more try.
            for attempt in 1..=2 {
                let entries = pending
                    .iter()
                    .map(|(id, body)| {
                        SendMessageBatchRequestEntry::builder()
                            .id(id)
                            .message_body(body)
                            .build()
                            .map_err(|e| build_error("SendMessageBatch", e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = self
                    .client_for("SendMessageBatch")
                    .send_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| sqs_error("SendMessageBatch", &self.queue_url, e))?;
                if out.failed().is_empty() {
                    break;
                }
                if attempt == 2 {
                    let details = out
                        .failed()
                        .iter()
                        .map(|f| {
                            let job = f
                                .id()
                                .parse::<usize>()
                                .ok()
                                .and_then(|i| chunk.get(i))
                                .map_or_else(|| f.id().to_string(), |j| j.id.to_string());
                            format!("job {job}: {}: {}", f.code(), f.message().unwrap_or(""))
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(QueueError::Unavailable {
                        op: "SendMessageBatch",
                        message: format!(
                            "{} of {} jobs not stored in {} after a retry: {details}",
                            out.failed().len(),
                            jobs.len(),
                            self.queue_url
                        ),
                    });
                }
                let failed: HashSet<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|(id, _)| failed.contains(id.as_str()));
            }
        }
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let out = self
            .client_for("ReceiveMessage")
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.min(MAX_BATCH) as i32)
            .visibility_timeout(whole_secs(visibility, MAX_VISIBILITY_SECS))
            // Rounded down: never wait longer than the caller allowed.
            .wait_time_seconds(wait.as_secs().min(MAX_WAIT_SECS) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sqs_error("ReceiveMessage", &self.queue_url, e))?;
        out.messages()
            .iter()
            .map(|m| {
                let (Some(message_id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                    return Err(QueueError::Invalid(format!(
                        "{} returned a message without id or receipt",
                        self.queue_url
                    )));
                };
                let body = m.body().unwrap_or_default();
                Ok(Delivery {
                    job: serde_json::from_str(body).map_err(|_| body.to_string()),
                    message_id: message_id.to_string(),
                    receipt: receipt.to_string(),
                    receive_count: system_receive_count(m).unwrap_or(1),
                })
            })
            .collect()
    }

    /// `ChangeMessageVisibility` from now; SQS refuses to hold a message more than 12 hours
    /// after its receive, which then shows as an error here.
    async fn extend(&self, delivery: &Delivery, visibility: Duration) -> Result<(), QueueError> {
        self.hide_for(delivery, visibility).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.delete(&self.queue_url, &delivery.message_id, &delivery.receipt)
            .await
    }

    /// SQS has nowhere to keep `error`: the worker logs it. The message stays in flight until
    /// the delay lapses, so `counts` shows it as in flight, not pending.
    async fn retry(
        &self,
        delivery: &Delivery,
        delay: Duration,
        _error: &str,
    ) -> Result<(), QueueError> {
        self.hide_for(delivery, delay).await
    }

    /// A fresh copy with a delay (SQS counts receives per message, and a visibility change
    /// would count this one), then the received one deleted. A crash between the two leaves
    /// both: the duplicate runs as a duplicate of the job, which changes nothing.
    async fn reschedule(
        &self,
        delivery: &Delivery,
        delay: Duration,
        _reason: &str,
    ) -> Result<(), QueueError> {
        let body = match &delivery.job {
            Ok(job) => serde_json::to_string(job)
                .map_err(|e| QueueError::Invalid(format!("job {} does not encode: {e}", job.id)))?,
            Err(raw) => raw.clone(),
        };
        self.client_for("SendMessage")
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(whole_secs(delay, MAX_DELAY_SECS))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessage", &self.queue_url, e))?;
        self.ack(delivery).await
    }

    async fn park(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        let body = match &delivery.job {
            Ok(job) => serde_json::to_string(job)
                .map_err(|e| QueueError::Invalid(format!("job {} does not encode: {e}", job.id)))?,
            Err(raw) => raw.clone(),
        };
        // SQS refuses empty attribute values.
        let reason = if reason.is_empty() {
            "(no reason given)"
        } else {
            reason
        };
        let parked_at = SystemClock.now().millis();
        // Sent before the delete: a failure in between leaves the job in both queues (it is
        // level-triggered, so a duplicate is harmless), never in neither.
        self.client_for("SendMessage")
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(body)
            .message_attributes(ATTR_REASON, attribute("String", reason)?)
            .message_attributes(
                ATTR_SOURCE_MESSAGE_ID,
                attribute("String", &delivery.message_id)?,
            )
            .message_attributes(ATTR_PARKED_AT, attribute("Number", &parked_at.to_string())?)
            .message_attributes(
                ATTR_RECEIVE_COUNT,
                attribute("Number", &delivery.receive_count.to_string())?,
            )
            .send()
            .await
            .map_err(|e| sqs_error("SendMessage", &self.dlq_url, e))?;
        self.delete(&self.queue_url, &delivery.message_id, &delivery.receipt)
            .await
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let (main, dead) = tokio::try_join!(
            self.queue_numbers(
                &self.queue_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesDelayed,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            ),
            self.queue_numbers(
                &self.dlq_url,
                &[
                    QueueAttributeName::ApproximateNumberOfMessages,
                    QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                ],
            ),
        )?;
        Ok(QueueCounts {
            pending: main[0] + main[1],
            in_flight: main[2],
            // Not-visible dead letters are being listed or redriven right now: still dead.
            dead: dead[0] + dead[1],
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut out = Vec::new();
        let mut receipts = Vec::new();
        let mut seen = HashSet::new();
        let listed = async {
            while out.len() < limit {
                let messages = self
                    .receive_dead(limit - out.len(), LISTING_VISIBILITY_SECS)
                    .await?;
                let mut progressed = false;
                for m in &messages {
                    if let Some(receipt) = m.receipt_handle() {
                        receipts.push(receipt.to_string());
                    }
                    // A listing slower than the short visibility sees its first messages again.
                    if seen.insert(m.message_id().unwrap_or_default().to_string()) {
                        progressed = true;
                        out.push(dead_letter(m));
                    }
                }
                if !progressed {
                    break;
                }
            }
            Ok::<_, QueueError>(())
        }
        .await;
        // Put them straight back: listing must not hide dead letters from a redrive.
        self.release_dead(&receipts).await;
        listed?;
        out.truncate(limit);
        Ok(out)
    }

    async fn redrive(&self, message_ids: Option<&[String]>) -> Result<usize, QueueError> {
        let wanted: Option<HashSet<&str>> =
            message_ids.map(|ids| ids.iter().map(String::as_str).collect());
        if wanted.as_ref().is_some_and(HashSet::is_empty) {
            return Ok(0);
        }
        let mut passed_over = Vec::new();
        let moved = self.redrive_walk(wanted.as_ref(), &mut passed_over).await;
        self.release_dead(&passed_over).await;
        moved
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

impl SqsQueue {
    /// `ChangeMessageVisibility`: the delivery stays hidden `visibility` from now (at most
    /// 12 hours after its receive, which SQS enforces).
    async fn hide_for(&self, delivery: &Delivery, visibility: Duration) -> Result<(), QueueError> {
        self.client_for("ChangeMessageVisibility")
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(whole_secs(visibility, MAX_VISIBILITY_SECS))
            .send()
            .await
            .map_err(|e| {
                receipt_error(
                    "ChangeMessageVisibility",
                    &delivery.message_id,
                    &self.queue_url,
                    e,
                )
            })?;
        Ok(())
    }

    /// The named numeric attributes of a queue, in order (missing ones read as 0).
    async fn queue_numbers(
        &self,
        queue_url: &str,
        names: &[QueueAttributeName],
    ) -> Result<Vec<u64>, QueueError> {
        let out = self
            .client_for("GetQueueAttributes")
            .get_queue_attributes()
            .queue_url(queue_url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| sqs_error("GetQueueAttributes", queue_url, e))?;
        let attributes = out.attributes();
        names
            .iter()
            .map(|name| match attributes.and_then(|a| a.get(name)) {
                None => Ok(0),
                Some(v) => v.parse().map_err(|_| QueueError::Unavailable {
                    op: "GetQueueAttributes",
                    message: format!("{queue_url}: {name} is not a count: {v}"),
                }),
            })
            .collect()
    }
}

/// Creates `{name}-dlq` and `{name}` as `template.yaml` does (visibility timeout 360 s,
/// retention 4 days / 14 days, a redrive policy with maxReceiveCount 5 pointing at the DLQ;
/// not the managed encryption); returns `(queue_url, dlq_url)`. Used by tests.
pub async fn create_queues(client: &Client, name: &str) -> Result<(String, String), QueueError> {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = client
        .create_queue()
        .queue_name(&dlq_name)
        // Longer than the queue's: a moved message keeps its original enqueue time.
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| sqs_error("CreateQueue", &dlq_name, e))?
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| QueueError::Invalid(format!("CreateQueue {dlq_name} returned no url")))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", &dlq_url, e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| QueueError::Invalid(format!("{dlq_url} has no QueueArn")))?;
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": "5",
    })
    .to_string();
    let queue_url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "360")
        .attributes(QueueAttributeName::MessageRetentionPeriod, "345600")
        .attributes(QueueAttributeName::RedrivePolicy, redrive_policy)
        .send()
        .await
        .map_err(|e| sqs_error("CreateQueue", name, e))?
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| QueueError::Invalid(format!("CreateQueue {name} returned no url")))?;
    Ok((queue_url, dlq_url))
}

/// Whole seconds for SQS, rounded up so a sub-second timeout does not become "now".
fn whole_secs(d: Duration, max: u64) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.min(max) as i32
}

fn system_receive_count(m: &Message) -> Option<u32> {
    m.attributes()?
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)?
        .parse()
        .ok()
}

fn message_attribute<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.message_attributes()?.get(name)?.string_value()
}

/// The id a dead letter is known by: the main queue's message id it was parked from (what the
/// worker logged), else the DLQ message's own (SQS keeps the id when its redrive policy moves
/// a message).
fn stable_id(m: &Message) -> String {
    message_attribute(m, ATTR_SOURCE_MESSAGE_ID)
        .or(m.message_id())
        .unwrap_or_default()
        .to_string()
}

fn dead_letter(m: &Message) -> DeadLetter {
    let body = m.body().unwrap_or_default().to_string();
    DeadLetter {
        message_id: stable_id(m),
        job: serde_json::from_str(&body).ok(),
        body,
        reason: message_attribute(m, ATTR_REASON)
            .unwrap_or(REDRIVE_POLICY_REASON)
            .to_string(),
        receive_count: message_attribute(m, ATTR_RECEIVE_COUNT)
            .and_then(|v| v.parse().ok())
            .or_else(|| system_receive_count(m))
            .unwrap_or(0),
        parked_at: message_attribute(m, ATTR_PARKED_AT)
            .and_then(|v| v.parse().ok())
            .map(Timestamp::from_millis),
    }
}

fn attribute(data_type: &str, value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type(data_type)
        .string_value(value)
        .build()
        .map_err(|e| build_error("SendMessage", e))
}

fn build_error(op: &str, err: BuildError) -> QueueError {
    QueueError::Invalid(format!("building an SQS {op} request: {err}"))
}

/// Errors of calls that present a receipt: a receipt that no longer names an in-flight
/// delivery is `StaleReceipt`, anything else as [`sqs_error`].
fn receipt_error<E>(
    op: &'static str,
    message_id: &str,
    queue_url: &str,
    err: SdkError<E, HttpResponse>,
) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default();
    let text = err.message().unwrap_or_default();
    // AWS answers an expired receipt with InvalidParameterValue naming the receipt handle.
    let stale = matches!(
        code,
        "ReceiptHandleIsInvalid"
            | "MessageNotInflight"
            | "AWS.SimpleQueueService.MessageNotInflight"
    ) || (code == "InvalidParameterValue"
        && text.to_ascii_lowercase().contains("receipt"));
    if stale {
        return QueueError::StaleReceipt(format!(
            "{op} of message {message_id} on {queue_url}: {code}: {text}"
        ));
    }
    sqs_error(op, queue_url, err)
}

/// A failure that may pass is `Unavailable` (retry later); any other means the request itself
/// is wrong (`Invalid`) ([`aws_error::classify`]; SQS has no "later" codes beyond throttling).
fn sqs_error<E>(op: &'static str, target: &str, err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    aws_error::classify(op, target, &err, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds_and_cap() {
        assert_eq!(whole_secs(Duration::ZERO, MAX_VISIBILITY_SECS), 0);
        assert_eq!(whole_secs(Duration::from_millis(1), MAX_VISIBILITY_SECS), 1);
        assert_eq!(
            whole_secs(Duration::from_millis(2000), MAX_VISIBILITY_SECS),
            2
        );
        assert_eq!(
            whole_secs(Duration::from_secs(86_400), MAX_VISIBILITY_SECS),
            43_200
        );
    }
}
