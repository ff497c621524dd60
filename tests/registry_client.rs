#![allow(clippy::unwrap_used)]
//! corral::registry against a real registry: Debian's `docker-registry` (distribution 2.8),
//! one per test on its own loopback port, killed when the test ends. Skipped (with a note)
//! where /usr/bin/docker-registry is not installed.

use base64::Engine as _;
use corral::registry::{self, Remote};
use corral::{
    Credentials, Descriptor, Error, Platform, RemoteOptions, MEDIA_DOCKER_CONFIG,
    MEDIA_DOCKER_LAYER_GZIP, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_CONFIG, MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER_GZIP, MEDIA_OCI_MANIFEST,
};
use futures_util::stream::{self, StreamExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process on a free loopback port, with its storage in a temp dir.
struct Registry {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Registry {
    /// `None` (after a note) when docker-registry is not installed.
    fn start(test: &str, htpasswd: Option<(&str, &str)>) -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            eprintln!("note: {REGISTRY_BIN} is not installed; skipping {test}");
            return None;
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "corral-registry-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = match htpasswd {
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apache2-utils) for the auth tests");
                assert!(out.status.success());
                std::fs::write(dir.join("htpasswd"), out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: corral-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: 127.0.0.1:{port}\n{auth}",
                    dir.join("data").display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut registry = Registry {
                child,
                dir: dir.clone(),
                port,
            };
            if registry.wait_ready() {
                return Some(registry);
            }
            // Lost the port to someone else, most likely: kill it (the drop does) and try
            // another, keeping the directory and its log.
            registry.dir = PathBuf::new();
        }
        panic!("docker-registry did not start; see {}", dir.display());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn remote(&self, repo_tag: &str, credentials: Credentials) -> Remote {
        Remote::new(
            &format!("{}/{repo_tag}", self.host()),
            &RemoteOptions {
                plain_http: true,
                credentials,
            },
        )
        .unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: corral::content::digest_of(bytes),
        size: bytes.len() as u64,
    }
}

/// `bytes` as a stream of small pieces, as a file reader would send them.
fn pieces(
    bytes: &[u8],
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let chunks: Vec<std::io::Result<bytes::Bytes>> = bytes
        .chunks(7000)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

async fn collect(remote: &Remote, d: &Descriptor, offset: u64) -> (bool, Vec<u8>) {
    let body = remote.blob(d, offset).await.unwrap();
    let mut out = Vec::new();
    let mut stream = body.stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (body.restarted, out)
}

fn layer_bytes() -> Vec<u8> {
    // Not compressible, not repetitive: a small xorshift.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn oci_manifest(config: &Descriptor, layer: &Descriptor) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": config,
        "layers": [layer],
    }))
    .unwrap()
}

