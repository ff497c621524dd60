//! Image references, `[registry/]repository[:tag][@digest]`, normalized the way docker does:
//! `docker.io` when no registry is named, `library/` for its one-word repositories and
//! `latest` when neither a tag nor a digest is given.

use crate::error::{Error, Result};
use std::fmt;

/// The registry a reference without one names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference without a tag or a digest names.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository path (registry excluded), as in docker's reference grammar.
const MAX_NAME: usize = 255;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses `reference`; a bad one is [`Error::InvalidArgument`] naming it.
    pub fn parse(reference: &str) -> Result<ImageRef> {
        parse(reference).map_err(|why| {
            Error::InvalidArgument(format!("bad image reference {reference:?}: {why}"))
        })
    }

    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository: `library/alpine`, `busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any (`latest` when the reference had neither a tag nor a digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The reference without its registry (and without `library/` on docker.io), for
    /// messages: `busybox:1`, `alpine:latest`, `foo@sha256:...`.
    pub fn familiar(&self) -> String {
        let repository = match self.repository.strip_prefix("library/") {
            Some(short) if self.registry == DEFAULT_REGISTRY && !short.contains('/') => short,
            _ => &self.repository,
        };
        let mut s = repository.to_string();
        push_suffix(&mut s, self.tag(), self.digest());
        s
    }
}

fn push_suffix(s: &mut String, tag: Option<&str>, digest: Option<&str>) {
    if let Some(tag) = tag {
        s.push(':');
        s.push_str(tag);
    }
    if let Some(digest) = digest {
        s.push('@');
        s.push_str(digest);
    }
}

/// The full normalized name: `127.0.0.1:5000/busybox:1`, `docker.io/library/alpine:latest`,
/// `docker.io/library/alpine@sha256:...`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = format!("{}/{}", self.registry, self.repository);
        push_suffix(&mut s, self.tag(), self.digest());
        f.write_str(&s)
    }
}

fn parse(reference: &str) -> Result<ImageRef, String> {
    if reference.is_empty() {
        return Err("empty".into());
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("contains whitespace".into());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => {
            check_digest(digest)?;
            (rest, Some(digest.to_string()))
        }
        None => (reference, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is the registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &rest[last_slash + i + 1..];
            check_tag(tag)?;
            (&rest[..last_slash + i], Some(tag.to_string()))
        }
        None => (rest, None),
    };
    let (registry, repository) = split_registry(name);
    let registry = match registry {
        Some(registry) => {
            check_registry(registry)?;
            // docker's own alias for Docker Hub.
            if registry == "index.docker.io" {
                DEFAULT_REGISTRY.to_string()
            } else {
                registry.to_string()
            }
        }
        None => DEFAULT_REGISTRY.to_string(),
    };
    check_repository(repository)?;
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    };
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag,
    };
    Ok(ImageRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// docker's rule: the first component is a registry if there is more than one and it has a
/// `.` or a `:`, is `localhost`, or has capitals (a repository never does).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || format!("bad registry {registry:?}");
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        // [ipv6]:port
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components separated by `/`.
fn check_repository(repository: &str) -> Result<(), String> {
    if repository.is_empty() {
        return Err("no repository".into());
    }
    if repository.len() > MAX_NAME {
        return Err(format!("repository longer than {MAX_NAME} characters"));
    }
    for component in repository.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = match (bytes.first(), bytes.last()) {
            (Some(&first), Some(&last)) => alnum(first) && alnum(last),
            _ => false,
        };
        let mut i = 0;
        let mut good = ok;
        while good && i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // A separator run: ".", "_", "__" or any number of "-".
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            good = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        }
        if !good {
            return Err(if component.chars().any(|c| c.is_ascii_uppercase()) {
                format!("repository {repository:?} must be lowercase")
            } else {
                format!("bad repository component {component:?}")
            });
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = tag.len() <= 128
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("bad tag {tag:?}"))
    }
}

/// Only `sha256:<64 lowercase hex>`: what the content store keeps.
fn check_digest(digest: &str) -> Result<(), String> {
    super::manifest::check_digest(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_defaults() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("library/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            norm("index.docker.io/alpine:1"),
            "docker.io/library/alpine:1"
        );
        assert_eq!(norm("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(
            norm("docker.io/bitnami/redis"),
            "docker.io/bitnami/redis:latest"
        );
    }

    #[test]
    fn other_registries() {
        assert_eq!(norm("127.0.0.1:5000/busybox:1"), "127.0.0.1:5000/busybox:1");
        assert_eq!(
            norm("127.0.0.1:5000/busybox"),
            "127.0.0.1:5000/busybox:latest"
        );
        assert_eq!(norm("localhost/a/b/c"), "localhost/a/b/c:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("ghcr.io/o/r:v1.2-rc_3"), "ghcr.io/o/r:v1.2-rc_3");
        assert_eq!(norm("[::1]:5000/x:1"), "[::1]:5000/x:1");
        let r = ImageRef::parse("quay.io/a/b:t").unwrap();
        assert_eq!(r.registry(), "quay.io");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.familiar(), "a/b:t");
    }

    #[test]
    fn digests() {
        let r = ImageRef::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.tag(), None, "a digest alone means no tag, not latest");
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@{D}"));
        assert_eq!(r.familiar(), format!("alpine@{D}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x:1@{D}"));
    }

    #[test]
    fn bad_references_name_themselves() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            &format!("alpine@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "a//b",
            "/alpine",
            "alpine/",
            "a b",
            "host:port/x",
            "127.0.0.1:/x",
            "-a.io/x",
            "a.io/x..y",
            "a.io/x_-y",
            "a.io/",
            &format!("x:{}", "t".repeat(129)),
            &format!("a.io/{}", "x".repeat(256)),
        ] {
            match ImageRef::parse(bad) {
                Err(Error::InvalidArgument(msg)) => {
                    assert!(msg.contains(&format!("{bad:?}")), "{msg}")
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn separators() {
        for good in [
            "a.io/x.y",
            "a.io/x_y",
            "a.io/x__y",
            "a.io/x---y",
            "a.io/x-y/z9",
        ] {
            ImageRef::parse(good).unwrap();
        }
        // Capitals in the first component make it a registry, as in docker.
        assert_eq!(norm("MyHost/x"), "MyHost/x:latest");
    }
}
