//! The one place where registry failures become [`Error`]s: HTTP statuses, OCI error codes,
//! network failures and digest mismatches, each named with the registry and what was asked
//! (`busybox:1`, or `busybox:1 blob sha256:...`).

use crate::error::Error;
use oci_client::errors::{DigestError, OciDistributionError, OciEnvelope};
use std::error::Error as StdError;

/// What a failure is about: the registry host and the reference (with the blob, if any).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subject<'a> {
    /// The registry host: `127.0.0.1:5000`.
    pub host: &'a str,
    /// `busybox:1`, `busybox:1 blob sha256:...`.
    pub what: &'a str,
}

/// Maps an oci-client failure.
pub(crate) fn map_error(err: OciDistributionError, s: Subject<'_>) -> Error {
    tracing::debug!(host = s.host, what = s.what, error = %err, "registry request failed");
    use OciDistributionError as E;
    match err {
        E::UnauthorizedError { .. } => from_status(401, "", s),
        E::AuthenticationFailure(reason) => Error::PermissionDenied(format!(
            "authentication with {} failed for {}: credentials missing or refused ({})",
            s.host,
            s.what,
            trim(&reason)
        )),
        E::ServerError { code, message, .. } => {
            // Some paths (pushes) hand over a 4xx body unparsed: an OCI error body says more.
            match serde_json::from_str::<OciEnvelope>(&message) {
                Ok(envelope) if (400..500).contains(&code) && !envelope.errors.is_empty() => {
                    from_envelope(&envelope, s)
                }
                _ => from_status(code, &message, s),
            }
        }
        E::RegistryError { envelope, .. } => from_envelope(&envelope, s),
        E::DigestError(e) => from_digest(&e, s),
        E::RequestError(e) => {
            if e.is_timeout() {
                return timeout(&chain(&e).1, s);
            }
            if let Some(status) = e.status() {
                return from_status(status.as_u16(), "", s);
            }
            if e.is_builder() {
                return Error::InvalidArgument(format!(
                    "bad request to {} for {}: {}",
                    s.host,
                    s.what,
                    chain(&e).1
                ));
            }
            from_network(&e, s)
        }
        E::IoError(e) => map_io(e, s),
        E::SpecViolationError(m) => Error::Unavailable(format!(
            "{} broke the distribution spec for {}: {m}",
            s.host, s.what
        )),
        E::RegistryNoLocationError | E::RegistryNoDigestError => Error::Unavailable(format!(
            "{} broke the distribution spec for {}: {err}",
            s.host, s.what
        )),
        E::JsonError(_)
        | E::ManifestEncodingError(_)
        | E::ManifestParsingError(_)
        | E::VersionedParsingError(_)
        | E::RegistryTokenDecodeError(_)
        | E::HeaderValueError(_) => {
            Error::Corrupt(format!("bad answer from {} for {}: {err}", s.host, s.what))
        }
        E::UrlParseError(_) => {
            Error::InvalidArgument(format!("bad URL for {} on {}: {err}", s.what, s.host))
        }
        other => Error::Internal(format!("registry {} for {}: {other}", s.host, s.what)),
    }
}

/// Maps an I/O failure while a body streams (a blob download), or one oci-client wrapped.
pub(crate) fn map_io(err: std::io::Error, s: Subject<'_>) -> Error {
    if let Some(digest) = err.get_ref().and_then(|e| e.downcast_ref::<DigestError>()) {
        return from_digest(digest, s);
    }
    from_network(&err, s)
}

