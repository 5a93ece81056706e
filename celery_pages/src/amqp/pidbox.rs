//! The exchanges of Celery's remote control ("the pidbox"), which the
//! worker's side ([`crate::worker::control`]) and the caller's broadcast
//! ([`crate::caller::control`]) both declare, as kombu's mailbox does.

use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::{AmqpContext, Result};

/// The fanout exchange commands are broadcast on.
pub const EXCHANGE: &str = "celery.pidbox";
/// The direct exchange replies go to.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";

/// Declares both exchanges (transient, as kombu declares them).
pub async fn declare_exchanges(channel: &Channel) -> Result<()> {
    for (name, kind) in [
        (EXCHANGE, ExchangeKind::Fanout),
        (REPLY_EXCHANGE, ExchangeKind::Direct),
    ] {
        channel
            .exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .doing("declaring the remote-control exchanges")?;
    }
    Ok(())
}
