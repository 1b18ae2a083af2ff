//! The harness: the real `portcullis` binary in a temporary folder, an echo upstream
//! that records every request it receives, test certificates, and raw-socket clients
//! for requests no well-behaved client library would send.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type TestBody = BoxBody<Bytes, hyper::Error>;

fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("portcullis-e2e-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a folder tree (the default policy bundle into a test's folder).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the echo upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
}

/// An upstream app that records every request. Paths:
/// `/stream` echoes the body as it arrives; `/count` answers the number of body bytes;
/// `/slow` answers after one second; `/very-slow` after ten; `/ws` is a WebSocket echo;
/// anything else answers `echo`.
#[derive(Clone)]
pub struct EchoUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let recorded = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let recorded = Arc::clone(&recorded);
                        async move { Ok::<_, Infallible>(upstream_respond(recorded, request).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        EchoUpstream { addr, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A bare upstream answering each request head with `reply(target)`, byte for byte,
/// and counting its connections. It never reads a request body; it closes the
/// connection after a reply that says `connection: close`, and without saying so
/// after answering a target under `/closes` (as a server whose keep-alive timeout ran
/// out does); asked for `/once` a second time on one connection, it closes it without
/// an answer (as if that timeout ran out as the request arrived).
pub async fn scripted_upstream(reply: fn(&str) -> &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut answered = 0;
                let mut chunk = [0_u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                    if target == "/once" && answered > 0 {
                        return;
                    }
                    answered += 1;
                    let answer = reply(&target);
                    if stream.write_all(answer.as_bytes()).await.is_err()
                        || answer.contains("connection: close")
                        || target.starts_with("/closes")
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn upstream_respond(
    recorded: Arc<Mutex<Vec<Seen>>>,
    mut request: Request<Incoming>,
) -> Response<TestBody> {
    recorded.lock().unwrap().push(Seen {
        method: request.method().clone(),
        target: request.uri().to_string(),
        version: request.version(),
        headers: request.headers().clone(),
    });
    match request.uri().path() {
        "/stream" => Response::new(request.into_body().boxed()),
        "/count" => {
            let mut body = request.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len() as u64;
                }
            }
            Response::new(full(total.to_string()))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Response::new(full("slow"))
        }
        "/very-slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Response::new(full("very slow"))
        }
        "/ws" => {
            let key = request.headers().get("sec-websocket-key").cloned().unwrap();
            let on_upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                let upgraded = on_upgrade.await.unwrap();
                let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_close() {
                        break;
                    }
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
            });
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(full(""))
                .unwrap()
        }
        _ => Response::new(full("echo")),
    }
}

/// The main key test gateways load (`main_key = "env:PORTCULLIS_TEST_KEY"`).
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// A running `portcullis serve`, killed (by its own PID) on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub config: PathBuf,
    /// The internal listener's address, when the setup asked for one.
    pub internal: Option<SocketAddr>,
}

/// Test certificates: a CA and a leaf for `localhost` signed by it.
pub struct TestPki {
    pub ca_pem: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        TestPki {
            ca_pem: issuer.pem(),
            issuer,
        }
    }

    /// A leaf for `localhost` with the given common name: (cert PEM, key PEM).
    pub fn leaf(&self, common_name: &str) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Options for the generated configuration.
#[derive(Default)]
pub struct Setup {
    /// Extra TOML appended after the listener (network, limits, identity tables).
    pub extra: String,
    /// `[[route]]` tables.
    pub routes: String,
    /// Serve TLS with these PEM files (cert, key) written as `cert.pem`/`key.pem`.
    pub tls: Option<(String, String)>,
    /// Also start the internal listener on this port.
    pub internal_port: Option<u16>,
    /// Extra lines for the `[policy]` table (e.g. `bindings = "bindings.json"`).
    pub policy: String,
    /// Start with `--unsafe-test-clock` (needs `internal_port`), so the test can move
    /// the gateway's wall clock with [`Gateway::advance_clock`] instead of sleeping.
    pub test_clock: bool,
}

/// A gateway folder with its configuration written, not yet started: tests run CLI
/// commands against it (the same store) before the process starts.
pub struct Prepared {
    pub dir: TempDir,
    pub config: PathBuf,
    port: u16,
    internal_port: Option<u16>,
    test_clock: bool,
}

impl Prepared {
    /// Runs `portcullis ARGS --config <this config>` and returns stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        admin_cli(&self.config, args).trim().to_owned()
    }

    /// `http://127.0.0.1:PORT`: where the gateway will listen.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn start(self) -> Gateway {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.arg("serve").arg("--config").arg(&self.config);
        if self.test_clock {
            command.arg("--unsafe-test-clock");
        }
        let child = command
            .env("PORTCULLIS_LOG", "warn")
            .env("PORTCULLIS_TEST_KEY", TEST_KEY)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let gateway = Gateway {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            dir: self.dir,
            config: self.config,
            internal: self
                .internal_port
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        };
        gateway.wait_listening().await;
        gateway
    }
}

