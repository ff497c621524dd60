//! [`Remote`]: one reference on one registry, with its client and its credentials.

use super::auth;
use super::errors::{map_error, map_io, Subject};
use super::manifest::{check_digest, check_media_type, media_type_of, MAX_MANIFEST};
use super::reference::ImageRef;
use crate::content::digest_of;
use crate::error::{Error, Result};
use crate::types::{
    Credentials, Descriptor, RemoteOptions, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST,
};
use futures_util::stream::{self, Stream, StreamExt};
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent while it answers.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// What a resolve accepts: indexes and manifests, OCI and Docker schema 2.
const ACCEPT: &[&str] = &[
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
];

/// A blob's bytes as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes>> + Send>>;

/// A blob download: its bytes, from the offset asked for unless `restarted`.
pub struct BlobBody {
    /// The registry ignored the Range: the bytes start at 0, not at the offset asked for.
    pub restarted: bool,
    /// The bytes. Not verified here: the caller hashes them (it may resume a partial file).
    pub stream: ByteStream,
}

impl std::fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobBody")
            .field("restarted", &self.restarted)
            .finish_non_exhaustive()
    }
}

/// One reference on one registry, with its client and its credentials. Cheap to clone (the
/// client, its connections and its tokens are shared).
#[derive(Clone)]
pub struct Remote {
    image: ImageRef,
    reference: Reference,
    client: Client,
    auth: RegistryAuth,
    options: RemoteOptions,
    docker_config: Option<PathBuf>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("name", &self.image.to_string())
            .field("plain_http", &self.options.plain_http)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// rustls needs a process-wide crypto provider before the first client: ring's.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err: another part of the process installed one first, which does as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn oci_reference(image: &ImageRef) -> Reference {
    let (registry, repository) = (image.registry().to_string(), image.repository().to_string());
    match (image.tag(), image.digest()) {
        (Some(tag), Some(digest)) => {
            Reference::with_tag_and_digest(registry, repository, tag.into(), digest.into())
        }
        (None, Some(digest)) => Reference::with_digest(registry, repository, digest.into()),
        (tag, None) => Reference::with_tag(
            registry,
            repository,
            tag.unwrap_or(super::reference::DEFAULT_TAG).into(),
        ),
    }
}

impl Remote {
    /// Parses `reference` (`[registry/]repository[:tag][@digest]`; docker.io, `library/` and
    /// `:latest` by default, as docker does) and sets up the client and the credentials:
    /// [`Credentials::FromConfig`] reads docker's `config.json` (`$DOCKER_CONFIG`, else
    /// `$HOME/.docker`, else `/root/.docker`). A bad reference is [`Error::InvalidArgument`]
    /// naming it.
    pub fn new(reference: &str, options: &RemoteOptions) -> Result<Remote> {
        Remote::new_with_config(reference, options, None)
    }

    /// [`Remote::new`] with the docker `config.json` at `docker_config` (when `Some`).
    pub fn new_with_config(
        reference: &str,
        options: &RemoteOptions,
        docker_config: Option<&Path>,
    ) -> Result<Remote> {
        let image = ImageRef::parse(reference)?;
        let auth = match &options.credentials {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { user, password } => {
                RegistryAuth::Basic(user.clone(), password.clone())
            }
            Credentials::FromConfig => {
                let path = docker_config
                    .map(Path::to_path_buf)
                    .unwrap_or_else(auth::default_config_path);
                match auth::lookup(&path, image.registry())? {
                    Some(login) => {
                        tracing::debug!(
                            registry = image.registry(),
                            user = %login.user,
                            path = %path.display(),
                            "credentials from docker config"
                        );
                        RegistryAuth::Basic(login.user, login.password)
                    }
                    None => RegistryAuth::Anonymous,
                }
            }
        };
        install_crypto_provider();
        let config = ClientConfig {
            protocol: if options.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            // One PUT with the blob streaming as its body (oci-client's chunked push makes a
            // PATCH of every item the stream yields).
            use_monolithic_push: true,
            // Platforms are picked by select_platform, never by the client.
            platform_resolver: None,
            user_agent: concat!("corral/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| {
            Error::Internal(format!("setting up a registry client for {image}: {e}"))
        })?;
        Ok(Remote {
            reference: oci_reference(&image),
            image,
            client,
            auth,
            options: options.clone(),
            docker_config: docker_config.map(Path::to_path_buf),
        })
    }

