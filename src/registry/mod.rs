//! PLACEHOLDER until the registry branch lands: the API the image service codes against.
#![allow(missing_docs, dead_code, unused_variables)]
use crate::error::{Error, Result};
use crate::types::{Descriptor, Platform, RemoteOptions};
use std::path::Path;
use std::pin::Pin;

pub fn normalize(reference: &str) -> Result<String> {
    Ok(reference.to_string())
}

pub fn select_platform(index: &[u8], platform: &Platform, name: &str) -> Result<Descriptor> {
    Err(Error::Internal("placeholder".into()))
}

pub struct BlobBody {
    pub restarted: bool,
    pub stream: Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>>> + Send>>,
}

#[derive(Clone)]
pub struct Remote;

impl Remote {
    pub fn new_with_config(r: &str, o: &RemoteOptions, c: Option<&Path>) -> Result<Remote> {
        Err(Error::Internal("placeholder".into()))
    }
    pub fn name(&self) -> String {
        String::new()
    }
    pub fn at_digest(&self, d: &str) -> Result<Remote> {
        Ok(Remote)
    }
    pub async fn resolve(&self) -> Result<(Descriptor, Vec<u8>)> {
        Err(Error::Internal("placeholder".into()))
    }
    pub async fn fetch_manifest(&self, d: &Descriptor) -> Result<Vec<u8>> {
        Err(Error::Internal("placeholder".into()))
    }
    pub async fn blob(&self, d: &Descriptor, offset: u64) -> Result<BlobBody> {
        Err(Error::Internal("placeholder".into()))
    }
    pub async fn push_blob(
        &self,
        d: &Descriptor,
        body: impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    ) -> Result<bool> {
        Err(Error::Internal("placeholder".into()))
    }
    pub async fn push_manifest(&self, media_type: &str, bytes: Vec<u8>) -> Result<()> {
        Err(Error::Internal("placeholder".into()))
    }
}
