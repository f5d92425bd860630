//! MQTT over WebSocket (the seed's port 8884, for browser clients): an HTTP/1.1 server that
//! only upgrades to WebSocket (subprotocol `mqtt`) and hands the WebSocket transport to the
//! same MQTT service as the TLS listener. Plain HTTP requests get 404. Every ntex HTTP/WS type
//! stays in this file.

use ntex::http::{self, HttpService, Request, Response, error::DispatchError, h1};
use ntex::io::{Filter, Io, IoBoxed, Layer};
use ntex::ws;
use ntex::{PipelineBinding, Service};
use std::io;

/// The HTTP side: answers 404 to anything but a WebSocket upgrade, then runs `mqtt` on it.
pub fn http_upgrade<F: Filter>(
    mqtt: PipelineBinding<IoBoxed, (), io::Error>,
) -> impl Service<(), Io<F>, Res = (), Error = DispatchError> {
    HttpService::new(async |_| {
        Ok::<_, io::Error>(Response::NotFound().body("MQTT over WebSocket only"))
    })
    .h1_control(async move |msg: h1::Control<_, _>| {
        let ack = match msg {
            h1::Control::Upgrade(ctl) => {
                let (ack, io, req, codec) = ctl.handle();
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
