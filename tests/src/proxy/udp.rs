//! A loopback UDP proxy that damages traffic the way a bad network does, for
//! QUIC between an agent and the aggregator.
//!
//! Agents send to [`UdpProxy::addr`]; each client address gets its own
//! upstream socket (connected to the aggregator), so the aggregator sees one
//! peer per agent and replies come back the same way. Every datagram, in
//! either direction, goes through the current [`Faults`]: with `cut` it is
//! dropped; otherwise it is dropped with probability `drop`, sent after
//! `delay` plus a uniform `0..jitter` (so jitter alone reorders), held back by
//! a further `reorder_by` with probability `reorder` (later datagrams overtake
//! it), and sent twice with probability `duplicate`. Counters say what was
//! done, so a test can check that its faults really happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// What the proxy does to each datagram; change it at any time with
/// [`UdpProxy::set`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Probability (0..1) that a datagram is dropped.
    pub drop: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_by`.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_by: Duration,
    /// Every datagram waits this long.
    pub delay: Duration,
    /// Plus a uniform random extra wait below this.
    pub jitter: Duration,
    /// Drop everything: the network is cut.
    pub cut: bool,
}

/// What the proxy did so far (datagrams, both directions).
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

impl ProxyCounts {
    /// (forwarded, dropped, duplicated, reordered).
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.forwarded.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.duplicated.load(Ordering::Relaxed),
            self.reordered.load(Ordering::Relaxed),
        )
    }
}

/// Largest datagram relayed (QUIC's are at most ~1.5 kB here).
const MAX_DATAGRAM: usize = 65_536;

struct Shared {
    faults: Mutex<Faults>,
    counts: ProxyCounts,
}

impl Shared {
    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Applies the faults to one datagram and sends it (maybe later, maybe
    /// twice, maybe never) with `send`.
    fn relay(self: &Arc<Self>, data: Vec<u8>, out: Out) {
        let f = self.faults();
        if f.cut || rand::random::<f64>() < f.drop {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut wait = f.delay;
        if !f.jitter.is_zero() {
            wait += f.jitter.mul_f64(rand::random::<f64>());
        }
        if rand::random::<f64>() < f.reorder {
            self.counts.reordered.fetch_add(1, Ordering::Relaxed);
            wait += f.reorder_by;
        }
        let copies = if rand::random::<f64>() < f.duplicate {
            self.counts.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let shared = self.clone();
        let send = async move {
            for _ in 0..copies {
                if out.send(&data).await.is_ok() {
                    shared.counts.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        if wait.is_zero() {
            tokio::spawn(send);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                send.await;
            });
        }
    }
}

/// Where a relayed datagram goes.
enum Out {
    /// Towards the server, on the client's own upstream socket.
    Up(Arc<UdpSocket>),
    /// Back to a client, from the listening socket.
    Down(Arc<UdpSocket>, SocketAddr),
}

impl Out {
    async fn send(&self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Up(s) => s.send(data).await,
            Out::Down(s, to) => s.send_to(data, to).await,
        }
    }
}

/// A running proxy; it stops when dropped.
pub struct UdpProxy {
    /// Where clients send.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    /// Listens on 127.0.0.1 (a port chosen by the OS) and relays to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<UdpProxy> {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = listen.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(Faults::default()),
            counts: ProxyCounts::default(),
        });
        let task = tokio::spawn(serve(listen, target, shared.clone()));
        Ok(UdpProxy { addr, shared, task })
    }

    /// Replaces the faults applied from now on.
    pub fn set(&self, faults: Faults) {
        match self.shared.faults.lock() {
            Ok(mut f) => *f = faults,
            Err(p) => *p.into_inner() = faults,
        }
    }

    /// Drops everything from now on (keeping the other settings).
    pub fn cut(&self, cut: bool) {
        let mut f = self.shared.faults();
        f.cut = cut;
        self.set(f);
    }

    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listen: Arc<UdpSocket>, target: SocketAddr, shared: Arc<Shared>) {
    let mut upstreams: HashMap<SocketAddr, (Arc<UdpSocket>, AbortOnDrop)> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from)) = listen.recv_from(&mut buf).await else {
            continue;
        };
        let up = match upstreams.get(&from) {
            Some((up, _)) => up.clone(),
            None => {
                let Ok(up) = connect(target).await else {
                    continue;
                };
                let up = Arc::new(up);
                let back =
                    tokio::spawn(downstream(up.clone(), listen.clone(), from, shared.clone()));
                upstreams.insert(from, (up.clone(), AbortOnDrop(back)));
                up
            }
        };
        shared.relay(buf[..n].to_vec(), Out::Up(up));
    }
}

async fn connect(target: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0").await?;
    s.connect(target).await?;
    Ok(s)
}

/// Relays the server's datagrams for one client back to it.
async fn downstream(
    up: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match up.recv(&mut buf).await {
            Ok(n) => shared.relay(buf[..n].to_vec(), Out::Down(listen.clone(), client)),
            // ICMP port unreachable while the server is down: keep listening.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Aborts its task when dropped (the serve task's map owns these, so
/// stopping the proxy stops every relay).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
