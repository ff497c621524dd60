//! corrald's config file: TOML parsing, then resolving it against no flags (the checks of
//! every value, paths made absolute). Nothing may panic.
#![no_main]

use corral::daemon_config::{resolve, Flags, Loaded};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(loaded) = Loaded::parse(Path::new("/etc/corral/corrald.toml"), text.to_string()) {
        let _ = resolve(&loaded, Flags::default());
    }
});
