//! Log setup shared by every entry point: JSON lines (one object per event, with the span
//! fields — tenant, job id, request id) or human-readable text.

use tracing_subscriber::EnvFilter;

/// `json` selects JSON lines; anything else human-readable text. The level comes from
/// `RUST_LOG` (default `info`). Lambda's advanced logging controls set
/// `AWS_LAMBDA_LOG_FORMAT=JSON`, which `functions/` pass through here.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Ignore a second init (tests may call it more than once).
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Whether the environment asks for JSON logs (Lambda's `AWS_LAMBDA_LOG_FORMAT=JSON`, or
/// `TAGSYNC_LOG_FORMAT=json`).
pub fn json_requested() -> bool {
    let is_json = |v: &str| std::env::var(v).is_ok_and(|s| s.eq_ignore_ascii_case("json"));
    is_json("AWS_LAMBDA_LOG_FORMAT") || is_json("TAGSYNC_LOG_FORMAT")
}
