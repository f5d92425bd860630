//! [`Secret`]: a value that must never reach a log line, an error or a config dump (session
//! ids, CSRF tokens, webhook keys).
//!
//! Its `Debug`, `Display` and serialisation print `[redacted]`; the value itself is reached
//! only through [`Secret::expose`], so every use of it is a visible call in the code.

use std::fmt;

#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that needs it (a comparison, a signature, a cookie).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::new("hunter2-hunter2");
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            serde_json::to_string(&secret).expect("serialises"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("[redacted]"), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2-hunter2");
        let parsed: Secret = serde_json::from_str("\"abc\"").expect("deserialises");
        assert_eq!(parsed.expose(), "abc");
    }
}