    /// A Remote for another reference: on the same registry it shares this one's client
    /// (connections, tokens) and credentials; on another it is set up afresh with the same
    /// options. For a push under a new name.
    pub fn with_reference(&self, reference: &str) -> Result<Remote> {
        let image = ImageRef::parse(reference)?;
        if image.registry() != self.image.registry() {
            return Remote::new_with_config(
                reference,
                &self.options,
                self.docker_config.as_deref(),
            );
        }
        Ok(Remote {
            reference: oci_reference(&image),
            image,
            client: self.client.clone(),
            auth: self.auth.clone(),
            options: self.options.clone(),
            docker_config: self.docker_config.clone(),
        })
    }

    /// The normalized full name: `127.0.0.1:5000/busybox:1`,
    /// `docker.io/library/alpine:latest`, `...@sha256:...` when by digest.
    pub fn name(&self) -> String {
        self.image.to_string()
    }

    /// The registry host (and port).
    pub fn registry(&self) -> &str {
        self.image.registry()
    }

    /// The repository (`library/alpine`).
    pub fn repository(&self) -> &str {
        self.image.repository()
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.image.tag()
    }

    /// The digest, if the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.image.digest()
    }

    /// The parsed reference.
    pub fn image_ref(&self) -> &ImageRef {
        &self.image
    }

    fn subject<'a>(&'a self, what: &'a str) -> Subject<'a> {
        Subject {
            host: self.image.registry(),
            what,
        }
    }

    fn blob_what(&self, digest: &str) -> String {
        format!("{} blob {digest}", self.image.familiar())
    }

    /// oci-client only authenticates requests to a registry it was given credentials for;
    /// the manifest calls do this themselves, the blob calls do not.
    async fn store_auth(&self) {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
    }

    /// Resolves the reference: its manifest or index, as a descriptor (media type from the
    /// document, sha256 of the bytes received) and the bytes. By digest, the bytes must have
    /// that digest ([`Error::Corrupt`] otherwise). An unsupported media type (schema 1, an
    /// artifact) is [`Error::InvalidArgument`].
    pub async fn resolve(&self) -> Result<(Descriptor, Vec<u8>)> {
        let what = self.image.familiar();
        tracing::debug!(name = %self.image, "resolving");
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&self.reference, &self.auth, ACCEPT)
            .await
            .map_err(|e| map_error(e, self.subject(&what)))?;
        let name = self.name();
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(Error::Corrupt(format!(
                "the manifest of {name} is {} bytes, more than the {MAX_MANIFEST} allowed",
                bytes.len()
            )));
        }
        let digest = digest_of(&bytes);
        if let Some(want) = self.image.digest() {
            if want != digest {
                return Err(Error::Corrupt(format!(
                    "{} sent a manifest of digest {digest} for {name}, not {want}",
                    self.registry()
                )));
            }
        }
        let media_type =
            media_type_of(&bytes).map_err(|e| prefix(e, &format!("manifest of {name}")))?;
        check_media_type(&media_type, &name)?;
        tracing::debug!(name = %name, %digest, %media_type, size = bytes.len(), "resolved");
        Ok((
            Descriptor {
                media_type,
                digest,
                size: bytes.len() as u64,
            },
            bytes.to_vec(),
        ))
    }

    /// Fetches a child manifest (from an index) by its descriptor, checked against its
    /// digest and size ([`Error::Corrupt`]).
    pub async fn fetch_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        let what = format!("{} manifest {}", self.image.familiar(), desc.digest);
        check_digest(&desc.digest)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.name())))?;
        if desc.size > MAX_MANIFEST {
            return Err(Error::Corrupt(format!(
                "{what} is {} bytes, more than the {MAX_MANIFEST} allowed",
                desc.size
            )));
        }
        let mut accept: Vec<&str> = vec![desc.media_type.as_str()];
        accept.extend(ACCEPT.iter().filter(|m| **m != desc.media_type));
        let reference = self.reference.clone_with_digest(desc.digest.clone());
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&reference, &self.auth, &accept)
            .await
            .map_err(|e| map_error(e, self.subject(&what)))?;
        let digest = digest_of(&bytes);
        if bytes.len() as u64 != desc.size || digest != desc.digest {
            return Err(Error::Corrupt(format!(
                "{} sent {} bytes of digest {digest} for {what} of {} bytes",
                self.registry(),
                bytes.len(),
                desc.size
            )));
        }
        Ok(bytes.to_vec())
    }

    /// Streams a blob from `offset` (an HTTP Range when `offset > 0`). `restarted` tells when
    /// the registry ignored the Range and sends it from 0. The bytes are not verified here
    /// beyond their count (never more than the descriptor's size): the caller hashes them.
    pub async fn blob(&self, desc: &Descriptor, offset: u64) -> Result<BlobBody> {
        let what = self.blob_what(&desc.digest);
        check_digest(&desc.digest)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.name())))?;
        if offset > desc.size {
            return Err(Error::InvalidArgument(format!(
                "{what}: offset {offset} is past its size {}",
                desc.size
            )));
        }
        if offset == desc.size && offset > 0 {
            // Nothing left: a Range past the end would be a 416.
            return Ok(BlobBody {
                restarted: false,
                stream: Box::pin(stream::empty()),
            });
        }
        self.store_auth().await;
        let digest = desc.digest.as_str();
        tracing::debug!(name = %self.image, digest, offset, "fetching blob");
        let (restarted, sized) = if offset == 0 {
            let sized = self.client.pull_blob_stream(&self.reference, digest).await;
            (false, sized)
        } else {
            match self
                .client
                .pull_blob_stream_partial(&self.reference, digest, offset, None)
                .await
            {
                Ok(BlobResponse::Partial(sized)) => (false, Ok(sized)),
                Ok(BlobResponse::Full(sized)) => {
                    tracing::debug!(digest, offset, "the registry ignored the Range");
                    (true, Ok(sized))
                }
                Err(e) => (false, Err(e)),
            }
        };
        let sized = sized.map_err(|e| map_error(e, self.subject(&what)))?;
        let start = if restarted { 0 } else { offset };
        let expected = desc.size - start;
        if let Some(len) = sized.content_length {
            if len != expected {
                return Err(Error::Corrupt(format!(
                    "{} announces {len} bytes for {what} from offset {start}, not {expected}",
                    self.registry()
                )));
            }
        }
        Ok(BlobBody {
            restarted,
            stream: capped(sized, expected, self.registry().to_string(), what),
        })
    }

    /// Whether the registry has the blob (in this repository).
    pub async fn blob_exists(&self, digest: &str) -> Result<bool> {
        let what = self.blob_what(digest);
        check_digest(digest)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", self.name())))?;
        self.store_auth().await;
        self.client
            .blob_exists(&self.reference, digest)
            .await
            .map_err(|e| map_error(e, self.subject(&what)))
    }

    /// Pushes a blob from `body` unless the registry has it already (then `false`): one PUT
    /// with the stream as its body, `desc.size` bytes long, never held whole in memory. The
    /// registry checks the digest.
    pub async fn push_blob(
        &self,
        desc: &Descriptor,
        body: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<bool> {
        let what = self.blob_what(&desc.digest);
        if self.blob_exists(&desc.digest).await? {
            tracing::debug!(name = %self.image, digest = %desc.digest, "blob already there");
            return Ok(false);
        }
        // A failure of the caller's stream (a file that cannot be read) is the caller's, not
        // the registry's: kept aside to be told as such.
        let own_failure: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let slot = own_failure.clone();
        let body = body.map(move |item| {
            item.map_err(|e| {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                if let Ok(mut slot) = slot.lock() {
                    slot.get_or_insert(e);
                }
                OciDistributionError::IoError(copy)
            })
        });
        tracing::debug!(name = %self.image, digest = %desc.digest, size = desc.size, "pushing blob");
        let pushed = self
            .client
            .push_blob_stream(&self.reference, body, &desc.digest, Some(desc.size))
            .await;
        match pushed {
            Ok(_) => Ok(true),
            Err(e) => {
                let own = own_failure.lock().ok().and_then(|mut slot| slot.take());
                match own {
                    Some(own) => Err(Error::io(format!("reading {what} to push it"), own)),
                    None => Err(map_error(e, self.subject(&what))),
                }
            }
        }
    }

    /// PUTs a manifest or an index (`media_type`: one of the four supported) under the
    /// reference's tag, or its digest when it has no tag (the bytes must have that digest).
    pub async fn push_manifest(&self, media_type: &str, bytes: Vec<u8>) -> Result<()> {
        let name = self.name();
        let what = self.image.familiar();
        check_media_type(media_type, &name)?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(Error::InvalidArgument(format!(
                "the manifest for {name} is {} bytes, more than the {MAX_MANIFEST} allowed",
                bytes.len()
            )));
        }
        let digest = digest_of(&bytes);
        if let Some(want) = self.image.digest() {
            if want != digest {
                return Err(Error::InvalidArgument(format!(
                    "cannot push a manifest of digest {digest} as {name}"
                )));
            }
        }
        let reference = match (self.image.tag(), self.image.digest()) {
            (Some(tag), _) => Reference::with_tag(
                self.image.registry().into(),
                self.image.repository().into(),
                tag.into(),
            ),
            // oci-client, when a registry answers without a Location, strips the tag (or
            // "latest") off the URL, and panics when it is not there: by digest, the digest
            // stands as the tag too.
            (None, _) => Reference::with_tag_and_digest(
                self.image.registry().into(),
                self.image.repository().into(),
                digest.clone(),
                digest.clone(),
            ),
        };
        let content_type = media_type.parse().map_err(|e| {
            Error::InvalidArgument(format!("media type {media_type:?} for {name}: {e}"))
        })?;
        self.store_auth().await;
        tracing::debug!(name = %name, %digest, media_type, "pushing manifest");
        self.client
            .push_manifest_raw(&reference, bytes, content_type)
            .await
            .map_err(|e| map_error(e, self.subject(&what)))?;
        Ok(())
    }
}

