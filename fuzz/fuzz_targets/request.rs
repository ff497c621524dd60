//! A request's payload as corrald decodes it (bincode, with the frame limit), then every
//! string in it through the parsers and checks the daemon applies to what clients send:
//! ids and namespaces, signals, platforms, id maps, resource names, times, durations,
//! snapshotter names, stdio paths. Nothing may panic, and a decoded request must encode
//! to a fixed point.
#![no_main]

use corral::rpc::frame::{decode, encode};
use corral::rpc::{ClientFrame, Request};
use corral::{
    parse_signal, resource_field_of, snapshotter_of, validate_id, IdMap, Platform,
    SNAPSHOTTER_OVERLAYFS,
};
use libfuzzer_sys::fuzz_target;

fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}

fn check_text(s: &str) {
    let _ = validate_id("fuzz", s);
    let _ = parse_signal(s);
    let _ = resource_field_of(s);
    let _ = corral::logs::parse_time(s);
    let _ = corral::daemon_config::parse_duration(s);
    let _ = Platform::parse(s);
    if let Ok(map) = IdMap::parse(s) {
        let _ = map.check();
        let _ = map.to_host(map.container_id);
        let _ = map.to_container(map.host_id.wrapping_add(map.size));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Request>(data);
    let Ok(frame) = decode::<ClientFrame>(data) else {
        return;
    };
    let once = encode(&frame).expect("a decoded request encodes");
    let back: ClientFrame = decode(&once[4..]).expect("an encoded request decodes");
    assert_eq!(encode(&back).expect("encodes"), once, "not a fixed point");
    match &frame.request {
        Request::Create(c) => {
            let _ = c.stdio.check_absolute("");
            if let Some(run) = &c.image {
                let _ = snapshotter_of(run, SNAPSHOTTER_OVERLAYFS);
            }
        }
        Request::Exec(e) => {
            let _ = e.stdio.check_absolute("exec ");
        }
        _ => {}
    }
    if let Ok(json) = serde_json::to_value(&frame.request) {
        let mut texts = Vec::new();
        strings(&json, &mut texts);
        texts.iter().for_each(|s| check_text(s));
    }
});
