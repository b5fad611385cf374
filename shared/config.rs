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
    /// `TAGSYNC_WECOM_RATE_SHARE`: the share of WeCom's rate limits tagsync spends.
    pub wecom_budget: crate::wecom::budget::BudgetConfig,
    /// `TAGSYNC_MALL_RATE`: the requests a second tagsync sends each tenant's mall at most (the
    /// contract's default limit, 50; `off`: unpaced).
    pub mall_rate_per_sec: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How long a received job stays invisible to other workers.
    pub visibility: Duration,
    /// First retry delay; doubles per receive up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a job may run before the worker stops it (see [`Self::run_cap`]); the
    /// heartbeat keeps a running job invisible, so this is what ends one that hangs.
    pub max_run: Duration,
}

impl WorkerConfig {
    /// The longest one run of a job may take: `max_run` (15 minutes, a Lambda's own
    /// maximum, so a job that fits one fits `serve`), or the visibility timeout if that is
    /// longer. A job stopped at its cap counts as a failed try (retried, parked after the
    /// last one with the reason).
    pub fn run_cap(&self) -> Duration {
        self.max_run.max(self.visibility)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            visibility: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            max_run: Duration::from_secs(15 * 60),
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
        Self::new(admin_token, std::env::var("TAGSYNC_WECOM_API_BASE").ok())?
            .with_env_budget()?
            .with_env_mall_rate()
    }

    /// Reads `TAGSYNC_MALL_RATE` (requests a second, or `off`) when it is set.
    pub fn with_env_mall_rate(mut self) -> Result<Self, ConfigError> {
        let Some(raw) = std::env::var("TAGSYNC_MALL_RATE")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            return Ok(self);
        };
        self.mall_rate_per_sec = match raw.trim() {
            "off" => None,
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(ConfigError(format!(
                        "TAGSYNC_MALL_RATE `{raw}` is neither a positive number nor `off`"
                    )));
                }
            },
        };
        Ok(self)
    }

    /// Reads `TAGSYNC_WECOM_RATE_SHARE` (a fraction, 0 < share ≤ 1, of WeCom's 10,000 calls a
    /// minute and 150,000 an hour per corp and API; default 0.6) when it is set.
    pub fn with_env_budget(mut self) -> Result<Self, ConfigError> {
        use crate::wecom::budget::BudgetConfig;
        let Some(raw) = std::env::var("TAGSYNC_WECOM_RATE_SHARE")
            .ok()
            .filter(|s| !s.is_empty())
        else {
            return Ok(self);
        };
        match raw.parse::<f64>() {
            Ok(share) if share > 0.0 && share <= 1.0 => {
                self.wecom_budget = BudgetConfig::share(share);
                Ok(self)
            }
            _ => Err(ConfigError(format!(
                "TAGSYNC_WECOM_RATE_SHARE `{raw}` is not a fraction above 0 and at most 1"
            ))),
        }
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
            wecom_budget: Default::default(),
            mall_rate_per_sec: Some(crate::mall::client::DEFAULT_MALL_RATE_PER_SEC),
        })
    }
}

/// The environment variable holding `serve`'s secret key (base64 of 32 bytes).
pub const SECRET_KEY_ENV: &str = "TAGSYNC_SECRET_KEY";

/// Where `tagsync serve`'s secret key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Env,
    File(std::path::PathBuf),
    /// Made on this start, because the key file did not exist.
    Generated(std::path::PathBuf),
}

/// The default key file: `$XDG_CONFIG_HOME/tagsync/secret-key`, else
/// `$HOME/.config/tagsync/secret-key` — the user's configuration, not the data directory, so
/// a copy or backup of the data directory holds no key.
pub fn default_key_file() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("tagsync").join("secret-key"))
}