/// A failure somewhere in the network stack (connect, DNS, TLS, reset, timeout): which is
/// it, by the `std::io::Error`s in its chain, and the whole chain as text.
fn from_network(err: &(dyn StdError + 'static), s: Subject<'_>) -> Error {
    let (timed_out, text) = chain(err);
    if timed_out {
        timeout(&text, s)
    } else {
        Error::Unavailable(format!("{} unreachable for {}: {text}", s.host, s.what))
    }
}

fn timeout(text: &str, s: Subject<'_>) -> Error {
    Error::Timeout(format!("{} timed out for {}: {text}", s.host, s.what))
}

/// Whether the chain holds a timeout, and its messages joined (each once).
fn chain(err: &(dyn StdError + 'static)) -> (bool, String) {
    let mut timed_out = false;
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            // A custom io::Error's source() skips the error it wraps: go through it.
            if let Some(inner) = io.get_ref() {
                let text = io.to_string();
                if !parts.iter().any(|p| p.contains(&text)) {
                    parts.push(text);
                }
                next = Some(inner);
                continue;
            }
        }
        let text = e.to_string();
        // reqwest's own timeout error is a private type: known by its words.
        timed_out |= text.contains("timed out");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    (timed_out, parts.join(": "))
}

fn from_digest(err: &DigestError, s: Subject<'_>) -> Error {
    match err {
        DigestError::VerificationError { expected, actual } => Error::Corrupt(format!(
            "{} from {}: digest mismatch: expected {expected}, got {actual}",
            s.what, s.host
        )),
        other => Error::Corrupt(format!("{} from {}: {other}", s.what, s.host)),
    }
}

/// An HTTP status without an OCI error body.
pub(crate) fn from_status(code: u16, body: &str, s: Subject<'_>) -> Error {
    let status = match reason(code) {
        "" => code.to_string(),
        reason => format!("{code} {reason}"),
    };
    let body = trim(body);
    let detail = if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    };
    let (host, what) = (s.host, s.what);
    match code {
        401 | 403 => Error::PermissionDenied(format!(
            "{status} from {host} for {what}: credentials missing or refused{detail}"
        )),
        404 => Error::NotFound(format!("{what} not found on {host} ({status})")),
        408 | 504 => Error::Timeout(format!("{status} from {host} for {what}{detail}")),
        429 => Error::Unavailable(format!(
            "{status} from {host} for {what}: rate limited{detail}"
        )),
        500..=599 => Error::Unavailable(format!("{status} from {host} for {what}{detail}")),
        400..=499 => Error::InvalidArgument(format!("{status} from {host} for {what}{detail}")),
        _ => Error::Unavailable(format!(
            "unexpected HTTP {status} from {host} for {what}{detail}"
        )),
    }
}

