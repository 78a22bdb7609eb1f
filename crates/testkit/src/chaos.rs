//! A chaos TCP proxy on every link between nodes, for the fault tests.
//!
//! Each node reaches every other node's Raft/admin listener and PostgreSQL
//! through its own proxy (`[network.dial.NAME]` in its config), so a link
//! (from one node, to another, Raft or replication) can be cut, delayed or
//! garbled at runtime while clients still reach every PostgreSQL directly.
//!
//! A cut link accepts connections and never forwards them (as a partition
//! drops packets: the peer's connect or request times out) and closes the
//! connections it carried. TCP needs both directions, so cutting the link
//! from A to B stops every connection A opens to B; B's connections to A
//! run on the link from B to A. "One way" here means one node cannot
//! reach the other while the other still reaches it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Cut,
    /// Every chunk waits this long in each direction.
    Delay(Duration),
    /// Every chunk has bytes flipped in each direction.
    Garble,
}

/// One proxy: a listener on 127.0.0.1 forwarding to `target`.
#[derive(Clone)]
pub struct Link {
    pub listen: SocketAddr,
    pub target: SocketAddr,
    fault: watch::Sender<Fault>,
}

impl Link {
    /// Binds a free port (none of `reserved`: ports chosen for servers that
    /// have not started yet) and forwards to `target`; runs on the current
    /// tokio runtime until that runtime stops.
    pub async fn start(target: SocketAddr, reserved: &[u16]) -> Link {
        let listener = loop {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind a chaos proxy");
            if !reserved.contains(&l.local_addr().expect("bound").port()) {
                break l;
            }
        };
        let listen = listener.local_addr().expect("bound");
        let (fault, _) = watch::channel(Fault::Pass);
        let link = Link { listen, target, fault };
        let serving = link.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, serving.target, serving.fault.subscribe()));
            }
        });
        link
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

/// One connection: held while the link is cut (closed when the link
/// changes), otherwise forwarded with the link's fault applied.
async fn serve(client: TcpStream, target: SocketAddr, mut fault: watch::Receiver<Fault>) {
    if *fault.borrow_and_update() == Fault::Cut {
        // Hold it, like a partition: nothing arrives, nothing answers.
        let _ = fault.changed().await;
        return;
    }
    let Ok(Ok(server)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let cut = {
        let mut f = fault.clone();
        async move {
            loop {
                if *f.borrow_and_update() == Fault::Cut {
                    return;
                }
                if f.changed().await.is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        _ = pump(&mut cr, &mut sw, fault.clone()) => {}
        _ = pump(&mut sr, &mut cw, fault.clone()) => {}
        _ = cut => {}
    }
}

async fn pump<R, W>(from: &mut R, to: &mut W, fault: watch::Receiver<Fault>)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut seed: u32 = 0x9E37_79B9;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *fault.borrow();
        match current {
            Fault::Pass | Fault::Cut => {}
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::Garble => {
                for byte in buf[..n].iter_mut() {
                    // xorshift: a cheap, varying pattern of flipped bits.
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    if seed.is_multiple_of(4) {
                        *byte ^= (seed >> 8) as u8 | 1;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Which traffic of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Traffic {
    Raft,
    Replication,
}

/// Every link of a cluster: (from node, to node, traffic) → proxy.
pub struct Chaos {
    pub links: BTreeMap<(u64, u64, Traffic), Link>,
}

impl Chaos {
    fn each(&self, mut pick: impl FnMut(u64, u64, Traffic) -> bool, fault: Fault) {
        for ((from, to, traffic), link) in &self.links {
            if pick(*from, *to, *traffic) {
                link.set(fault);
            }
        }
    }

    /// Cuts `node` off from every other node, both ways, Raft and
    /// replication (clients still reach it directly).
    pub fn isolate(&self, node: u64) {
        self.each(|f, t, _| f == node || t == node, Fault::Cut);
    }

    /// `from` cannot reach `to` (any traffic); `to` still reaches `from`.
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.each(|f, t, _| f == from && t == to, Fault::Cut);
    }

    /// Applies `fault` to every link to and from `node` of `traffic`.
    pub fn around(&self, node: u64, traffic: Traffic, fault: Fault) {
        self.each(|f, t, tr| (f == node || t == node) && tr == traffic, fault);
    }

    pub fn heal(&self) {
        self.each(|_, _, _| true, Fault::Pass);
    }
}
