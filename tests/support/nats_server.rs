//! A `nats-server` process for tests and benchmarks: started on a free loopback port, stopped
//! (killed and reaped) on drop. Shared by `tests/nats_bridge.rs`, `tests/nats_bridge_threads.rs`
//! and `benches/bridge.rs`.
//!
//! The binary is `$NATS_SERVER_BIN` if set, else `nats-server` from `PATH`, else
//! `/usr/sbin/nats-server` (where Debian's package puts it). If none can be started, this
//! panics with a message that says how to install it: a test that needs the server never
//! passes without one.

#![allow(dead_code, reason = "each user needs a different part")]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to accept connections after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `nats-server`, killed on drop.
pub(crate) struct NatsServer {
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free loopback port and waits until it accepts connections.
    pub(crate) fn start() -> Self {
        // Ask the OS for a free port, then hand it to the server. Another process could take
        // it in between; on a test machine that is rare enough, and `start_on` would then
        // fail loudly rather than talk to the wrong server.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("cannot find a free loopback port")
            .port();
        Self::start_on(port)
    }

    /// Starts a server on `port` and waits until it accepts connections.
    pub(crate) fn start_on(port: u16) -> Self {
        let mut server = NatsServer { port, child: None };
        server.restart();
        server
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id, to send it signals.
    ///
    /// # Panics
    ///
    /// If the server is stopped.
    #[track_caller]
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .expect("nats-server is stopped: no pid")
            .id()
    }

    /// Kills the server (no goodbye to clients: like a crash) and waits until the port no
    /// longer accepts connections.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while self.accepts() {
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not stop",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the server again on the same port (stopping it first if it runs).
    pub(crate) fn restart(&mut self) {
        self.stop();
        let child = spawn(self.port);
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.accepts() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "nats-server on port {} exited at start: {status}",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server on port {} did not accept connections within {START_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn accepts(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(port: u16) -> Child {
    let candidates: Vec<String> = match std::env::var("NATS_SERVER_BIN") {
        Ok(bin) => vec![bin],
        Err(_) => vec!["nats-server".into(), "/usr/sbin/nats-server".into()],
    };
    for bin in &candidates {
        let started = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match started {
            Ok(child) => return child,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => panic!("cannot start {bin}: {err}"),
        }
    }
    panic!(
        "the `nats-server` binary was not found (tried {candidates:?}). The NATS bridge tests \
         need a real server: install it (Debian/Ubuntu: `apt-get install nats-server`; .ci/run \
         does this) or set NATS_SERVER_BIN to its path"
    );
}
