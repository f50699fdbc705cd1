//! Pending streaming requests, keyed by single-use random tokens, as the kubelet's request
//! cache: a token is valid for one minute and for one connection, and at most 1000 wait at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;

use crate::StreamingError;

/// How long a URL stays usable (the kubelet's `cacheTTL`).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Requests waiting at once (the kubelet's `maxInFlight`).
pub const MAX_IN_FLIGHT: usize = 1000;

/// What a token stands for: the validated CRI request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Attach {
        container_id: String,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    PortForward {
        sandbox_id: String,
    },
}

impl Request {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Exec { .. } => "exec",
            Request::Attach { .. } => "attach",
            Request::PortForward { .. } => "portforward",
        }
    }
}

pub struct RequestCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Request)>>,
}

impl Default for RequestCache {
    fn default() -> Self {
        RequestCache::new(TOKEN_TTL)
    }
}

impl RequestCache {
    pub fn new(ttl: Duration) -> RequestCache {
        RequestCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Store `req` and return its token (8 random bytes, unpadded URL-safe base64).
    pub fn insert(&self, req: Request) -> Result<String, StreamingError> {
        self.insert_at(req, Instant::now())
    }

    fn insert_at(&self, req: Request, now: Instant) -> Result<String, StreamingError> {
        let mut entries = self.entries.lock().expect("request cache");
        entries.retain(|_, (expires, _)| *expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(StreamingError::TooManyRequests { max: MAX_IN_FLIGHT });
        }
        loop {
            let mut raw = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut raw);
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            if !entries.contains_key(&token) {
                entries.insert(token.clone(), (now + self.ttl, req));
                return Ok(token);
            }
        }
    }

    /// Take the request of `token` if it exists and has not expired; a token works once.
    pub fn consume(&self, token: &str) -> Option<Request> {
        self.consume_at(token, Instant::now())
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<Request> {
        let mut entries = self.entries.lock().expect("request cache");
        let (expires, req) = entries.remove(token)?;
        (expires > now).then_some(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> Request {
        Request::PortForward {
            sandbox_id: "p".into(),
        }
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let cache = RequestCache::default();
        let t0 = Instant::now();
        let a = cache.insert_at(pf(), t0).unwrap();
        assert_eq!(a.len(), 11, "8 bytes of base64 without padding");
        assert_eq!(cache.consume_at(&a, t0), Some(pf()));
        assert_eq!(cache.consume_at(&a, t0), None, "second use");
        let b = cache.insert_at(pf(), t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            cache.consume_at(&b, t0 + TOKEN_TTL + Duration::from_millis(1)),
            None
        );
        assert_eq!(cache.consume_at("nope", t0), None);
    }

    #[test]
    fn at_most_1000_in_flight_but_expired_ones_make_room() {
        let cache = RequestCache::default();
        let t0 = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            cache.insert_at(pf(), t0).unwrap();
        }
        assert!(matches!(
            cache.insert_at(pf(), t0),
            Err(StreamingError::TooManyRequests { max: 1000 })
        ));
        cache.insert_at(pf(), t0 + TOKEN_TTL).unwrap();
    }
}
