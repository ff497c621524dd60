//! The CRI log line parser (`corralctl logs` reads what a container wrote through it) and
//! the `--since`/`--until` time parser. A parsed line written back with its time formatted
//! as the shim writes it must parse to the same entry.
#![no_main]

use corral::logs::{format_time, parse_entry, parse_time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_time(s);
    }
    let Some(entry) = parse_entry(data) else {
        return;
    };
    let mut line = format_time(entry.time_ns).into_bytes();
    line.push(b' ');
    line.extend_from_slice(entry.stream.as_str().as_bytes());
    line.extend_from_slice(if entry.partial { b" P " } else { b" F " });
    line.extend_from_slice(&entry.content);
    assert_eq!(
        parse_entry(&line),
        Some(entry),
        "{:?}",
        String::from_utf8_lossy(&line)
    );
});
