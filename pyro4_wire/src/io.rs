//! Reading and writing whole messages on an async stream.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::{FrameError, HEADER_LEN, Header, Message};

/// Largest reply a proxy reads: a name server's whole listing (10,000
/// names with their URIs, about 5 MB at most) fits.
pub const MAX_MESSAGE: usize = 8 << 20;
/// Largest request a daemon reads, as for tarpc: a call carries a name or a
/// short message, and a server holds one request per connection, so 256
/// connections hold at most 256 MiB.
pub const MAX_REQUEST: usize = 1 << 20;
/// How long the rest of a message may take once its first byte came, and
/// how long a peer may take to accept a message written to it: a peer that
/// stalls mid-message, either way, is cut off. Between messages there is no
/// limit: Python's proxies keep their connection for as long as they live
/// and do not reconnect if it is closed under them.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no message could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("a message was begun and not finished within {0:?}")]
    Stalled(Duration),
}

/// Reads one message of at most `limit` bytes; `None` when the peer closed
/// the connection between messages. Nothing past the header is read before
/// the header was checked, so a bad or oversized frame costs 24 bytes.
pub async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Message>, ReadError> {
    let mut frame = vec![0; HEADER_LEN];
    if reader.read(&mut frame[..1]).await? == 0 {
        return Ok(None);
    }
    let rest = async {
        reader.read_exact(&mut frame[1..]).await?;
        let header = Header::decode(&frame, limit)?;
        frame.resize(header.frame_len(), 0);
        reader.read_exact(&mut frame[HEADER_LEN..]).await?;
        Ok::<_, ReadError>(())
    };
    tokio::time::timeout(FRAME_TIMEOUT, rest)
        .await
        .map_err(|_| ReadError::Stalled(FRAME_TIMEOUT))??;
    Ok(Some(Message::decode(&frame, limit)?))
}

/// Writes `message` whole and flushes it, within [`FRAME_TIMEOUT`].
pub async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
) -> std::io::Result<()> {
    let write = async {
        writer.write_all(&message.encode()).await?;
        writer.flush().await
    };
    tokio::time::timeout(FRAME_TIMEOUT, write)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the peer took no bytes for {FRAME_TIMEOUT:?}"),
            )
        })?
}