/// A 4xx with an OCI error body: the first error's code says what it is.
fn from_envelope(envelope: &OciEnvelope, s: Subject<'_>) -> Error {
    let codes: Vec<(String, &str)> = envelope
        .errors
        .iter()
        .map(|e| {
            let code = serde_json::to_value(&e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", e.code));
            (code, e.message.as_str())
        })
        .collect();
    let detail = codes
        .iter()
        .map(|(code, message)| {
            if message.is_empty() {
                code.clone()
            } else {
                format!("{code}: {message}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let detail = trim(&detail);
    let (host, what) = (s.host, s.what);
    let first = codes.first().map(|(c, _)| c.as_str()).unwrap_or("");
    match first {
        "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND" => {
            Error::NotFound(format!("{what} not found on {host} ({detail})"))
        }
        "UNAUTHORIZED" | "DENIED" => Error::PermissionDenied(format!(
            "{host} denied {what}: credentials missing or refused ({detail})"
        )),
        "DIGEST_INVALID" | "SIZE_INVALID" => {
            Error::Corrupt(format!("{host} refused {what}: {detail}"))
        }
        "TOOMANYREQUESTS" => {
            Error::Unavailable(format!("{host} is rate limiting {what}: {detail}"))
        }
        "BLOB_UPLOAD_UNKNOWN" | "BLOB_UPLOAD_INVALID" => {
            Error::Unavailable(format!("{host} lost the upload of {what}: {detail}"))
        }
        _ => Error::InvalidArgument(format!("{host} refused {what}: {detail}")),
    }
}

/// A registry's message, cut short (an error page can be a whole HTML document).
fn trim(s: &str) -> String {
    const MAX: usize = 300;
    let s = s.trim();
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Subject<'static> = Subject {
        host: "127.0.0.1:5000",
        what: "busybox:1",
    };

    fn envelope(json: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str(json).unwrap(),
            url: "http://127.0.0.1:5000/v2/busybox/manifests/1".into(),
        }
    }

    fn server(code: u16, message: &str) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://x/".into(),
            message: message.into(),
        }
    }

    #[test]
    fn statuses() {
        let e = map_error(
            OciDistributionError::UnauthorizedError { url: "u".into() },
            S,
        );
        assert_eq!(
            e,
            Error::PermissionDenied(
                "401 Unauthorized from 127.0.0.1:5000 for busybox:1: credentials missing or refused"
                    .into()
            )
        );
        assert!(
            matches!(map_error(server(403, ""), S), Error::PermissionDenied(m) if m.starts_with("403 Forbidden from 127.0.0.1:5000 for busybox:1"))
        );
        assert_eq!(
            map_error(server(404, ""), S),
            Error::NotFound("busybox:1 not found on 127.0.0.1:5000 (404 Not Found)".into())
        );
        assert_eq!(
            map_error(server(503, "try later"), S),
            Error::Unavailable(
                "503 Service Unavailable from 127.0.0.1:5000 for busybox:1 (try later)".into()
            )
        );
        assert!(matches!(
            map_error(server(500, ""), S),
            Error::Unavailable(_)
        ));
        assert!(matches!(map_error(server(504, ""), S), Error::Timeout(_)));
        assert!(
            matches!(map_error(server(429, ""), S), Error::Unavailable(m) if m.contains("rate limited"))
        );
        assert!(
            matches!(map_error(server(400, "bad"), S), Error::InvalidArgument(m) if m.contains("(bad)"))
        );
        assert!(
            matches!(map_error(server(302, ""), S), Error::Unavailable(m) if m.contains("unexpected HTTP 302"))
        );
        // A push's 400 comes with its OCI error body as text.
        let body = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
        assert_eq!(
            map_error(server(400, body), S),
            Error::Corrupt(
                "127.0.0.1:5000 refused busybox:1: DIGEST_INVALID: provided digest did not match \
                 uploaded content"
                    .into()
            )
        );
        assert!(matches!(
            map_error(server(500, body), S),
            Error::Unavailable(_)
        ));
        let page = "<html>".repeat(1000);
        match map_error(server(502, &page), S) {
            Error::Unavailable(m) => assert!(m.len() < 400 && m.ends_with("...)"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oci_codes() {
        let e = map_error(
            envelope(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1"}}]}"#,
            ),
            S,
        );
        assert_eq!(
            e,
            Error::NotFound(
                "busybox:1 not found on 127.0.0.1:5000 (MANIFEST_UNKNOWN: manifest unknown)".into()
            )
        );
        for code in ["NAME_UNKNOWN", "BLOB_UNKNOWN"] {
            let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
            assert!(
                matches!(map_error(envelope(&json), S), Error::NotFound(m) if m.contains(code))
            );
        }
        let e = map_error(
            envelope(
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
            S,
        );
        assert!(
            matches!(e, Error::PermissionDenied(m) if m.contains("127.0.0.1:5000") && m.contains("busybox:1"))
        );
        let e = map_error(envelope(r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#), S);
        assert_eq!(
            e,
            Error::Corrupt("127.0.0.1:5000 refused busybox:1: DIGEST_INVALID".into())
        );
        let e = map_error(
            envelope(
                r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
            ),
            S,
        );
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        let e = map_error(envelope(r#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#), S);
        assert!(matches!(e, Error::Unavailable(_)));
        let e = map_error(
            envelope(r#"{"errors":[{"code":"SOMETHING_ELSE","message":"x"}]}"#),
            S,
        );
        assert!(matches!(e, Error::InvalidArgument(m) if m.contains("SOMETHING_ELSE: x")));
    }

    #[test]
    fn digests() {
        let e = map_error(
            OciDistributionError::DigestError(DigestError::VerificationError {
                expected: "sha256:aa".into(),
                actual: "sha256:bb".into(),
            }),
            S,
        );
        assert_eq!(
            e,
            Error::Corrupt(
                "busybox:1 from 127.0.0.1:5000: digest mismatch: expected sha256:aa, got sha256:bb"
                    .into()
            )
        );
        // The same, from inside a body stream.
        let io = std::io::Error::other(DigestError::VerificationError {
            expected: "sha256:aa".into(),
            actual: "sha256:cc".into(),
        });
        assert!(matches!(map_io(io, S), Error::Corrupt(m) if m.contains("sha256:cc")));
    }

    #[test]
    fn network() {
        use std::io::{Error as Io, ErrorKind};
        let e = map_io(
            Io::new(ErrorKind::ConnectionReset, "connection reset by peer"),
            S,
        );
        assert_eq!(
            e,
            Error::Unavailable(
                "127.0.0.1:5000 unreachable for busybox:1: connection reset by peer".into()
            )
        );
        let e = map_io(Io::new(ErrorKind::TimedOut, "deadline"), S);
        assert!(
            matches!(e, Error::Timeout(m) if m.starts_with("127.0.0.1:5000 timed out for busybox:1"))
        );
        // A timeout deep in a chain, behind a wrapper that says nothing of it.
        #[derive(Debug)]
        struct Wrap(Io);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error decoding response body")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = map_io(Io::other(Wrap(Io::new(ErrorKind::TimedOut, "read"))), S);
        match e {
            Error::Timeout(m) => assert!(m.contains("error decoding response body: read"), "{m}"),
            other => panic!("{other:?}"),
        }
        let e = map_error(
            OciDistributionError::IoError(Io::new(ErrorKind::ConnectionRefused, "refused")),
            S,
        );
        assert!(matches!(e, Error::Unavailable(m) if m.contains("refused")));
    }

    #[test]
    fn others() {
        let e = map_error(OciDistributionError::SpecViolationError("202".into()), S);
        assert!(
            matches!(e, Error::Unavailable(m) if m.contains("127.0.0.1:5000") && m.contains("busybox:1"))
        );
        let e = map_error(
            OciDistributionError::AuthenticationFailure("bad token".into()),
            S,
        );
        assert!(matches!(e, Error::PermissionDenied(m) if m.contains("bad token")));
        let e = map_error(OciDistributionError::ManifestParsingError("x".into()), S);
        assert!(matches!(e, Error::Corrupt(_)));
    }
}
