//! Test OCI images built offline from the host's static busybox, written as OCI image
//! layout directories (`oci-layout`, `index.json`, `blobs/sha256/...`), as tars of those,
//! and as `docker save` tars; plus skopeo, the reference client, to push them to (and pull
//! them from) a [`super::registry::Registry`] for cross-checks.
//!
//! Everything is deterministic: every tar entry has mtime 0 and uid/gid 0 (unless a layer
//! says otherwise), JSON documents have no timestamps, gzip runs with `-n`: the same spec
//! always gives the same digests. Layer blobs are streamed to disk while they are hashed
//! (a [`big_layer`] of 500 MB is never held in memory).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The host's static busybox, the only binary in the test images.
pub const BUSYBOX: &str = "/bin/busybox";
/// The applets [`Layer::busybox`] links in `bin/`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "id", "pwd", "env",
];
/// How long a skopeo command may take (a push or pull of a 500 MB image on a busy machine).
pub const SKOPEO_TIMEOUT: Duration = Duration::from_secs(600);

/// A temp dir removed on drop: `/tmp/corral-test-img-<what>-<pid>-<n>`.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(what: &str) -> TestDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let short: String = what.chars().take(40).collect();
        let path = PathBuf::from(format!(
            "/tmp/corral-test-img-{short}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create temp dir {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `hex(sha256(bytes))`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `sha256:<hex>` of bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// `sha256:<hex>` and size of a file, streamed.
pub fn digest_file(path: &Path) -> (String, u64) {
    let mut file =
        File::open(path).unwrap_or_else(|e| panic!("open {} to hash: {e}", path.display()));
    let mut hashing = Hashing::new(io::sink());
    io::copy(&mut file, &mut hashing)
        .unwrap_or_else(|e| panic!("read {} to hash: {e}", path.display()));
    let (_, digest, size) = hashing.finish();
    (digest, size)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    fn finish(mut self) -> (W, String, u64) {
        self.inner.flush().expect("flush a hashed blob");
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (self.inner, digest, self.len)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Deterministic, incompressible bytes (xorshift64*), `left` of them.
struct PseudoRandom {
    state: u64,
    left: u64,
}

impl PseudoRandom {
    fn new(seed: u64, len: u64) -> Self {
        PseudoRandom {
            // xorshift must not start at 0.
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            left: len,
        }
    }
}

impl Read for PseudoRandom {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        let buf = &mut buf[..want];
        let mut chunks = buf.chunks_mut(8);
        for chunk in &mut chunks {
            let mut x = self.state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.state = x;
            let word = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        self.left -= want as u64;
        Ok(want)
    }
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The compressor command (reads stdin, writes stdout), if any.
    fn command(self) -> Option<Command> {
        let (program, args): (&str, &[&str]) = match self {
            Compression::None => return None,
            Compression::Gzip => ("gzip", &["-n", "-c"]),
            Compression::Zstd => ("zstd", &["-q", "-c", "--no-progress"]),
        };
        let mut cmd = Command::new(program);
        cmd.args(args);
        Some(cmd)
    }
}

/// A blob: media type, `sha256:<hex>` digest, size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest_of(bytes),
            size: bytes.len() as u64,
        }
    }

    /// The hex part of the digest.
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// As OCI JSON (`mediaType`, `digest`, `size`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        })
    }
}

#[derive(Clone, Debug)]
enum Data {
    Bytes(Vec<u8>),
    /// A file of the host, streamed (busybox).
    Host(PathBuf),
    /// `len` pseudo-random bytes from `seed`, streamed.
    Random {
        seed: u64,
        len: u64,
    },
}

#[derive(Clone, Debug)]
enum Kind {
    File(Data),
    Dir,
    Symlink(String),
    Hardlink(String),
}

#[derive(Clone, Debug)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
}

/// One layer's entries, in tar order. Paths are relative to the rootfs (a leading `/` is
/// dropped); parent directories are not added implicitly. Built by chaining:
/// `Layer::new().dir("etc").file("etc/hosts", b"...", 0o644).symlink("bin/sh", "busybox")`.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

/// The builder is the layer itself.
pub type LayerBuilder = Layer;