#[test]
fn push_resolve_pull_roundtrip() {
    let Some(reg) = Registry::start("roundtrip", None) else {
        return;
    };
    block_on(async {
        let remote = reg.remote("corral/test:1", Credentials::Anonymous);
        let config_bytes =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = layer_bytes();
        let config = desc(MEDIA_OCI_CONFIG, config_bytes);
        let layer_desc = desc(MEDIA_OCI_LAYER_GZIP, &layer);

        assert!(!remote.blob_exists(&layer_desc.digest).await.unwrap());
        assert!(remote.push_blob(&layer_desc, pieces(&layer)).await.unwrap());
        assert!(
            !remote.push_blob(&layer_desc, pieces(&layer)).await.unwrap(),
            "already there"
        );
        assert!(remote
            .push_blob(&config, pieces(config_bytes))
            .await
            .unwrap());
        assert!(remote.blob_exists(&layer_desc.digest).await.unwrap());

        let manifest = oci_manifest(&config, &layer_desc);
        remote
            .push_manifest(MEDIA_OCI_MANIFEST, manifest.clone())
            .await
            .unwrap();
        let (got, bytes) = remote.resolve().await.unwrap();
        assert_eq!(bytes, manifest, "byte-identical");
        assert_eq!(got, desc(MEDIA_OCI_MANIFEST, &manifest));
        let refs = registry::parse_manifest(&bytes).unwrap();
        assert_eq!(refs.config, config);
        assert_eq!(refs.layers[0].descriptor, layer_desc);

        // By digest, from a Remote made for another reference.
        let by_digest = remote
            .with_reference(&format!("{}/corral/test@{}", reg.host(), got.digest))
            .unwrap();
        assert_eq!(
            by_digest.name(),
            format!("{}/corral/test@{}", reg.host(), got.digest)
        );
        assert_eq!(
            by_digest.resolve().await.unwrap(),
            (got.clone(), manifest.clone())
        );

        // Whole, from an offset, from the end.
        assert_eq!(
            collect(&remote, &layer_desc, 0).await,
            (false, layer.clone())
        );
        let (restarted, tail) = collect(&remote, &layer_desc, 123_457).await;
        assert!(!restarted, "docker-registry honours Range");
        assert_eq!(tail, layer[123_457..]);
        assert_eq!(
            collect(&remote, &layer_desc, layer.len() as u64).await,
            (false, vec![])
        );
        assert!(matches!(
            remote.blob(&layer_desc, layer.len() as u64 + 1).await,
            Err(Error::InvalidArgument(_))
        ));

        // An index over it, under another tag; the platform picked and fetched.
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [{
                "mediaType": MEDIA_OCI_MANIFEST,
                "digest": got.digest,
                "size": got.size,
                "platform": {"os": "linux", "architecture": "amd64"},
            }],
        }))
        .unwrap();
        let multi = remote
            .with_reference(&format!("{}/corral/test:multi", reg.host()))
            .unwrap();
        multi
            .push_manifest(MEDIA_OCI_INDEX, index.clone())
            .await
            .unwrap();
        let (index_desc, index_bytes) = multi.resolve().await.unwrap();
        assert_eq!(index_desc.media_type, MEDIA_OCI_INDEX);
        assert_eq!(index_bytes, index);
        let child = registry::select_platform(
            &index_bytes,
            &Platform::parse("linux/amd64").unwrap(),
            &multi.name(),
        )
        .unwrap();
        assert_eq!(child, got);
        assert_eq!(multi.fetch_manifest(&child).await.unwrap(), manifest);
        let wrong_size = Descriptor {
            size: child.size + 1,
            ..child.clone()
        };
        assert!(matches!(
            multi.fetch_manifest(&wrong_size).await,
            Err(Error::Corrupt(_))
        ));
        match registry::select_platform(
            &index_bytes,
            &Platform::parse("linux/arm64").unwrap(),
            &multi.name(),
        ) {
            Err(Error::NotFound(m)) => assert!(m.ends_with("(it has: linux/amd64)"), "{m}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn docker_schema2_and_failures() {
    let Some(reg) = Registry::start("failures", None) else {
        return;
    };
    block_on(async {
        let remote = reg.remote("d/img:v2", Credentials::Anonymous);
        let config_bytes = br#"{"os":"linux"}"#;
        let layer = b"not really gzip, but a registry does not care";
        let config = desc(MEDIA_DOCKER_CONFIG, config_bytes);
        let layer_desc = desc(MEDIA_DOCKER_LAYER_GZIP, layer);
        assert!(remote
            .push_blob(&config, pieces(config_bytes))
            .await
            .unwrap());
        assert!(remote.push_blob(&layer_desc, pieces(layer)).await.unwrap());
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": config,
            "layers": [layer_desc],
        }))
        .unwrap();
        remote
            .push_manifest(MEDIA_DOCKER_MANIFEST, manifest.clone())
            .await
            .unwrap();
        let (got, bytes) = remote.resolve().await.unwrap();
        assert_eq!(
            (got.media_type.as_str(), bytes),
            (MEDIA_DOCKER_MANIFEST, manifest.clone())
        );

        // A manifest naming a blob the registry does not have.
        let missing = desc(MEDIA_DOCKER_LAYER_GZIP, b"never pushed");
        let bad = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_DOCKER_MANIFEST,
            "config": config,
            "layers": [missing],
        }))
        .unwrap();
        let e = remote
            .push_manifest(MEDIA_DOCKER_MANIFEST, bad)
            .await
            .unwrap_err();
        assert_eq!(
            e,
            Error::InvalidArgument(format!(
                "{} refused d/img:v2: MANIFEST_BLOB_UNKNOWN: blob unknown to registry",
                reg.host()
            ))
        );

        // Unknown tag, repository, digest and blob.
        let e = reg
            .remote("d/img:nope", Credentials::Anonymous)
            .resolve()
            .await
            .unwrap_err();
        assert_eq!(
            e,
            Error::NotFound(format!(
                "d/img:nope not found on {} (MANIFEST_UNKNOWN: manifest unknown)",
                reg.host()
            ))
        );
        let e = reg
            .remote("no/such:1", Credentials::Anonymous)
            .resolve()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::NotFound(m) if m.contains("no/such:1")),
            "{e:?}"
        );
        let e = remote
            .with_reference(&format!("{}/d/img@{}", reg.host(), missing.digest))
            .unwrap()
            .resolve()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::NotFound(m) if m.contains(&missing.digest)),
            "{e:?}"
        );
        let e = remote.blob(&missing, 0).await.unwrap_err();
        assert!(
            matches!(&e, Error::NotFound(m) if m.contains(&missing.digest) && m.contains("d/img:v2")),
            "{e:?}"
        );
        assert!(!remote.blob_exists(&missing.digest).await.unwrap());

        // Bytes that are not what the descriptor says: the registry refuses them.
        let liar = desc(MEDIA_DOCKER_LAYER_GZIP, b"what it claims to be");
        let e = remote
            .push_blob(&liar, pieces(b"something else, same"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt(m) if m.contains("DIGEST_INVALID") && m.contains(&liar.digest)),
            "{e:?}"
        );
        // The caller's own stream failing is the caller's failure.
        let failing = stream::iter(vec![
            Ok(bytes::Bytes::from_static(b"some")),
            Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "cannot read",
            )),
        ]);
        let e = remote.push_blob(&liar, failing).await.unwrap_err();
        assert!(
            matches!(&e, Error::Internal(m) if m.contains("cannot read")),
            "{e:?}"
        );

        // A media type that is not an image.
        let e = remote
            .push_manifest("application/json", manifest)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(m) if m.contains("unsupported media type")));
    });
}

