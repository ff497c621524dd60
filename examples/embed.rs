//! Embedding corral in a host agent: the supervisor runs on its own thread inside this
//! process, and every operation is a call on the Handle, no socket involved.
//!
//! Run as root: `cargo run --example embed`.
#![allow(clippy::unwrap_used)] // a benchmark or example stops at its first failure

use corral::{Config, Corral, CreateRequest, EventFilter, Stdio};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let work = std::env::temp_dir().join(format!("corral-embed-{}", std::process::id()));
    let config = Config {
        state_dir: work.join("state"),
        runtime_root: work.join("runc"),
        data_dir: work.join("data"),
        ..Config::default()
    };
    let bundle = work.join("bundle");
    corral::bundle::make_busybox(
        &bundle,
        &[
            "sh".into(),
            "-c".into(),
            "echo hello from an embedded supervisor; exit 7".into(),
        ],
    )?;

    let handle = Corral::spawn(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut events = handle.subscribe(EventFilter::default()).await?;
        let out = work.join("stdout.txt");
        let info = handle
            .create(CreateRequest {
                id: "embedded".into(),
                bundle: bundle.clone(),
                start: true,
                stdio: Stdio {
                    stdout: Some(out.clone()),
                    ..Stdio::default()
                },
                ..CreateRequest::default()
            })
            .await?;
        println!("started {} as pid {}", info.id, info.pid);
        let exit = handle.wait("default", "embedded", None).await?;
        println!(
            "exited with {}; it said: {}",
            exit.code,
            std::fs::read_to_string(&out)?.trim()
        );
        handle.delete("default", "embedded", false).await?;
        for _ in 0..4 {
            if let Some(Ok(event)) = events.next().await {
                println!("event {} {} {}", event.seq, event.topic, event.container_id);
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}