fn rel(path: &str) -> String {
    path.trim_start_matches('/').to_string()
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    fn push(mut self, path: &str, kind: Kind, mode: u32) -> Layer {
        self.entries.push(Entry {
            path: rel(path),
            kind,
            mode,
            uid: 0,
            gid: 0,
        });
        self
    }

    /// A regular file.
    pub fn file(self, path: &str, bytes: &[u8], mode: u32) -> Layer {
        self.push(path, Kind::File(Data::Bytes(bytes.to_vec())), mode)
    }

    /// A regular file copied (streamed) from a file of the host.
    pub fn host_file(self, path: &str, host: &Path, mode: u32) -> Layer {
        self.push(path, Kind::File(Data::Host(host.to_path_buf())), mode)
    }

    /// A regular file of `len` deterministic pseudo-random (incompressible) bytes.
    pub fn random_file(self, path: &str, len: u64, seed: u64) -> Layer {
        self.push(path, Kind::File(Data::Random { seed, len }), 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(self, path: &str) -> Layer {
        self.dir_mode(path, 0o755)
    }

    pub fn dir_mode(self, path: &str, mode: u32) -> Layer {
        self.push(path, Kind::Dir, mode)
    }

    /// A symlink at `path` to `target` (kept as given: relative or absolute).
    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.push(path, Kind::Symlink(target.to_string()), 0o777)
    }

    /// A hard link at `path` to `target`, an earlier entry of the same layer (a path
    /// relative to the rootfs, as tar stores it).
    pub fn hardlink(self, path: &str, target: &str) -> Layer {
        self.push(path, Kind::Hardlink(rel(target)), 0o644)
    }

    /// A whiteout of `path`: an empty `.wh.<name>` file next to where it was.
    pub fn whiteout(self, path: &str) -> Layer {
        let path = rel(path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name.to_string()),
            None => (String::new(), path),
        };
        self.file(&format!("{parent}.wh.{name}"), b"", 0o644)
    }

    /// Makes `dir` opaque (hides the lower layers' content): `dir/.wh..wh..opq`.
    pub fn opaque(self, dir: &str) -> Layer {
        let dir = rel(dir);
        let dir = dir.trim_end_matches('/');
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// Sets the owner of the entry added last.
    pub fn owned(mut self, uid: u64, gid: u64) -> Layer {
        let last = self
            .entries
            .last_mut()
            .expect("owned() needs an entry before it");
        last.uid = uid;
        last.gid = gid;
        self
    }

    /// `bin/` with the host's static busybox and its [`BUSYBOX_APPLETS`] as symlinks.
    pub fn busybox(self) -> Layer {
        assert!(
            Path::new(BUSYBOX).is_file(),
            "{BUSYBOX} missing: the image tests build their images from it \
             (apt-get install busybox-static, or scripts/install-deps.sh)"
        );
        let mut layer = self
            .dir("bin")
            .host_file("bin/busybox", Path::new(BUSYBOX), 0o755);
        for applet in BUSYBOX_APPLETS {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
        layer
    }

    /// The paths of the entries, in order.
    pub fn paths(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.path.clone()).collect()
    }

    /// Writes the uncompressed layer tar to `out`.
    pub fn write_tar<W: Write>(&self, out: W) -> io::Result<W> {
        let mut tar = tar::Builder::new(out);
        for e in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(0);
            h.set_size(0);
            match &e.kind {
                Kind::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    match data {
                        Data::Bytes(bytes) => {
                            h.set_size(bytes.len() as u64);
                            tar.append_data(&mut h, &e.path, &bytes[..])?;
                        }
                        Data::Host(host) => {
                            let file = File::open(host)?;
                            h.set_size(file.metadata()?.len());
                            tar.append_data(&mut h, &e.path, file)?;
                        }
                        Data::Random { seed, len } => {
                            h.set_size(*len);
                            tar.append_data(&mut h, &e.path, PseudoRandom::new(*seed, *len))?;
                        }
                    }
                }
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    let path = format!("{}/", e.path.trim_end_matches('/'));
                    tar.append_data(&mut h, path, io::empty())?;
                }
                Kind::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    tar.append_link(&mut h, &e.path, target)?;
                }
                Kind::Hardlink(target) => {
                    h.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut h, &e.path, target)?;
                }
            }
        }
        tar.into_inner()
    }
}

/// A layer of one file, `big.bin`, of `bytes` deterministic pseudo-random (incompressible)
/// bytes. Streamed when written: never held in memory.
pub fn big_layer(bytes: u64) -> Layer {
    big_layer_seeded(bytes, 1)
}

