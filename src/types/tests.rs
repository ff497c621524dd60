//! The vocabulary's parsers and checks.

use crate::error::Error;

use super::*;

#[test]
fn ids_are_checked() {
    assert!(validate_id("container id", "web-1.a_b").is_ok());
    for bad in ["", ".", "..", "a/b", "-x", "a b", "é", &"x".repeat(129)] {
        let err = validate_id("container id", bad).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
    }
    assert!(validate_id("container id", &"x".repeat(128)).is_ok());
}

#[test]
fn live_states() {
    let live: Vec<Status> = Status::ALL.into_iter().filter(|s| s.is_live()).collect();
    assert_eq!(
        live,
        [
            Status::Created,
            Status::Running,
            Status::Pausing,
            Status::Paused
        ]
    );
}

#[test]
fn signals_parse() {
    assert_eq!(parse_signal("9").unwrap(), 9);
    assert_eq!(parse_signal("KILL").unwrap(), 9);
    assert_eq!(parse_signal("sigterm").unwrap(), 15);
    assert!(parse_signal("NOPE").is_err());
    assert!(parse_signal("0").is_err());
}

#[test]
fn restart_policies_parse_and_print() {
    for p in [
        "no",
        "always",
        "unless-stopped",
        "on-failure",
        "on-failure:3",
    ] {
        assert_eq!(p.parse::<RestartPolicy>().unwrap().to_string(), p);
    }
    for bad in ["", "sometimes", "on-failure:x", "on-failure:-1"] {
        assert!(bad.parse::<RestartPolicy>().is_err(), "{bad}");
    }
}

#[test]
fn time_formats_as_rfc3339() {
    assert_eq!(format_time(0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(
        format_time(1_700_000_000_123_456_000),
        "2023-11-14T22:13:20.123456Z"
    );
    assert_eq!(
        parse_time("2023-11-14T22:13:20.123456Z"),
        Some(1_700_000_000_123_456_000)
    );
    assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(parse_time("yesterday"), None);
}
