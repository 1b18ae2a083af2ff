//! One connection to an upstream (plain TCP or TLS) and how it is opened.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How much a read asks for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The byte stream of one upstream connection.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection and what it has read but not yet handed on.
pub(super) struct Conn {
    pub(super) stream: Stream,
    pub(super) read_buf: BytesMut,
    /// When it last finished an exchange (or was opened).
    pub(super) used: Instant,
    /// The serving thread whose reactor the socket is registered with
    /// ([`crate::net::workers::current`] when it was opened).
    pub(super) home: usize,
}

impl Conn {
    /// Reads what is there into `read_buf`; `Ok(0)` means the upstream closed.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 4 {
            self.read_buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.read_buf)
    }

    /// Whether a kept connection can take another request: an idle connection has
    /// nothing to read, so if it is readable the upstream has closed it (or sent bytes
    /// nobody asked for). The check uses the readiness the reactor already has and
    /// costs a system call only when that says "readable".
    pub(super) fn is_reusable(&mut self) -> bool {
        if !self.read_buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.tcp().poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                // Readiness can be left over from the last read; a read tells.
                let mut probe = [0_u8; 1];
                let mut probe = ReadBuf::new(&mut probe);
                Pin::new(&mut self.stream)
                    .poll_read(&mut cx, &mut probe)
                    .is_pending()
            }
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where a route's connections go and how they are secured.
pub(super) struct Connector {
    /// The host to resolve (an IPv6 literal without its brackets).
    host: String,
    port: u16,
    /// For `https://`: the client configuration and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl Connector {
    /// `tls` is `Some` for an `https://` upstream; `host` may be a bracketed IPv6 literal.
    pub(super) fn new(
        host: &str,
        port: u16,
        tls: Option<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Option<Connector> {
        let host = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let tls = match tls {
            Some(mut config) => {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(host.clone()).ok()?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            None => None,
        };
        Some(Connector {
            host,
            port,
            tls,
            connect_timeout,
        })
    }

    /// Opens a new connection (TCP, then TLS for `https://`).
    pub(super) async fn connect(&self, now: Instant) -> Result<Conn, String> {
        let connecting = TcpStream::connect((self.host.as_str(), self.port));
        let tcp = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Err(_) => return Err("connect timed out".into()),
            Ok(Err(err)) => return Err(format!("connect: {err}")),
            Ok(Ok(tcp)) => tcp,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "set_nodelay on an upstream connection failed");
        }
        let stream = match &self.tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                let handshake = connector.connect(name.clone(), tcp);
                match tokio::time::timeout(self.connect_timeout, handshake).await {
                    Err(_) => return Err("TLS handshake timed out".into()),
                    Ok(Err(err)) => return Err(format!("TLS handshake: {err}")),
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                }
            }
        };
        Ok(Conn {
            stream,
            read_buf: BytesMut::new(),
            used: now,
            home: crate::net::workers::current(),
        })
    }
}