/// [`big_layer`] with another seed (another digest for the same size).
pub fn big_layer_seeded(bytes: u64, seed: u64) -> Layer {
    Layer::new().random_file("big.bin", bytes, seed)
}

/// The image config, for the host's architecture by default.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    pub layers: Vec<(Layer, Compression)>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub architecture: String,
    pub os: String,
}

/// The host's architecture in OCI's words (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// An architecture that is not the host's (for the second platform of an index).
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec::new()
    }
}

impl ImageSpec {
    /// No layers, the host's architecture, linux, a PATH.
    pub fn new() -> ImageSpec {
        ImageSpec {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
        }
    }

    /// One gzip layer of [`Layer::busybox`], cmd `sh`.
    pub fn busybox() -> ImageSpec {
        ImageSpec::new()
            .layer(Layer::new().busybox(), Compression::Gzip)
            .cmd(&["sh"])
    }

    /// A tiny image for another platform (never run): one file layer.
    pub fn tiny(architecture: &str) -> ImageSpec {
        let file = format!("{architecture}\n");
        ImageSpec::new()
            .layer(
                Layer::new().file("arch.txt", file.as_bytes(), 0o644),
                Compression::Gzip,
            )
            .architecture(architecture)
    }

    pub fn layer(mut self, layer: Layer, compression: Compression) -> ImageSpec {
        self.layers.push((layer, compression));
        self
    }

    pub fn entrypoint(mut self, args: &[&str]) -> ImageSpec {
        self.entrypoint = Some(strings(args));
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> ImageSpec {
        self.cmd = Some(strings(args));
        self
    }

    /// Adds `KEY=VALUE`.
    pub fn env(mut self, kv: &str) -> ImageSpec {
        self.env.push(kv.to_string());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> ImageSpec {
        self.working_dir = Some(dir.to_string());
        self
    }

    pub fn user(mut self, user: &str) -> ImageSpec {
        self.user = Some(user.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> ImageSpec {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn architecture(mut self, arch: &str) -> ImageSpec {
        self.architecture = arch.to_string();
        self
    }

    pub fn os(mut self, os: &str) -> ImageSpec {
        self.os = os.to_string();
        self
    }

    /// The config JSON for these layers' diff ids (`sha256:<hex>` of the uncompressed tars).
    pub fn config_json(&self, diff_ids: &[String]) -> Vec<u8> {
        let mut config = serde_json::Map::new();
        config.insert("Env".into(), serde_json::json!(self.env));
        if let Some(e) = &self.entrypoint {
            config.insert("Entrypoint".into(), serde_json::json!(e));
        }
        if let Some(c) = &self.cmd {
            config.insert("Cmd".into(), serde_json::json!(c));
        }
        if let Some(w) = &self.working_dir {
            config.insert("WorkingDir".into(), serde_json::json!(w));
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), serde_json::json!(u));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), serde_json::json!(self.labels));
        }
        let doc = serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": self.architecture,
            "os": self.os,
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": diff_ids.iter().map(|_| serde_json::json!({
                "created": "1970-01-01T00:00:00Z",
                "created_by": "corral test image",
            })).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&doc).expect("serialize a config")
    }
}

/// One layer blob as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenLayer {
    /// The blob (compressed as asked).
    pub blob: Descriptor,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
}

/// One image as written into a layout: what tests compare byte for byte.
#[derive(Clone, Debug)]
pub struct WrittenImage {
    /// The `org.opencontainers.image.ref.name` (empty for the members of an index).
    pub ref_name: String,
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<WrittenLayer>,
    pub architecture: String,
    pub os: String,
}

impl WrittenImage {
    pub fn manifest_digest(&self) -> &str {
        &self.manifest.digest
    }

    pub fn config_digest(&self) -> &str {
        &self.config.digest
    }

    /// The layer blobs' digests, in order.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.blob.digest.clone()).collect()
    }

    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Every blob of the image: config, layers (the manifest itself not included).
    pub fn blob_digests(&self) -> Vec<String> {
        let mut all = vec![self.config.digest.clone()];
        all.extend(self.layer_digests());
        all
    }
}

