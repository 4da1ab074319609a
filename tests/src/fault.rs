//! A TCP proxy a test can cut: a backend "goes away" for the one service
//! behind the proxy, while the backend itself (shared by every other test)
//! keeps running.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A proxy to one `host:port`.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding to `target`.
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::<JoinHandle<()>>::new()));
        let target = target.to_owned();
        let accept = {
            let (cut, connections) = (cut.clone(), connections.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        // Away: the connection is closed as it opens.
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    let mut open = connections.lock().expect("connections");
                    open.retain(|t| !t.is_finished());
                    open.push(task);
                }
            })
        };
        Self {
            addr,
            cut,
            connections,
            accept,
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The backend goes away: every open connection is dropped, new ones
    /// are closed as they open.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self.connections.lock().expect("connections").drain(..) {
            task.abort();
        }
    }

    /// The backend is back.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in self.connections.lock().expect("connections").drain(..) {
            task.abort();
        }
    }
}

/// A Redis server of the test's own, to restart and flush at will (the
/// shared one serves every other test).
#[derive(Debug)]
pub struct OwnRedis {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts `redis-server` on a free loopback port, keeping nothing on
    /// disk, and waits until it answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        Self::start_at(crate::free_port(), dir).await
    }

    async fn start_at(port: u16, dir: tempfile::TempDir) -> Self {
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (infra/up.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(url.as_str())
                && client.get_multiplexed_async_connection().await.is_ok()
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Self { child, port, dir }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and starts it again on the same port, empty.
    pub async fn restart(mut self) -> Self {
        self.kill().await;
        Self::start_at(self.port, self.dir).await
    }

    /// Kills it (SIGKILL): nothing answers on its port until
    /// [`OwnRedis::restart`].
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill redis");
        let _ = self.child.wait().await;
    }

    /// `FLUSHALL`: every key of every database gone.
    pub async fn flushall(&self) {
        let client = redis::Client::open(self.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .expect("flush");
    }
}
