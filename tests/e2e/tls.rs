//! TLS listeners: modern protocol and suites only, ALPN, and certificate reload on
//! SIGHUP without dropping open connections.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Version};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::{EchoUpstream, Gateway, Setup, TestPki, empty, route};

fn connector(pki: &TestPki, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(gateway: &Gateway, pki: &TestPki, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(gateway.addr).await.unwrap();
    connector(pki, alpn)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn peer_common_name(stream: &TlsStream<TcpStream>) -> String {
    let (_, connection) = stream.get_ref();
    let cert = &connection.peer_certificates().unwrap()[0];
    // The test leaves carry their common name in plain ASCII; find it in the DER.
    let der = cert.as_ref();
    for name in ["leaf-one", "leaf-two"] {
        if der
            .windows(name.len())
            .any(|window| window == name.as_bytes())
        {
            return name.to_owned();
        }
    }
    "unknown".to_owned()
}

async fn tls_gateway(pki: &TestPki, upstream: &EchoUpstream) -> Gateway {
    Gateway::start(Setup {
        tls: Some(pki.leaf("leaf-one")),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_and_http11_over_tls() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let gateway = tls_gateway(&pki, &upstream).await;

    let stream = tls_connect(&gateway, &pki, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("https://localhost/hello")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);

    let stream = tls_connect(&gateway, &pki, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let seen = upstream.seen();
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
}

/// A minimal ClientHello record offering `version` and `suites`, with the extensions a
/// TLS 1.2 server needs to pick an ECDHE suite.
fn client_hello(version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version);
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1
    extensions.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    // ec_point_formats: uncompressed
    extensions.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend_from_slice(&[
        0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
    ]);
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends a ClientHello and returns the first record's content type and, for an alert,
/// its description.
async fn first_record(gateway: &Gateway, hello: &[u8]) -> (u8, Option<u8>) {
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut head = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let description = (head[0] == 0x15).then_some(head[6]);
    (head[0], description)
}

const HANDSHAKE: u8 = 0x16;
const ALERT: u8 = 0x15;
const PROTOCOL_VERSION: u8 = 70;
const HANDSHAKE_FAILURE: u8 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_tls11_and_non_aead_suites() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let gateway = tls_gateway(&pki, &upstream).await;
    // Control: the same hand-built hello with TLS 1.2 and an ECDHE-ECDSA-AES-GCM suite
    // gets a ServerHello, so the refusals below are about version and suites only.
    let (kind, _) = first_record(&gateway, &client_hello([3, 3], &[0xc02b])).await;
    assert_eq!(kind, HANDSHAKE);
    // TLS 1.1 (with suites TLS 1.1 could use).
    let (kind, alert) =
        first_record(&gateway, &client_hello([3, 2], &[0xc009, 0xc013, 0x002f])).await;
    assert_eq!((kind, alert), (ALERT, Some(PROTOCOL_VERSION)));
    // TLS 1.2 offering only CBC (non-AEAD) and static-RSA suites.
    let cbc_only = [
        0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc027, 0x002f, 0x0035, 0x003c, 0x009c,
    ];
    let (kind, alert) = first_record(&gateway, &client_hello([3, 3], &cbc_only)).await;
    assert_eq!((kind, alert), (ALERT, Some(HANDSHAKE_FAILURE)));
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_without_dropping_connections() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let gateway = tls_gateway(&pki, &upstream).await;

    let open = tls_connect(&gateway, &pki, &[b"http/1.1"]).await;
    assert_eq!(peer_common_name(&open), "leaf-one");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(connection);
    let first = sender
        .send_request(
            Request::get("/one")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    first.into_body().collect().await.unwrap();

    // A broken certificate file is refused and the old certificate keeps serving.
    std::fs::write(gateway.dir.path().join("cert.pem"), "not a certificate").unwrap();
    gateway.signal("HUP");
    let (cert, key) = pki.leaf("leaf-two");
    let mut reloaded = false;
    for attempt in 0..100 {
        if attempt == 20 {
            std::fs::write(gateway.dir.path().join("key.pem"), &key).unwrap();
            std::fs::write(gateway.dir.path().join("cert.pem"), &cert).unwrap();
            gateway.signal("HUP");
        }
        let probe = tls_connect(&gateway, &pki, &[b"http/1.1"]).await;
        match peer_common_name(&probe).as_str() {
            "leaf-two" => {
                reloaded = true;
                break;
            }
            name => assert_eq!(
                name, "leaf-one",
                "a failed reload must keep the old certificate"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reloaded, "new certificate never served");

    // The connection opened before the reload still works.
    let second = sender
        .send_request(
            Request::get("/two")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
}

/// An HTTPS upstream presenting `leaf` (cert PEM, key PEM): answers `secure` to
/// every request.
async fn https_upstream(leaf: (String, String)) -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use rustls::pki_types::PrivateKeyDer;

    let chain = vec![CertificateDer::from_pem_slice(leaf.0.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.1.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"secure")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// An `https://` upstream is verified against the route's CA file and by name: the
/// right CA and name pass, twice (the second on the kept connection); another CA, or a
/// name the certificate does not carry, is a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_route_ca() {
    use crate::support::{TempDir, raw_get};

    let trusted = TestPki::new();
    let other = TestPki::new();
    let dir = TempDir::new("upstream-ca");
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, &trusted.ca_pem).unwrap();
    let good = https_upstream(trusted.leaf("upstream")).await;
    let foreign = https_upstream(other.leaf("impostor")).await;
    let ca_line = format!("upstream_ca = \"{}\"", ca.display());
    let routes = [
        route(
            "good",
            "*",
            "/good",
            &format!("https://localhost:{}", good.port()),
            &ca_line,
        ),
        route(
            "foreign",
            "*",
            "/foreign",
            &format!("https://localhost:{}", foreign.port()),
            &ca_line,
        ),
        // The certificate names `localhost`, not the address.
        route("by-ip", "*", "/by-ip", &format!("https://{good}"), &ca_line),
    ]
    .concat();
    let gateway = Gateway::start(Setup {
        routes,
        ..Setup::default()
    })
    .await;
    for _ in 0..2 {
        let response = raw_get(gateway.addr, "app.test", "/good", &[]).await;
        assert_eq!((response.status, response.body.as_str()), (200, "secure"));
    }
    for path in ["/foreign", "/by-ip"] {
        let response = raw_get(gateway.addr, "app.test", path, &[]).await;
        assert_eq!(response.status, 502, "{path}: {}", response.body);
        assert!(
            response.body.contains("upstream_unavailable"),
            "{}",
            response.body
        );
    }
}