/// A two-platform (or more) image index as written into a layout.
#[derive(Clone, Debug)]
pub struct WrittenIndex {
    pub ref_name: String,
    pub index: Descriptor,
    pub index_bytes: Vec<u8>,
    /// The platform images, in the index's order.
    pub images: Vec<WrittenImage>,
}

impl WrittenIndex {
    pub fn index_digest(&self) -> &str {
        &self.index.digest
    }

    /// The image for `architecture`.
    pub fn image(&self, architecture: &str) -> &WrittenImage {
        self.images
            .iter()
            .find(|i| i.architecture == architecture)
            .unwrap_or_else(|| panic!("no {architecture} image in the index"))
    }
}

/// `DIR/blobs/sha256/<hex>` of a `sha256:<hex>` digest.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    layout.join("blobs").join("sha256").join(hex)
}

fn staging_path(layout: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    layout.join(format!(".staging-{}-{n}", std::process::id()))
}

fn ensure_layout(layout: &Path) {
    fs::create_dir_all(layout.join("blobs").join("sha256"))
        .unwrap_or_else(|e| panic!("create {}/blobs/sha256: {e}", layout.display()));
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap_or_else(|e| panic!("write {}/oci-layout: {e}", layout.display()));
}

/// Moves a staged file to its blob path (a blob already there has the same content).
fn store_blob(layout: &Path, staged: &Path, digest: &str) {
    let dest = blob_path(layout, digest);
    if dest.exists() {
        let _ = fs::remove_file(staged);
    } else {
        fs::rename(staged, &dest).unwrap_or_else(|e| panic!("store {}: {e}", dest.display()));
    }
}

fn write_blob_bytes(layout: &Path, media_type: &str, bytes: &[u8]) -> Descriptor {
    let desc = Descriptor::of(media_type, bytes);
    let staged = staging_path(layout);
    fs::write(&staged, bytes).unwrap_or_else(|e| panic!("write {}: {e}", staged.display()));
    store_blob(layout, &staged, &desc.digest);
    desc
}

/// Writes `layer`'s uncompressed tar to `path`; its `sha256:<hex>` and size.
fn write_layer_tar(layer: &Layer, path: &Path) -> (String, u64) {
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let hashing = Hashing::new(BufWriter::with_capacity(1 << 16, file));
    let hashing = layer
        .write_tar(hashing)
        .unwrap_or_else(|e| panic!("write layer tar {}: {e}", path.display()));
    let (writer, digest, size) = hashing.finish();
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .unwrap_or_else(|e| panic!("flush {}: {e}", path.display()));
    (digest, size)
}

