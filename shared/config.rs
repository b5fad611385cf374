//! Configuration, read once per process. Secrets are wrapped in [`Secret`] so they never
//! reach a log line.

use crate::domain::Secret;
use std::time::Duration;

pub const DEFAULT_WECOM_API_BASE: &str = "https://qyapi.weixin.qq.com/cgi-bin";

#[derive(Clone, Debug)]
pub struct Config {
    /// Bearer token of every `/admin/` route.
    pub admin_token: Secret,
    /// `TAGSYNC_WECOM_API_BASE`: a proxy or the simulator may stand in for WeCom.
    pub wecom_api_base: String,
    pub worker: WorkerConfig,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How long a received job stays invisible to other workers.
    pub visibility: Duration,
    /// First retry delay; doubles per receive up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `TAGSYNC_ADMIN_TOKEN` (required, at least 16 characters) and
    /// `TAGSYNC_WECOM_API_BASE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let admin_token = std::env::var("TAGSYNC_ADMIN_TOKEN")
            .map_err(|_| ConfigError("TAGSYNC_ADMIN_TOKEN is not set".into()))?;
        Self::new(admin_token, std::env::var("TAGSYNC_WECOM_API_BASE").ok())
    }

    pub fn new(admin_token: String, wecom_api_base: Option<String>) -> Result<Self, ConfigError> {
        if admin_token.len() < 16 {
            return Err(ConfigError(
                "the admin token must be at least 16 characters".into(),
            ));
        }
        let wecom_api_base = wecom_api_base
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_WECOM_API_BASE.to_string());
        reqwest::Url::parse(&wecom_api_base).map_err(|e| {
            ConfigError(format!(
                "TAGSYNC_WECOM_API_BASE `{wecom_api_base}` is not a URL: {e}"
            ))
        })?;
        Ok(Self {
            admin_token: Secret::new(admin_token),
            wecom_api_base: wecom_api_base.trim_end_matches('/').to_string(),
            worker: WorkerConfig::default(),
        })
    }
}
