//! systemd's readiness protocol (`sd_notify(3)`) without libsystemd: one datagram to the
//! socket named by `NOTIFY_SOCKET` (a path, or an abstract name starting with `@`), and
//! the unit file corrald runs under.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to systemd if corrald runs as a `Type=notify` service;
/// `Ok(false)` when it does not (`NOTIFY_SOCKET` unset).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), std::path::Path::new(&target))?;
    }
    Ok(true)
}

/// The systemd unit for corrald at `binary`: `Type=notify` (ready once it serves),
/// `KillMode=process` (stopping or restarting corrald never kills a container: its shims
/// stay, and the next corrald adopts them), `Delegate=yes` (the unit's cgroup is corral's
/// to arrange), and an open-files limit for thousands of containers.
pub fn unit(binary: &std::path::Path) -> String {
    format!(
        "# corrald, corral's container supervisor. Installed by `corrald unit install`.
[Unit]
Description=corral container supervisor
After=network.target local-fs.target

[Service]
Type=notify
ExecStart={binary}
# Only corrald itself is stopped: containers and their shims keep running and the next
# corrald adopts them (live restore).
KillMode=process
Delegate=yes
Restart=always
RestartSec=1
# Three daemon fds per container at most, and the shims' own.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
",
        binary = binary.display()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_unit_keeps_containers_across_restarts() {
        let u = super::unit(std::path::Path::new("/usr/local/bin/corrald"));
        for line in [
            "Type=notify",
            "ExecStart=/usr/local/bin/corrald",
            "KillMode=process",
            "Delegate=yes",
            "LimitNOFILE=1048576",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
        }
    }
}