/// `tagsync serve`'s secret key, which seals tenant secrets in the store: `env_key` (the value
/// of `TAGSYNC_SECRET_KEY`), or the key file (`key_file`, else [`default_key_file`]), made on
/// first start if missing. A key file inside `data_dir` is refused: the point of the key is
/// that a copy of the data directory does not carry it.
pub fn serve_secret_key(
    data_dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
    env_key: Option<String>,
) -> Result<(crate::store::sealing::SecretKey, KeyOrigin), ConfigError> {
    use crate::store::sealing::SecretKey;
    if let Some(text) = env_key {
        if key_file.is_some() {
            return Err(ConfigError(format!(
                "both {SECRET_KEY_ENV} and a key file are given: give one"
            )));
        }
        let key = SecretKey::from_base64(&text)
            .map_err(|e| ConfigError(format!("{SECRET_KEY_ENV}: {e}")))?;
        return Ok((key, KeyOrigin::Env));
    }
    let path = match key_file {
        Some(p) => p.to_path_buf(),
        None => default_key_file().ok_or_else(|| {
            ConfigError(format!(
                "no secret key: set {SECRET_KEY_ENV} or --secret-key-file (neither \
                 XDG_CONFIG_HOME nor HOME is set, so there is no default key file)"
            ))
        })?,
    };
    if is_inside(&path, data_dir) {
        return Err(ConfigError(format!(
            "secret key file {} is inside the data directory {}: keep it apart (a copy or \
             backup of the data directory must not carry the key that opens its secrets)",
            path.display(),
            data_dir.display()
        )));
    }
    let in_file =
        |e: &dyn std::fmt::Display| ConfigError(format!("secret key file {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            warn_if_shared(&path);
            let key = SecretKey::from_base64(&text).map_err(|e| in_file(&e))?;
            Ok((key, KeyOrigin::File(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = write_new_key(&path).map_err(|e| in_file(&e))?;
            Ok((key, KeyOrigin::Generated(path)))
        }
        Err(e) => Err(in_file(&e)),
    }
}

/// Whether `path` lies inside `dir` (both resolved as far as they exist).
fn is_inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    let resolve = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let file = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => resolve(parent).join(name),
        _ => resolve(path),
    };
    file.starts_with(resolve(dir))
}

/// Warns when a key file can be read by others than its owner.
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "tagsync: warning: secret key file {} is readable by others (mode {mode:o}); chmod 600 it",
                    path.display()
                );
            }
        }
    }
}

/// Writes a fresh key to `path` (0600, its directory 0700 if made here) unless another
/// process wrote one first, in which case that one is read: the file is linked into place
/// only when complete, and never replaced.
fn write_new_key(
    path: &std::path::Path,
) -> Result<crate::store::sealing::SecretKey, Box<dyn std::error::Error>> {
    use crate::store::sealing::SecretKey;
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::store::sqlite::create_private_dir(dir)?;
    }
    let key = SecretKey::generate();
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        f.write_all(format!("{}\n", key.to_base64()).as_bytes())?;
        f.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(SecretKey::from_base64(&std::fs::read_to_string(path)?)?)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_inside_the_data_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let e = serve_secret_key(&data, Some(&data.join("sub").join("key")), None).unwrap_err();
        assert!(e.to_string().contains("inside the data directory"), "{e}");
        // Beside it is apart, and made on first use, then read back.
        let beside = dir.path().join("key");
        let (k1, o1) = serve_secret_key(&data, Some(&beside), None).unwrap();
        assert_eq!(o1, KeyOrigin::Generated(beside.clone()));
        let (k2, o2) = serve_secret_key(&data, Some(&beside), None).unwrap();
        assert_eq!((k1, o2), (k2, KeyOrigin::File(beside)));
    }

    #[test]
    fn the_environment_key_must_be_32_bytes_of_base64_and_alone() {
        let data = std::path::Path::new("/nonexistent-data");
        let key = crate::store::sealing::SecretKey::generate();
        let (k, o) = serve_secret_key(data, None, Some(key.to_base64())).unwrap();
        assert_eq!((k, o), (key.clone(), KeyOrigin::Env));
        let e = serve_secret_key(data, None, Some("c2hvcnQ=".into())).unwrap_err();
        assert!(e.to_string().contains(SECRET_KEY_ENV), "{e}");
        let e = serve_secret_key(
            data,
            Some(std::path::Path::new("/k")),
            Some(key.to_base64()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("give one"), "{e}");
    }
}
