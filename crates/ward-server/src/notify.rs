//! The service manager's readiness protocol (`sd_notify`): under systemd with `Type=notify`,
//! `NOTIFY_SOCKET` names a datagram socket, and the server says `READY=1` there once all three
//! listeners accept, `RELOADING=1` / `READY=1` around a reload, `STOPPING=1` when it stops.
//! Without `NOTIFY_SOCKET` nothing is sent. No library: one datagram per state.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where `NOTIFY_SOCKET` says to send: a path, or (`@name`) a Linux abstract socket.
pub fn address(notify_socket: &str) -> io::Result<SocketAddr> {
    match notify_socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None if notify_socket.starts_with('/') => SocketAddr::from_pathname(notify_socket),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET={notify_socket}: neither a path nor an abstract name"),
        )),
    }
}

/// Sends `state` (`READY=1`, `STATUS=...`, one per line) to the service manager; `Ok(false)`
/// when there is none to tell.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = address(&target.to_string_lossy())?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &target)?;
    Ok(true)
}

/// [`notify`], with a failure logged rather than returned: the server runs on without a
/// manager that listens.
pub fn tell(state: &str) {
    if let Err(error) = notify(state) {
        tracing::warn!(%error, state, "cannot tell the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_a_path_or_an_abstract_name() {
        assert!(address("/run/systemd/notify")
            .unwrap()
            .as_pathname()
            .is_some());
        let abstract_name = address("@ward-test").unwrap();
        assert!(abstract_name.as_pathname().is_none());
        assert!(address("relative/path").is_err());
    }

    #[test]
    fn a_state_arrives_as_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket
            .send_to_addr(b"READY=1", &address(path.to_str().unwrap()).unwrap())
            .unwrap();
        let mut buffer = [0u8; 64];
        let n = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"READY=1");
    }
}