#[test]
fn credentials() {
    let Some(reg) = Registry::start("auth", Some(("alice", "s3cret"))) else {
        return;
    };
    block_on(async {
        let basic = Credentials::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        };
        let remote = reg.remote("secret/img:1", basic);
        let blob = b"{}";
        let d = desc(MEDIA_OCI_CONFIG, blob);
        assert!(remote.push_blob(&d, pieces(blob)).await.unwrap());
        let manifest = oci_manifest(&d, &d);
        remote
            .push_manifest(MEDIA_OCI_MANIFEST, manifest.clone())
            .await
            .unwrap();
        assert_eq!(remote.resolve().await.unwrap().1, manifest);

        let e = reg
            .remote("secret/img:1", Credentials::Anonymous)
            .resolve()
            .await
            .unwrap_err();
        assert_eq!(
            e,
            Error::PermissionDenied(format!(
                "401 Unauthorized from {} for secret/img:1: credentials missing or refused",
                reg.host()
            ))
        );
        let wrong = Credentials::Basic {
            user: "alice".into(),
            password: "wrong".into(),
        };
        let e = reg
            .remote("secret/img:1", wrong.clone())
            .resolve()
            .await
            .unwrap_err();
        assert!(matches!(e, Error::PermissionDenied(_)), "{e:?}");
        let e = reg
            .remote("secret/img:1", wrong)
            .blob(&d, 0)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::PermissionDenied(m) if m.contains(&d.digest)),
            "{e:?}"
        );

        // From a docker config.json.
        let config = reg.dir.join("docker-config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &config,
            format!(
                r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
                reg.host()
            ),
        )
        .unwrap();
        let from_config = Remote::new_with_config(
            &format!("{}/secret/img:1", reg.host()),
            &RemoteOptions {
                plain_http: true,
                credentials: Credentials::FromConfig,
            },
            Some(&config),
        )
        .unwrap();
        assert_eq!(from_config.resolve().await.unwrap().1, manifest);
    });
}

#[test]
fn nothing_listening_is_unavailable() {
    block_on(async {
        let port = free_port();
        let remote = Remote::new(
            &format!("127.0.0.1:{port}/x:1"),
            &RemoteOptions {
                plain_http: true,
                credentials: Credentials::Anonymous,
            },
        )
        .unwrap();
        let e = remote.resolve().await.unwrap_err();
        match &e {
            Error::Unavailable(m) => {
                assert!(
                    m.starts_with(&format!("127.0.0.1:{port} unreachable for x:1")),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        eprintln!("connection refused: {e}");
        let d = desc(MEDIA_OCI_CONFIG, b"{}");
        assert!(matches!(
            remote.blob(&d, 0).await,
            Err(Error::Unavailable(_))
        ));
        assert!(matches!(
            remote.blob_exists(&d.digest).await,
            Err(Error::Unavailable(_))
        ));
    });
}
