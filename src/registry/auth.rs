//! Credentials from a docker `config.json`: `auths.<host>.auth` (base64 `user:password`) or
//! its `username` and `password`. Credential helpers (`credsStore`, `credHelpers`) are not
//! run.

use crate::error::{Error, Result};
use base64::Engine as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The key docker writes for Docker Hub.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// The host names Docker Hub goes by in a config.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A user and a password found for a registry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, <redacted>)", self.user)
    }
}

#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`, else `/root/.docker/config.json`.
pub(crate) fn default_config_path() -> PathBuf {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(dir) = non_empty("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".docker/config.json");
    }
    PathBuf::from("/root/.docker/config.json")
}

/// The login `path` holds for `registry`; `None` when the file or the entry is absent.
pub(crate) fn lookup(path: &Path, registry: &str) -> Result<Option<Login>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no docker config: anonymous");
            return Ok(None);
        }
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    parse(&text, registry)
        .map_err(|e| Error::InvalidArgument(format!("docker config {}: {e}", path.display())))
}

/// A config key as a host name: `https://host:5000/v1/` is `host:5000`.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn parse(text: &str, registry: &str) -> Result<Option<Login>, String> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let hub = DOCKER_HUB_HOSTS.contains(&registry);
    let matches = |key: &str| {
        let host = key_host(key);
        host == registry || (hub && DOCKER_HUB_HOSTS.contains(&host))
    };
    // The exact key first, then docker's own key for the Hub, then any key naming the host.
    let entry = config
        .auths
        .get(registry)
        .or_else(|| hub.then(|| config.auths.get(DOCKER_HUB_KEY)).flatten())
        .or_else(|| {
            config
                .auths
                .iter()
                .find(|(key, _)| matches(key))
                .map(|(_, entry)| entry)
        });
    let found = match entry {
        Some(entry) => login(entry).map_err(|e| format!("auths entry for {registry}: {e}"))?,
        None => None,
    };
    if found.is_none() {
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| matches(key))
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref());
        if let Some(helper) = helper {
            tracing::warn!(
                registry,
                helper = %helper,
                "docker config names a credential helper, which corral does not run: anonymous"
            );
        }
    }
    Ok(found)
}

fn login(entry: &AuthEntry) -> Result<Option<Login>, String> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let engine = base64::engine::general_purpose::STANDARD;
        let decoded = engine
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .map_err(|e| format!("auth is not base64: {e}"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_string())?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| "auth is not user:password".to_string())?;
        return Ok(Some(Login {
            user: user.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(user), Some(password)) if !user.is_empty() => Ok(Some(Login {
            user: user.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn login(user: &str, password: &str) -> Option<Login> {
        Some(Login {
            user: user.into(),
            password: password.into(),
        })
    }

    #[test]
    fn auth_field_and_username_password() {
        let config = format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{}"}},
                "https://ghcr.io": {{"username": "u2", "password": "p:2"}},
                "quay.io": {{}}
            }}}}"#,
            b64("alice:s3cr:et")
        );
        assert_eq!(
            parse(&config, "127.0.0.1:5000").unwrap(),
            login("alice", "s3cr:et"),
            "the password may hold colons"
        );
        assert_eq!(parse(&config, "ghcr.io").unwrap(), login("u2", "p:2"));
        assert_eq!(parse(&config, "quay.io").unwrap(), None, "an empty entry");
        assert_eq!(parse(&config, "127.0.0.1:5001").unwrap(), None);
        assert_eq!(parse("{}", "x").unwrap(), None);
    }

    #[test]
    fn docker_hub_keys() {
        let config = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("hub:pw")
        );
        assert_eq!(parse(&config, "docker.io").unwrap(), login("hub", "pw"));
        assert_eq!(
            parse(&config, "index.docker.io").unwrap(),
            login("hub", "pw")
        );
        assert_eq!(parse(&config, "ghcr.io").unwrap(), None);
        let config = format!(
            r#"{{"auths": {{"docker.io": {{"auth": "{}"}}}}}}"#,
            b64("a:b")
        );
        assert_eq!(parse(&config, "docker.io").unwrap(), login("a", "b"));
        // The exact key wins over an alias.
        let config = format!(
            r#"{{"auths": {{"registry-1.docker.io": {{"auth": "{}"}},
                           "docker.io": {{"auth": "{}"}}}}}}"#,
            b64("alias:x"),
            b64("exact:y")
        );
        assert_eq!(parse(&config, "docker.io").unwrap(), login("exact", "y"));
    }

    #[test]
    fn key_hosts() {
        assert_eq!(key_host("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(key_host("http://h:5000"), "h:5000");
        assert_eq!(key_host("h:5000/"), "h:5000");
        assert_eq!(key_host("h"), "h");
    }

    #[test]
    fn helpers_are_not_run_and_bad_configs_say_so() {
        let config = r#"{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}"#;
        assert_eq!(parse(config, "ghcr.io").unwrap(), None);
        assert!(parse("not json", "x").is_err());
        let bad = r#"{"auths": {"x": {"auth": "!!!"}}}"#;
        assert!(parse(bad, "x").unwrap_err().contains("base64"));
        let bad = format!(r#"{{"auths": {{"x": {{"auth": "{}"}}}}}}"#, b64("nocolon"));
        assert!(parse(&bad, "x").unwrap_err().contains("user:password"));
        // Unpadded base64 is accepted.
        let unpadded = b64("ab:c").trim_end_matches('=').to_string();
        let config = format!(r#"{{"auths": {{"x": {{"auth": "{unpadded}"}}}}}}"#);
        assert_eq!(parse(&config, "x").unwrap(), login("ab", "c"));
    }

    #[test]
    fn files() {
        let dir = std::env::temp_dir().join(format!("corral-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        assert_eq!(lookup(&missing, "x").unwrap(), None);
        let path = dir.join("config.json");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"x":{{"auth":"{}"}}}}}}"#, b64("u:p")),
        )
        .unwrap();
        assert_eq!(lookup(&path, "x").unwrap(), login("u", "p"));
        std::fs::write(&path, "{").unwrap();
        match lookup(&path, "x") {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(&path.display().to_string())),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