impl Gateway {
    pub async fn start(setup: Setup) -> Gateway {
        Gateway::prepare(setup).start().await
    }

    pub fn prepare(setup: Setup) -> Prepared {
        let dir = TempDir::new("gw");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            &dir.path().join("policies"),
        );
        let port = free_port();
        let tls = match &setup.tls {
            Some((cert, key)) => {
                std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
                std::fs::write(dir.path().join("key.pem"), key).unwrap();
                "tls = { cert = \"cert.pem\", key = \"key.pem\" }\n"
            }
            None => "",
        };
        let internal = match setup.internal_port {
            Some(port) => format!("[internal]\nbind = \"127.0.0.1:{port}\"\n"),
            None => String::new(),
        };
        let config = format!(
            "version = 1\n[[listener]]\nname = \"test\"\nbind = \"127.0.0.1:{port}\"\n{tls}{internal}\
             [store]\nurl = \"sqlite://p.db\"\n[policy]\ndir = \"policies\"\n{}\n[keys]\nmain_key = \"env:PORTCULLIS_TEST_KEY\"\n\
             {}\n{}",
            setup.policy, setup.extra, setup.routes
        );
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).unwrap();
        Prepared {
            dir,
            config: config_path,
            port,
            internal_port: setup.internal_port,
            test_clock: setup.test_clock,
        }
    }

    /// Moves the gateway's wall clock forward (it must run with `test_clock`).
    pub async fn advance_clock(&self, seconds: u32) {
        let internal = self.internal.expect("advance_clock needs internal_port");
        let response = raw_exchange(
            internal,
            format!(
                "POST /test/clock/advance?seconds={seconds} HTTP/1.1\r\nHost: internal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// Polls until the listener accepts connections (bounded: 15 s).
    async fn wait_listening(&self) {
        for _ in 0..300 {
            if TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not start listening on {}", self.addr);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded: 15 s) for the process to exit and returns whether it succeeded.
    pub async fn wait_exit(&mut self) -> bool {
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not exit");
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A route table entry.
pub fn route(id: &str, host: &str, path: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\nid = \"{id}\"\nhost = \"{host}\"\npath = \"{path}\"\nupstream = \"{upstream}\"\naccess = \"public\"\n{extra}\n"
    )
}

/// A parsed HTTP/1.1 response from a raw exchange.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` bytes as they are and reads until the server closes (bounded: 10 s).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    RawResponse {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `GET path` with the given host and extra header lines, `Connection: close`.
pub async fn raw_get(addr: SocketAddr, host: &str, path: &str, headers: &[&str]) -> RawResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    raw_exchange(addr, request.as_bytes()).await
}

/// One kept-alive HTTP/1.1 connection to a gateway, for requests that must share it.
pub struct KeptAlive(hyper::client::conn::http1::SendRequest<TestBody>);

impl KeptAlive {
    pub async fn open(addr: SocketAddr) -> KeptAlive {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        KeptAlive(sender)
    }

    /// `GET path` on `app.test` with one extra header; the status (the body is read).
    pub async fn get(&mut self, path: &str, name: &str, value: &str) -> u16 {
        let request = Request::get(path)
            .header("host", "app.test")
            .header(name, value)
            .body(empty())
            .unwrap();
        // hyper refuses a request sent before the connection took back the last one.
        self.0.ready().await.unwrap();
        let response = self.0.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        response.into_body().collect().await.unwrap();
        status
    }
}

/// A plain HTTP/1.1 client.
pub fn client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request with an empty body and returns (status, headers, body text).
pub async fn send(request: Request<TestBody>) -> (StatusCode, HeaderMap, String) {
    let response = client().request(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub fn empty() -> TestBody {
    full("")
}

pub fn body(bytes: impl Into<Bytes>) -> TestBody {
    full(bytes)
}

/// Header map as lower-case name → values, for assertions.
pub fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect()
}

/// Runs `portcullis GROUP --config CONFIG REST…` (an admin command) and returns stdout.
pub fn admin_cli(config: &Path, args: &[&str]) -> String {
    let (group, rest) = args.split_first().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg(group)
        .arg("--config")
        .arg(config)
        .args(rest)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// GETs `path` with `header` until the status is `expected` (bounded: 10 s), for
/// changes that reach a running gateway through a cache; returns the last status.
pub async fn wait_for_status(addr: SocketAddr, path: &str, header: &str, expected: u16) -> u16 {
    let mut status = 0;
    for _ in 0..100 {
        status = raw_get(addr, "app.test", path, &[header]).await.status;
        if status == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status
}