/// An error with `context` in front of its message.
fn prefix(err: Error, context: &str) -> Error {
    match err {
        Error::Corrupt(m) => Error::Corrupt(format!("{context}: {m}")),
        Error::InvalidArgument(m) => Error::InvalidArgument(format!("{context}: {m}")),
        other => other,
    }
}

/// The body's bytes with failures mapped, ending in [`Error::Corrupt`] if more than
/// `expected` come (a registry must not fill the disk).
fn capped(sized: SizedStream, expected: u64, host: String, what: String) -> ByteStream {
    let mut seen: u64 = 0;
    let mut failed = false;
    Box::pin(sized.stream.filter_map(move |item| {
        let out = if failed {
            None
        } else {
            match item {
                Ok(chunk) => {
                    seen += chunk.len() as u64;
                    if seen > expected {
                        failed = true;
                        Some(Err(Error::Corrupt(format!(
                            "{host} sent more than the {expected} bytes expected of {what}"
                        ))))
                    } else {
                        Some(Ok(chunk))
                    }
                }
                Err(e) => {
                    failed = true;
                    Some(Err(map_io(
                        e,
                        Subject {
                            host: &host,
                            what: &what,
                        },
                    )))
                }
            }
        };
        std::future::ready(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn futures_are_send_and_names_normalized() {
        let remote = Remote::new_with_config(
            "127.0.0.1:5000/busybox:1",
            &RemoteOptions {
                plain_http: true,
                credentials: Credentials::Anonymous,
            },
            None,
        )
        .unwrap();
        assert_eq!(remote.name(), "127.0.0.1:5000/busybox:1");
        assert_eq!(remote.registry(), "127.0.0.1:5000");
        assert_eq!(remote.repository(), "busybox");
        assert_eq!(remote.tag(), Some("1"));
        assert_eq!(remote.digest(), None);
        let desc = Descriptor {
            media_type: MEDIA_OCI_MANIFEST.into(),
            digest: digest_of(b""),
            size: 0,
        };
        assert_send(&remote);
        assert_send(&remote.resolve());
        assert_send(&remote.fetch_manifest(&desc));
        assert_send(&remote.blob(&desc, 0));
        assert_send(&remote.blob_exists(&desc.digest));
        assert_send(&remote.push_blob(&desc, stream::empty()));
        assert_send(&remote.push_manifest(MEDIA_OCI_MANIFEST, Vec::new()));

        let other = remote.with_reference("127.0.0.1:5000/other:2").unwrap();
        assert_eq!(other.name(), "127.0.0.1:5000/other:2");
        let hub = remote.with_reference("alpine").unwrap();
        assert_eq!(hub.name(), "docker.io/library/alpine:latest");
        assert!(matches!(
            Remote::new("UPPER", &RemoteOptions::default()),
            Err(Error::InvalidArgument(m)) if m.contains("\"UPPER\"")
        ));
    }

    #[test]
    fn credentials_from_a_config_file() {
        use base64::Engine as _;
        let dir = std::env::temp_dir().join(format!("corral-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"h.io":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let options = RemoteOptions::default();
        let r = Remote::new_with_config("h.io/x", &options, Some(&path)).unwrap();
        assert_eq!(r.auth, RegistryAuth::Basic("u".into(), "p".into()));
        let r = Remote::new_with_config("other.io/x", &options, Some(&path)).unwrap();
        assert_eq!(r.auth, RegistryAuth::Anonymous);
        // Explicit credentials win over the file.
        let anon = RemoteOptions {
            credentials: Credentials::Anonymous,
            ..Default::default()
        };
        let r = Remote::new_with_config("h.io/x", &anon, Some(&path)).unwrap();
        assert_eq!(r.auth, RegistryAuth::Anonymous);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
