//! The `[mqtt] broker` setting: an external broker's address as the operator writes it
//! (`mqtts://host:port`, `mqtt://…`, or the seed's bare `MQTT_BROKER` host).
//!
//! Plain data and its parser, so `config` can validate the setting without knowing the
//! client that uses it (`ingest::external`).

/// Where the external broker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// Parses `mqtts://host[:port]`, `mqtt://host[:port]`, or a bare `host[:port]` (the seed's
    /// MQTT_BROKER), which uses TLS when `bare_tls`. Default ports: 8883 with TLS, 1883 without.
    pub fn parse(text: &str, bare_tls: bool) -> Result<BrokerUrl, String> {
        let (tls, rest) = match text.split_once("://") {
            Some(("mqtts" | "ssl" | "tls", rest)) => (true, rest),
            Some(("mqtt" | "tcp", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!(
                    "unsupported scheme {scheme:?}; use mqtts:// (or mqtt:// for plaintext)"
                ));
            }
            None => (bare_tls, text),
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains(['/', '@', '?', '#']) {
            return Err("give only a host and a port (no path, user or query)".to_owned());
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed '[' in an IPv6 address".to_owned())?;
            let port = match after.strip_prefix(':') {
                Some(port) => parse_port(port)?,
                None if after.is_empty() => default_port,
                None => return Err("unexpected text after the IPv6 address".to_owned()),
            };
            (host.to_owned(), port)
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host.to_owned(), parse_port(port)?),
                None => (rest.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err("no host name".to_owned());
        }
        Ok(BrokerUrl { tls, host, port })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("{text:?} is not a port number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, bare_tls: bool, expected: Result<(&str, bool, u16), &str>) {
        let got = BrokerUrl::parse(text, bare_tls);
        match expected {
            Ok((host, tls, port)) => assert_eq!(
                got,
                Ok(BrokerUrl {
                    tls,
                    host: host.to_owned(),
                    port
                }),
                "{text}"
            ),
            Err(fragment) => {
                let err = got.expect_err(text);
                assert!(err.contains(fragment), "{text}: {err}");
            }
        }
    }

    #[test]
    fn broker_urls_and_bare_hosts() {
        check(
            "mqtts://broker.example:8884",
            true,
            Ok(("broker.example", true, 8884)),
        );
        check(
            "mqtts://broker.example",
            false,
            Ok(("broker.example", true, 8883)),
        );
        check("mqtt://10.0.0.2", true, Ok(("10.0.0.2", false, 1883)));
        check("broker", true, Ok(("broker", true, 8883)));
        check("broker", false, Ok(("broker", false, 1883)));
        check("broker:1884", false, Ok(("broker", false, 1884)));
        check("mqtts://[::1]:8883/", true, Ok(("::1", true, 8883)));
        check("http://broker", true, Err("unsupported scheme"));
        check("mqtts://user@broker", true, Err("only a host"));
        check("mqtts://broker:0", true, Err("not a port"));
        check("mqtts://broker:x", true, Err("not a port"));
        check("mqtts://", true, Err("no host"));
        assert_eq!(
            BrokerUrl::parse("[::1]", true).unwrap().to_string(),
            "mqtts://[::1]:8883"
        );
    }
}
