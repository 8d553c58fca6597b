//! A TLS connection of an agent listener: OpenSSL's stream until its records are handed over
//! (`ward_tls::handoff`), then [`RecordStream`]: the same connection, its records protected by
//! `ward_tls::record` straight over the TCP socket, OpenSSL's SSL object freed.
//!
//! Why: a held push connection carries a record every few minutes, and OpenSSL keeps about
//! 22 KiB for it meanwhile. Handed over, an idle connection keeps its keys and sequence
//! numbers (a few hundred bytes with the socket): no buffer, since one is allocated only
//! while bytes are in flight. A connection is handed over when it is kept for a next request
//! (`checkin_conn`), or when its first request for hyper keeps it (`conn::serve_agent_or_http`:
//! keep-alive requests then cost ward's record layer, not OpenSSL's: about 5% less CPU per
//! request), and only when the hand-over is exact; otherwise OpenSSL keeps it. A pull check-in
//! or any other request that closes its connection (one record each way) stays with OpenSSL:
//! the hand-over's key derivation would cost more than it saves.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;
use ward_tls::handoff::{self, Refusal};
use ward_tls::record::{self, Received, Records, MAX_PLAINTEXT};

use crate::io::Buffered;

/// How much one read from the socket may take (several small records, or most of a large one).
const READ_CHUNK: usize = 4096;
/// The most plaintext one write seals (four full records).
const WRITE_CHUNK: usize = 4 * MAX_PLAINTEXT;

/// A TLS connection on an agent listener.
pub enum TlsConn {
    /// OpenSSL's; `settled` once a hand-over was refused for good (a CBC suite, TLS 1.0), so
    /// it is not tried again on each later request.
    OpenSsl {
        stream: SslStream<Buffered<TcpStream>>,
        settled: bool,
    },
    /// Boxed: the keys are larger than OpenSSL's stream handle.
    HandedOver(Box<RecordStream>),
}

impl TlsConn {
    /// A connection that OpenSSL has just handshaken.
    pub fn new(stream: SslStream<Buffered<TcpStream>>) -> TlsConn {
        TlsConn::OpenSsl {
            stream,
            settled: false,
        }
    }

    /// Hands the connection's records over from OpenSSL, between two requests; the SSL
    /// object is freed. `None` when there is nothing (more) to try: already handed over, or
    /// refused for good before.
    pub fn hand_over(&mut self) -> Option<Result<(), Refusal>> {
        let TlsConn::OpenSsl { stream, settled } = self else {
            return None;
        };
        if *settled {
            return None;
        }
        let records = match handoff::take(stream.ssl()) {
            Ok(records) => records,
            Err(refusal) => {
                *settled = refusal.is_final();
                return Some(Err(refusal));
            }
        };
        let Some((read_ahead, tcp)) = stream.get_mut().detach() else {
            return Some(Err(Refusal::NotEstablished));
        };
        // Dropping the OpenSSL stream frees the SSL object; it writes nothing (no shutdown),
        // and its socket is already out.
        *self = TlsConn::HandedOver(Box::new(RecordStream::new(records, read_ahead, tcp)));
        Some(Ok(()))
    }
}

/// A stream whose TLS records can be handed over from OpenSSL ([`TlsConn`]); plain TCP has
/// none to hand.
pub trait HandOver {
    /// `None` when there is nothing to hand over (no TLS, or nothing more to try); otherwise
    /// whether it was.
    fn hand_over(&mut self) -> Option<Result<(), Refusal>>;
}

/// Tries to hand `stream`'s records over (see [`HandOver`]), counting the outcome on
/// /metrics (`ward_tls_handovers_total`) and saying at debug why OpenSSL keeps a connection.
pub fn hand_over_counted(stream: &mut impl HandOver, metrics: &crate::metrics::Operations) {
    let Some(result) = stream.hand_over() else {
        return;
    };
    metrics.handover(result.is_ok());
    if let Err(refusal) = result {
        tracing::debug!(
            reason = refusal.reason(),
            "the connection stays with OpenSSL"
        );
    }
}

impl HandOver for TcpStream {
    fn hand_over(&mut self) -> Option<Result<(), Refusal>> {
        None
    }
}

#[cfg(test)]
impl HandOver for tokio::io::DuplexStream {
    fn hand_over(&mut self) -> Option<Result<(), Refusal>> {
        None
    }
}

impl HandOver for TlsConn {
    fn hand_over(&mut self) -> Option<Result<(), Refusal>> {
        TlsConn::hand_over(self)
    }
}

/// An established TLS connection's records over its TCP socket, without OpenSSL's SSL
/// object.
pub struct RecordStream {
    records: Records,
    tcp: TcpStream,
    /// Bytes read from the socket: the record at the front (opened in place, once whole),
    /// and what follows it. Freed whenever it is empty.
    incoming: Vec<u8>,
    /// The opened record's plaintext not yet read, and where that record ends.
    plain: Range<usize>,
    record_end: usize,
    /// Sealed records not yet written, from `written` on. Freed once written.
    outgoing: Vec<u8>,
    written: usize,
    /// The peer's close_notify came (or the socket's end).
    read_closed: bool,
    /// Our close_notify is sealed.
    close_sealed: bool,
}