/// Compresses `input` into `output` with `compression`'s command.
fn compress(compression: Compression, input: &Path, output: &Path) {
    let Some(mut cmd) = compression.command() else {
        panic!("compress with Compression::None");
    };
    let stdin = File::open(input).unwrap_or_else(|e| panic!("open {}: {e}", input.display()));
    let stdout =
        File::create(output).unwrap_or_else(|e| panic!("create {}: {e}", output.display()));
    let status = cmd
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .status()
        .unwrap_or_else(|e| panic!("run {cmd:?} (apt-get install gzip zstd): {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// Writes one layer blob into the layout.
fn write_layer(layout: &Path, layer: &Layer, compression: Compression) -> WrittenLayer {
    let tar_path = staging_path(layout);
    let (diff_id, uncompressed_size) = write_layer_tar(layer, &tar_path);
    let blob = match compression {
        Compression::None => {
            store_blob(layout, &tar_path, &diff_id);
            Descriptor {
                media_type: compression.media_type().to_string(),
                digest: diff_id.clone(),
                size: uncompressed_size,
            }
        }
        _ => {
            let packed = staging_path(layout);
            compress(compression, &tar_path, &packed);
            let _ = fs::remove_file(&tar_path);
            let (digest, size) = digest_file(&packed);
            store_blob(layout, &packed, &digest);
            Descriptor {
                media_type: compression.media_type().to_string(),
                digest,
                size,
            }
        }
    };
    WrittenLayer {
        blob,
        diff_id,
        uncompressed_size,
    }
}

/// Writes an image's layers, config and manifest blobs (no index.json entry).
fn write_image(layout: &Path, ref_name: &str, spec: &ImageSpec) -> WrittenImage {
    let layers: Vec<WrittenLayer> = spec
        .layers
        .iter()
        .map(|(layer, compression)| write_layer(layout, layer, *compression))
        .collect();
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config_bytes = spec.config_json(&diff_ids);
    let config = write_blob_bytes(layout, CONFIG_MEDIA_TYPE, &config_bytes);
    let manifest_doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.json(),
        "layers": layers.iter().map(|l| l.blob.json()).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest_doc).expect("serialize a manifest");
    let manifest = write_blob_bytes(layout, MANIFEST_MEDIA_TYPE, &manifest_bytes);
    WrittenImage {
        ref_name: ref_name.to_string(),
        manifest,
        manifest_bytes,
        config,
        config_bytes,
        layers,
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
    }
}

fn write_index_json(layout: &Path, entries: &[(&Descriptor, &str)]) {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(desc, ref_name)| {
            let mut v = desc.json();
            v["annotations"] = serde_json::json!({ REF_NAME: ref_name });
            v
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    let path = layout.join("index.json");
    fs::write(
        &path,
        serde_json::to_vec(&index).expect("serialize index.json"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Writes an OCI image layout at `dir` (created if needed; its index.json replaced) with one
/// manifest per image, each listed in index.json under its ref name.
pub fn write_layout(dir: &Path, images: &[(&str, ImageSpec)]) -> Vec<WrittenImage> {
    ensure_layout(dir);
    let written: Vec<WrittenImage> = images
        .iter()
        .map(|(ref_name, spec)| write_image(dir, ref_name, spec))
        .collect();
    let entries: Vec<(&Descriptor, &str)> = written
        .iter()
        .map(|w| (&w.manifest, w.ref_name.as_str()))
        .collect();
    write_index_json(dir, &entries);
    written
}

/// Writes an OCI image layout at `dir` whose index.json has one entry, `ref_name`, an image
/// index of `platforms` (e.g. [`ImageSpec::busybox`] and [`ImageSpec::tiny`]`(other_arch())`),
/// each manifest carrying its platform.
pub fn write_index_layout(dir: &Path, ref_name: &str, platforms: &[ImageSpec]) -> WrittenIndex {
    ensure_layout(dir);
    let images: Vec<WrittenImage> = platforms
        .iter()
        .map(|spec| write_image(dir, "", spec))
        .collect();
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|img| {
            let mut v = img.manifest.json();
            v["platform"] = serde_json::json!({
                "architecture": img.architecture,
                "os": img.os,
            });
            v
        })
        .collect();
    let index_doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    let index_bytes = serde_json::to_vec(&index_doc).expect("serialize an image index");
    let index = write_blob_bytes(dir, INDEX_MEDIA_TYPE, &index_bytes);
    write_index_json(dir, &[(&index, ref_name)]);
    WrittenIndex {
        ref_name: ref_name.to_string(),
        index,
        index_bytes,
        images,
    }
}

/// Every file under `dir`, relative, sorted (directories before their content).
fn walk(dir: &Path) -> Vec<(PathBuf, bool)> {
    fn go(root: &Path, rel: &Path, out: &mut Vec<(PathBuf, bool)>) {
        let full = root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&full)
            .unwrap_or_else(|e| panic!("list {}: {e}", full.display()))
            .map(|e| e.expect("read a dir entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let child = rel.join(&name);
            let is_dir = root.join(&child).is_dir();
            out.push((child.clone(), is_dir));
            if is_dir {
                go(root, &child, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, Path::new(""), &mut out);
    out
}

/// A tar of the layout directory `dir` (entries relative: `oci-layout`, `index.json`,
/// `blobs/sha256/...`), deterministic, blobs streamed.
pub fn tar_dir(dir: &Path, tar_file: &Path) {
    let out =
        File::create(tar_file).unwrap_or_else(|e| panic!("create {}: {e}", tar_file.display()));
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    for (rel, is_dir) in walk(dir) {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let result = if is_dir {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, format!("{}/", rel.display()), io::empty())
        } else {
            let file = File::open(dir.join(&rel))
                .unwrap_or_else(|e| panic!("open {}: {e}", rel.display()));
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(file.metadata().map(|m| m.len()).unwrap_or(0));
            tar.append_data(&mut h, &rel, file)
        };
        result.unwrap_or_else(|e| panic!("tar {}: {e}", rel.display()));
    }
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .unwrap_or_else(|e| panic!("finish {}: {e}", tar_file.display()));
}

/// What [`docker_save_tar`] wrote.
#[derive(Clone, Debug)]
pub struct DockerSaved {
    /// `sha256:<hex>` of the config (docker's image id); the config is `<hex>.json`.
    pub config_digest: String,
    pub config_bytes: Vec<u8>,
    /// The layers' `sha256:<hex>` (uncompressed); each is `<hex>/layer.tar`.
    pub diff_ids: Vec<String>,
    /// The bytes of `manifest.json`.
    pub manifest_json: Vec<u8>,
}

/// A `docker save`-style tar of one image: `manifest.json` (`[{Config, RepoTags, Layers}]`),
/// `<hex>.json` (the config), `<hex>/layer.tar` (the uncompressed layers, named after their
/// diff ids), and the legacy `repositories`. Layers are staged next to `tar_file`, streamed.
pub fn docker_save_tar(tar_file: &Path, repo_tags: &[&str], spec: &ImageSpec) -> DockerSaved {
    let staging = PathBuf::from(format!("{}.staging", tar_file.display()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).unwrap_or_else(|e| panic!("create {}: {e}", staging.display()));
    let mut layers = Vec::new();
    for (i, (layer, _)) in spec.layers.iter().enumerate() {
        let path = staging.join(format!("layer-{i}.tar"));
        let (diff_id, _) = write_layer_tar(layer, &path);
        layers.push((diff_id, path));
    }
    let diff_ids: Vec<String> = layers.iter().map(|(d, _)| d.clone()).collect();
    let config_bytes = spec.config_json(&diff_ids);
    let config_digest = digest_of(&config_bytes);
    let config_hex = config_digest.trim_start_matches("sha256:").to_string();
    let layer_names: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}/layer.tar", d.trim_start_matches("sha256:")))
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let manifest_json = serde_json::to_vec(&manifest).expect("serialize manifest.json");
    let mut repositories = serde_json::Map::new();
    if let Some(top) = diff_ids.last() {
        for tag in repo_tags {
            if let Some((repo, tag)) = tag.rsplit_once(':') {
                let entry = repositories
                    .entry(repo.to_string())
                    .or_insert_with(|| serde_json::json!({}));
                entry[tag] = serde_json::json!(top.trim_start_matches("sha256:"));
            }
        }
    }
    let repositories = serde_json::to_vec(&repositories).expect("serialize repositories");

    let out =
        File::create(tar_file).unwrap_or_else(|e| panic!("create {}: {e}", tar_file.display()));
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut done = std::collections::BTreeSet::new();
    let mut add = |tar: &mut tar::Builder<_>| -> io::Result<()> {
        for ((diff_id, path), name) in layers.iter().zip(&layer_names) {
            if !done.insert(diff_id.clone()) {
                continue;
            }
            let dir = name.trim_end_matches("/layer.tar");
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut h, format!("{dir}/"), io::empty())?;
            let file = File::open(path)?;
            let mut h = header(tar::EntryType::Regular, 0o644, file.metadata()?.len());
            tar.append_data(&mut h, name, file)?;
        }
        let mut h = header(tar::EntryType::Regular, 0o644, config_bytes.len() as u64);
        tar.append_data(&mut h, format!("{config_hex}.json"), &config_bytes[..])?;
        let mut h = header(tar::EntryType::Regular, 0o644, manifest_json.len() as u64);
        tar.append_data(&mut h, "manifest.json", &manifest_json[..])?;
        let mut h = header(tar::EntryType::Regular, 0o644, repositories.len() as u64);
        tar.append_data(&mut h, "repositories", &repositories[..])?;
        Ok(())
    };
    add(&mut tar).unwrap_or_else(|e| panic!("write {}: {e}", tar_file.display()));
    tar.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .unwrap_or_else(|e| panic!("finish {}: {e}", tar_file.display()));
    let _ = fs::remove_dir_all(&staging);
    DockerSaved {
        config_digest,
        config_bytes,
        diff_ids,
        manifest_json,
    }
}

/// The ref names (`org.opencontainers.image.ref.name`) and media types in a layout's
/// index.json.
pub fn layout_refs(layout: &Path) -> Vec<(String, String)> {
    let path = layout.join("index.json");
    let index: serde_json::Value = serde_json::from_slice(
        &fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
    )
    .unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|d| {
                    (
                        d["annotations"][REF_NAME]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                        d["mediaType"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn skopeo(args: &[String]) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("skopeo");
    // No trust policy (the host's policy.json may be missing or strict).
    cmd.arg("--insecure-policy").args(args);
    let out = super::output_within(&mut cmd, SKOPEO_TIMEOUT);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "skopeo {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn creds_args(prefix: &str, creds: Option<(&str, &str)>) -> Vec<String> {
    match creds {
        Some((user, password)) => vec![format!("--{prefix}creds"), format!("{user}:{password}")],
        None => vec![format!("--{prefix}no-creds")],
    }
}

/// `skopeo copy --all --preserve-digests oci:DIR:REF docker://ADDR/REPO_TAG` over plain
/// HTTP, anonymous when `creds` is None. `--preserve-digests` makes skopeo fail rather
/// than recompress a layer or rewrite a manifest: what lands in the registry is
/// byte-identical to the layout. `--all` copies every platform of an index (and is a
/// no-op for a single manifest). Err carries skopeo's stderr.
pub fn skopeo_push(
    layout: &Path,
    ref_name: &str,
    registry_addr: &str,
    repo_tag: &str,
    creds: Option<(&str, &str)>,
) -> Result<(), String> {
    let mut args: Vec<String> = ["copy", "--quiet", "--all", "--preserve-digests"]
        .map(String::from)
        .into();
    args.push("--dest-tls-verify=false".into());
    args.extend(creds_args("dest-", creds));
    args.push(format!("oci:{}:{ref_name}", layout.display()));
    args.push(format!("docker://{registry_addr}/{repo_tag}"));
    skopeo(&args).map(|_| ())
}

/// The reverse of [`skopeo_push`]: `docker://ADDR/REFERENCE` (`repo:tag` or
/// `repo@sha256:...`) into the layout `dir` under `ref_name`, every platform, layers as
/// they are (uncompressed ones stay uncompressed), digests preserved.
pub fn skopeo_pull(
    registry_addr: &str,
    reference: &str,
    creds: Option<(&str, &str)>,
    layout: &Path,
    ref_name: &str,
) -> Result<(), String> {
    let mut args: Vec<String> = ["copy", "--quiet", "--all", "--preserve-digests"]
        .map(String::from)
        .into();
    args.push("--src-tls-verify=false".into());
    args.push("--dest-oci-accept-uncompressed-layers".into());
    args.extend(creds_args("src-", creds));
    args.push(format!("docker://{registry_addr}/{reference}"));
    args.push(format!("oci:{}:{ref_name}", layout.display()));
    skopeo(&args).map(|_| ())
}

/// The raw bytes of the manifest (or index) the registry serves for `reference`
/// (`repo:tag` or `repo@sha256:...`), anonymously; panics if skopeo fails.
pub fn skopeo_inspect_raw(registry_addr: &str, reference: &str) -> Vec<u8> {
    skopeo_inspect_raw_with(registry_addr, reference, None).unwrap_or_else(|e| panic!("{e}"))
}

/// [`skopeo_inspect_raw`] with credentials, and an Err (skopeo's stderr) on failure.
pub fn skopeo_inspect_raw_with(
    registry_addr: &str,
    reference: &str,
    creds: Option<(&str, &str)>,
) -> Result<Vec<u8>, String> {
    let mut args: Vec<String> = vec!["inspect".into(), "--raw".into()];
    args.push("--tls-verify=false".into());
    args.extend(creds_args("", creds));
    args.push(format!("docker://{registry_addr}/{reference}"));
    skopeo(&args)
}

/// The mount points under a daemon's data dir `data` (its containers' rootfs overlays).
pub fn mounts_under(data: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(data.to_str().unwrap()))
        .collect()
}

/// The snapshots of the data dir `data` that are not committed layers (containers'
/// writable ones, views, extracts).
pub fn active_snapshots(data: &Path) -> Vec<String> {
    let text = fs::read_to_string(data.join("snapshots/metadata.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out = Vec::new();
    if let Some(map) = v.get("snapshots").and_then(|s| s.as_object()) {
        for (name, s) in map {
            if s.get("kind").and_then(|k| k.as_str()) != Some("committed") {
                out.push(name.clone());
            }
        }
    }
    out
}
