//! MQTT over WebSocket (the seed's port 8884, for browser clients): an HTTP/1.1 server that
//! only upgrades to WebSocket (subprotocol `mqtt`) and hands the WebSocket transport to the
//! same MQTT service as the TLS listener. Plain HTTP requests get 404. Every ntex HTTP/WS type
//! stays in this file.
//!
//! A browser sends `Origin` with its upgrade, and a page of any site may open a WebSocket to
//! any address: an upgrade whose `Origin` is neither this listener's own (same scheme, host
//! and port as its `Host`) nor one of `[mqtt] wss_allowed_origins` is refused with 403 before
//! any MQTT byte (issue 19, finding 12). An upgrade without `Origin` is a non-browser client
//! (devices, Paho) and goes on to the usual certificate rules.

use ntex::http::{self, HttpService, Request, Response, error::DispatchError, h1};
use ntex::io::{Filter, Io, IoBoxed, Layer};
use ntex::ws;
use ntex::{PipelineBinding, Service};
use std::io;
use std::sync::Arc;

/// Whether an upgrade with `origin` (its `Origin` header) to a listener reached as `host`
/// (its `Host` header) may go on: no `Origin` (not a browser), the listener's own origin, or
/// one of `allowed` (`https://host[:port]`, compared without case and trailing `/`).
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let own = host.map(|host| format!("https://{}", host.trim().to_ascii_lowercase()));
    own.as_deref() == Some(origin.as_str())
        || allowed
            .iter()
            .any(|a| a.trim().trim_end_matches('/').eq_ignore_ascii_case(&origin))
}

/// The HTTP side: answers 404 to anything but a WebSocket upgrade, refuses a foreign
/// `Origin` (403), then runs `mqtt` on it.
pub fn http_upgrade<F: Filter>(
    mqtt: PipelineBinding<IoBoxed, (), io::Error>,
    allowed_origins: Arc<Vec<String>>,
) -> impl Service<(), Io<F>, Res = (), Error = DispatchError> {
    HttpService::new(async |_| {
        Ok::<_, io::Error>(Response::NotFound().body("MQTT over WebSocket only"))
    })
    .h1_control(async move |msg: h1::Control<_, _>| {
        let ack = match msg {
            h1::Control::Upgrade(ctl) => {
                let (ack, io, req, codec) = ctl.handle();
                let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
                if !origin_allowed(
                    header(http::header::ORIGIN),
                    header(http::header::HOST),
                    &allowed_origins,
                ) {
                    tracing::info!(
                        event = "mqtt.wss_origin_refused",
                        message = "MQTT over WebSocket refused: foreign Origin.",
                        reason = "origin_not_allowed"
                    );
                    let res = Response::Forbidden().build().drop_body();
                    io.send(
                        h1::Message::Item((res, http::body::BodySize::Empty)),
                        &codec,
                    )
                    .await?;
                    let _ = io.shutdown().await;
                    return Ok(ack);
                }
                let io = upgrade(io, req, codec).await?;
                mqtt.call(io.boxed()).await?;
                ack
            }
            _ => msg.ack(),
        };
        Ok::<_, io::Error>(ack)
    })
}

/// Completes the WebSocket handshake (echoing the `mqtt` subprotocol browsers ask for) and
/// switches the connection to WebSocket framing.
async fn upgrade<F: Filter>(
    io: Io<F>,
    req: Request,
    codec: h1::Codec,
) -> Result<Io<Layer<ws::WsTransport, F>>, io::Error> {
    let mut res = ws::handshake(req.head()).map_err(io::Error::other)?;
    let wants_mqtt = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "mqtt"));
    if wants_mqtt {
        res.header(http::header::SEC_WEBSOCKET_PROTOCOL, "mqtt");
    }
    io.send(
        h1::Message::Item((res.build().drop_body(), http::body::BodySize::Empty)),
        &codec,
    )
    .await?;
    Ok(ws::WsTransport::create(io, ws::Codec::new()))
}

#[cfg(test)]
mod tests {
    use super::origin_allowed;

    #[test]
    fn only_no_origin_the_listeners_own_or_a_listed_one_is_allowed() {
        let allowed = vec!["https://ward.example:8501/".to_owned()];
        let host = Some("broker.example:8884");
        assert!(origin_allowed(None, host, &allowed));
        assert!(origin_allowed(
            Some("https://Broker.example:8884"),
            host,
            &allowed
        ));
        assert!(origin_allowed(
            Some("https://ward.example:8501"),
            host,
            &allowed
        ));
        for foreign in [
            "https://evil.example",
            "http://broker.example:8884",
            "https://broker.example:8884.evil.example",
            "null",
            "",
        ] {
            assert!(!origin_allowed(Some(foreign), host, &allowed), "{foreign}");
        }
        assert!(!origin_allowed(
            Some("https://broker.example:8884"),
            None,
            &[]
        ));
    }
}