fn invalid(error: record::RecordError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

impl RecordStream {
    /// `read_ahead`: bytes already read from `tcp` past the last record OpenSSL opened.
    pub fn new(records: Records, read_ahead: Vec<u8>, tcp: TcpStream) -> RecordStream {
        RecordStream {
            records,
            tcp,
            incoming: read_ahead,
            plain: 0..0,
            record_end: 0,
            outgoing: Vec::new(),
            written: 0,
            read_closed: false,
            close_sealed: false,
        }
    }

    /// Drops the front record once its plaintext is read.
    fn consume_record(&mut self) {
        self.incoming.drain(..self.record_end);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        self.plain = 0..0;
        self.record_end = 0;
    }

    /// Writes out every sealed record.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.outgoing = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Reads more from the socket into `incoming`; `false` at the socket's end. An idle
    /// connection waits for readiness with no buffer.
    ///
    /// The read itself is tokio's `poll_read`, not `try_read`: a read that does not fill the
    /// buffer tells tokio the socket is drained, so the next request's wait costs no `recv`
    /// that only answers `EAGAIN` (one in two of a keep-alive connection's reads before).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        ready!(self.tcp.poll_read_ready(cx))?;
        let start = self.incoming.len();
        let wanted = match record::record_len(self.records.version(), &self.incoming) {
            Ok(Some(len)) => len.saturating_sub(start),
            Ok(None) => record::HEADER_LEN - start,
            Err(error) => return Poll::Ready(Err(invalid(error))),
        };
        self.incoming.resize(start + wanted.max(READ_CHUNK), 0);
        let mut unfilled = ReadBuf::new(&mut self.incoming[start..]);
        let read = Pin::new(&mut self.tcp).poll_read(cx, &mut unfilled);
        let n = unfilled.filled().len();
        if let Poll::Ready(Ok(())) = read {
            self.incoming.truncate(start + n);
            return Poll::Ready(Ok(n > 0));
        }
        self.incoming.truncate(start);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        match read {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Pending,
        }
    }
}

impl AsyncRead for RecordStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(out.remaining());
                out.put_slice(&this.incoming[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                if this.plain.is_empty() {
                    this.consume_record();
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            let version = this.records.version();
            match record::record_len(version, &this.incoming) {
                Err(error) => return Poll::Ready(Err(invalid(error))),
                Ok(Some(len)) if this.incoming.len() >= len => {
                    let received = this
                        .records
                        .receive(&mut this.incoming[..len], &mut this.outgoing)
                        .map_err(invalid)?;
                    this.record_end = len;
                    match received {
                        Received::Data(range) if !range.is_empty() => this.plain = range,
                        Received::Data(_) | Received::Nothing => this.consume_record(),
                        Received::Closed => {
                            this.read_closed = true;
                            this.consume_record();
                        }
                    }
                    if this.written < this.outgoing.len() {
                        // A key update's answer: out now if the socket takes it, else with
                        // the next write (before any data, as RFC 8446 asks).
                        if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
                            return Poll::Ready(Err(error));
                        }
                    }
                    continue;
                }
                Ok(_) => {}
            }
            if !ready!(this.poll_fill(cx))? {
                // The socket's end without a close_notify: the end, unless it cut a record.
                this.read_closed = true;
                if !this.incoming.is_empty() {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
    }
}

impl AsyncWrite for RecordStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.close_sealed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        ready!(this.poll_drain(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(WRITE_CHUNK);
        this.records
            .seal_data(&buf[..n], &mut this.outgoing)
            .map_err(invalid)?;
        // Sealed is accepted: what the socket does not take now goes with the next write or
        // flush.
        if let Poll::Ready(Err(error)) = this.poll_drain(cx) {
            return Poll::Ready(Err(error));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sealed {
            this.records
                .seal_close_notify(&mut this.outgoing)
                .map_err(invalid)?;
            this.close_sealed = true;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::OpenSsl { stream, .. } => Pin::new(stream).poll_read(cx, out),
            TlsConn::HandedOver(stream) => Pin::new(&mut **stream).poll_read(cx, out),
        }
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsConn::OpenSsl { stream, .. } => Pin::new(stream).poll_write(cx, buf),
            TlsConn::HandedOver(stream) => Pin::new(&mut **stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::OpenSsl { stream, .. } => Pin::new(stream).poll_flush(cx),
            TlsConn::HandedOver(stream) => Pin::new(&mut **stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::OpenSsl { stream, .. } => Pin::new(stream).poll_shutdown(cx),
            TlsConn::HandedOver(stream) => Pin::new(&mut **stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
