//! What a failed AWS SDK call means for its caller, decided one way for every AWS adapter (the
//! DynamoDB store, the SQS queue), as the port's own error. The SDK crates share smithy's
//! error types; they are named here through one of them.

use crate::ports::{QueueError, StoreError};
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// A port's error an AWS failure becomes: each port has the same two cases for it.
pub trait AwsPortError {
    /// Throttling, a server-side or transport error, or one of the service's own "try later"
    /// codes: the same request may succeed later.
    fn later(op: &'static str, message: String) -> Self;
    /// Anything else is the request's own fault, so retrying will not help.
    fn wrong(message: String) -> Self;
}

macro_rules! port_error {
    ($($port:ty),*) => {$(
        impl AwsPortError for $port {
            fn later(op: &'static str, message: String) -> Self {
                Self::Unavailable { op, message }
            }
            fn wrong(message: String) -> Self {
                Self::Invalid(message)
            }
        }
    )*};
}

port_error!(StoreError, QueueError);

/// `err`, the failure of `op` on `target`, as the port's error; `retryable_codes` are the
/// service's error codes that mean "later" beyond throttling (any code naming it) and server
/// errors. The message names the call: `{op} on {target}: {code}: {message}` (a service
/// error) or `{target}: {error}` (transport).
pub fn classify<T: AwsPortError, E>(
    op: &'static str,
    target: &str,
    err: &SdkError<E, HttpResponse>,
    retryable_codes: &[&str],
) -> T
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let server_side = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let Some(service) = err.as_service_error() else {
        return T::later(op, format!("{target}: {}", DisplayErrorContext(err)));
    };
    let code = service.code().unwrap_or("Unknown");
    let message = format!(
        "{op} on {target}: {code}: {}",
        service.message().unwrap_or("no message")
    );
    if server_side || code.contains("Throttl") || retryable_codes.contains(&code) {
        T::later(op, message)
    } else {
        T::wrong(message)
    }
}
