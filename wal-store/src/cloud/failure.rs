//! What a failure of the store says, and what it means for the records after it.
//!
//! object_store's errors carry the whole exchange: method, URL and query, retry counts,
//! and the server's entire XML or JSON body (some 600 characters for a missing bucket,
//! with request ids and timestamps). A walpipe message is one line that an operator reads
//! in PostgreSQL's log, so [`Failure::of`] keeps what says what went wrong: the HTTP
//! status and the service's own error `Code` and `Message` (S3 and Azure
//! `<Error><Code>…</Code><Message>…</Message></Error>`, GCS `{"error": {"message": …}}`),
//! or, when no answer came, why not (connection refused, DNS, timeout), in at most
//! [`MAX_CAUSE`] characters. Nothing else of the body is kept (S3's `<StringToSign>`,
//! Azure's `<AuthenticationErrorDetail>`), nor any URL query, where an Azure SAS rides.
//!
//! A failure is also the store's or the object's. The store's — no answer, no
//! connection, credentials refused, bucket or container missing, server errors that
//! outlived the retries — will be the next record's too, so [`Breaker`] fails every
//! record not yet started at once, as `temporary`, without asking the store again:
//! otherwise a stopped server costs one `--timeout` per `--jobs` records (13 minutes for
//! 100 queued WAL with the defaults) before the run exits 75. An object's failure (a key
//! not found, a precondition) says nothing about the next record, nor do the conflicts
//! and corrupt files the caller finds: they never trip it.

use std::error::Error;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

// A build without any provider has no HTTP client, and so no HTTP errors.
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
use object_store::client::{HttpError, HttpErrorKind};
use wal_core::WalError;
use wal_core::error::Result;

use super::location::parse_key;

/// The longest cause a message carries, in characters.
pub const MAX_CAUSE: usize = 200;

/// Error codes of a 404 that mean the bucket (S3) or container (Azure) is missing, not
/// an object. GCS says `notFound` for both: there only a listing's 404 trips the breaker.
const MISSING_BUCKET_CODES: [&str; 2] = ["NoSuchBucket", "ContainerNotFound"];

/// Whose failure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The store's: the next record would fail the same way.
    Store,
    /// This object's alone.
    Object,
}

/// A store failure, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Whose it is.
    pub scope: Scope,
    /// The HTTP status, when the store answered.
    pub status: Option<u16>,
    /// The cause, one short line without markup, URL query or secret.
    pub text: String,
}

impl Failure {
    /// Sums up `err`.
    #[must_use]
    pub fn of(err: &object_store::Error) -> Failure {
        let denied = matches!(
            err,
            object_store::Error::Unauthenticated { .. }
                | object_store::Error::PermissionDenied { .. }
        );
        let chain = chain(err);
        let retries = retries(&chain);
        #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
        if let Some(http) = chain.iter().find_map(|e| e.downcast_ref::<HttpError>()) {
            // No answer: reqwest's innermost cause says why (refused, DNS, timed out).
            let why = match http.kind() {
                HttpErrorKind::Connect => "cannot connect",
                HttpErrorKind::Timeout => "request timed out",
                HttpErrorKind::Request | HttpErrorKind::Interrupted => "connection lost",
                HttpErrorKind::Decode => "unreadable answer",
                _ => "request failed",
            };
            let mut text = why.to_string();
            if let Some(last) = chain
                .last()
                .filter(|e| e.downcast_ref::<HttpError>().is_none())
            {
                let _ = write!(text, ": {}", without_queries(&last.to_string()));
            }
            return Failure {
                scope: Scope::Store,
                status: None,
                text: cap(&(text + &retries)),
            };
        }
        if let Some(answer) = chain
            .iter()
            .rev()
            .find_map(|e| Answer::parse(&e.to_string()))
        {
            return Failure {
                scope: if denied || answer.is_store_failure() {
                    Scope::Store
                } else {
                    Scope::Object
                },
                status: answer.status,
                text: cap(&(answer.summary() + &retries)),
            };
        }
        Failure {
            scope: if denied { Scope::Store } else { Scope::Object },
            status: None,
            text: cap(&without_queries(&super::one_line(err))),
        }
    }
}

/// `err` and its causes, outermost first.
fn chain<'e>(err: &'e (dyn Error + 'static)) -> Vec<&'e (dyn Error + 'static)> {
    let mut chain = vec![err];
    let mut next = err.source();
    while let Some(cause) = next {
        chain.push(cause);
        next = cause.source();
    }
    chain
}

/// `, after N retries` when object_store retried (its retry error says so).
fn retries(chain: &[&(dyn Error + 'static)]) -> String {
    chain
        .iter()
        .find_map(|e| {
            let text = e.to_string();
            let (_, rest) = text.split_once(", after ")?;
            let (count, _) = rest.split_once(" retries")?;
            count
                .parse::<u32>()
                .ok()
                .map(|n| format!(", after {n} retries"))
        })
        .unwrap_or_default()
}

/// An HTTP answer that was not a success.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: Option<u16>,
    reason: String,
    code: Option<String>,
    message: Option<String>,
}

impl Answer {
    /// Reads object_store's text for a failed request: `Server returned non-2xx status
    /// code: 404 Not Found: <body>`, or `Server returned error response: <body>` (an
    /// error in a 200 answer, as S3's CompleteMultipartUpload may give).
    fn parse(text: &str) -> Option<Answer> {
        const STATUS: &str = "Server returned non-2xx status code: ";
        const RESPONSE: &str = "Server returned error response: ";
        let (status, reason, body) = if let Some(at) = text.find(STATUS) {
            let rest = &text[at + STATUS.len()..];
            let status = rest.get(..3).and_then(|s| s.parse::<u16>().ok())?;
            let (reason, body) = rest[3..].split_once(": ").unwrap_or((&rest[3..], ""));
            (Some(status), reason.trim().to_string(), body)
        } else {
            let at = text.find(RESPONSE)?;
            (None, String::new(), &text[at + RESPONSE.len()..])
        };
        let (code, message) = service_error(body);
        Some(Answer {
            status,
            reason,
            code,
            message,
        })
    }

    /// Whether the next request would fail the same way: credentials refused, throttled,
    /// a server error after the retries, or a 404 that names the bucket or container.
    fn is_store_failure(&self) -> bool {
        match self.status {
            Some(401 | 403 | 408 | 429 | 500..=599) => true,
            Some(404) => self
                .code
                .as_deref()
                .is_some_and(|code| MISSING_BUCKET_CODES.contains(&code)),
            _ => false,
        }
    }

    /// `HTTP 404 NoSuchBucket: Bucket not found: b`, `HTTP 503 Service Unavailable`.
    fn summary(&self) -> String {
        let mut text = match self.status {
            Some(status) => format!("HTTP {status}"),
            None => "error answer".to_string(),
        };
        match (&self.code, self.reason.is_empty()) {
            (Some(code), _) => {
                let _ = write!(text, " {code}");
            }
            (None, false) => {
                let _ = write!(text, " {}", self.reason);
            }
            (None, true) => {}
        }
        if let Some(message) = &self.message {
            let _ = write!(text, ": {message}");
        }
        text
    }
}

/// The service's error code and message in an error body: XML `<Code>`/`<Message>` (S3,
/// Azure), JSON `{"error": {...}}` (GCS, Azure's JSON APIs), or a short plain text.
fn service_error(body: &str) -> (Option<String>, Option<String>) {
    let body = body.trim();
    if body.starts_with('<') {
        return (xml_field(body, "Code"), xml_field(body, "Message"));
    }
    if body.starts_with('{') {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
            return (None, None);
        };
        let error = &json["error"];
        let text = |value: &serde_json::Value| value.as_str().map(clean);
        let code = text(&error["code"])
            .or_else(|| text(&error["errors"][0]["reason"]))
            .or_else(|| text(&error["status"]));
        return (code, text(&error["message"]));
    }
    let line = clean(body.lines().next().unwrap_or(""));
    (None, (!line.is_empty()).then_some(line))
}

/// The text of the first `<name>…</name>`, entities decoded.
fn xml_field(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&close)?;
    let text = clean(&unescape(&body[start..end]));
    (!text.is_empty()).then_some(text)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// One line, without Azure's `RequestId:… Time:…` tail, markup or URL queries.
fn clean(text: &str) -> String {
    let text = text.split("RequestId:").next().unwrap_or(text);
    let text: String = text.chars().filter(|c| !matches!(c, '<' | '>')).collect();
    without_queries(&text)
}

/// Words joined by single spaces, each URL without its query (an Azure SAS is one) and
/// without the `user:password@` a proxy or endpoint URL may carry.
fn without_queries(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            let Some(scheme_end) = word.find("://") else {
                return word.to_string();
            };
            let word = word.find('?').map_or(word, |at| &word[..at]);
            let (scheme, rest) = word.split_at(scheme_end + 3);
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}{}", &rest[at + 1..]),
                None => word.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` cut to [`MAX_CAUSE`] characters, with `…` where it was cut.
fn cap(text: &str) -> String {
    match text.char_indices().nth(MAX_CAUSE - 1) {
        Some((at, _)) => format!("{}…", text[..at].trim_end()),
        None => text.to_string(),
    }
}

/// Trips on the store's first failure; from then on every record fails at once.
#[derive(Debug, Default)]
pub struct Breaker {
    tripped: Mutex<Option<Trip>>,
}

/// The failure that tripped the breaker.
#[derive(Debug, Clone)]
struct Trip {
    /// The WAL whose record failed (or the place, when no WAL was involved).
    subject: String,
    /// Why, as [`Failure::text`] says.
    cause: String,
}

impl Breaker {
    /// Records a failure of the store at `place` (a key or URL, its WAL named by its last
    /// component); the first one is kept.
    pub fn trip(&self, place: &str, cause: &str) {
        let mut tripped = self.tripped.lock().unwrap_or_else(PoisonError::into_inner);
        if tripped.is_none() {
            *tripped = Some(Trip {
                subject: parse_key(place).map_or_else(|| place.to_string(), |k| k.name.to_string()),
                cause: cause.to_string(),
            });
        }
    }

    /// `Ok` while the store has not failed; then a `temporary` error for `what`, which
    /// is not to be tried.
    pub fn check(&self, what: &str) -> Result<()> {
        let tripped = self.tripped.lock().unwrap_or_else(PoisonError::into_inner);
        match &*tripped {
            None => Ok(()),
            Some(trip) => Err(WalError::Temporary(format!(
                "{what}: not tried: the store failed for an earlier WAL, {} ({})",
                trip.subject, trip.cause
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    use std::io;

    /// An error with a text and an optional cause, as object_store's layers are.
    #[derive(Debug)]
    struct Layer(String, Option<Box<dyn Error + Send + Sync>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    /// object_store's error for a request answered `status_line` with `body`.
    fn answered(status_line: &str, body: &str) -> object_store::Error {
        let request = format!("Server returned non-2xx status code: {status_line}: {body}");
        let retry = format!(
            "Error performing GET http://127.0.0.1:1/b?list-type=2&sig=SECRET in 3ms -  {request}"
        );
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Layer(
                format!("Error performing list request: {retry}"),
                Some(Box::new(Layer(retry, Some(Box::new(Layer(request, None)))))),
            )),
        }
    }

    const NO_SUCH_BUCKET: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchBucket</Code><Message>Bucket not found: nosuchbucket</Message><Resource>/nosuchbucket</Resource><Region>garage</Region></Error>"#;
    const AZURE_AUTH: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<Error>\n  <Code>AuthenticationFailed</Code>\n  <Message>Server failed to authenticate the request.\nRequestId:0ed81257\nTime:2026-11-22T08:47:08.326Z</Message>\n  <AuthenticationErrorDetail>The MAC signature found in the HTTP request 'c2VjcmV0' is not the same as any computed signature.</AuthenticationErrorDetail>\n</Error>";

    #[test]
    fn an_answer_is_its_status_code_and_message() {
        let failure = Failure::of(&answered("404 Not Found", NO_SUCH_BUCKET));
        assert_eq!(
            failure,
            Failure {
                scope: Scope::Store,
                status: Some(404),
                text: "HTTP 404 NoSuchBucket: Bucket not found: nosuchbucket".into(),
            }
        );
        let failure = Failure::of(&answered("403 Forbidden", AZURE_AUTH));
        assert_eq!(
            failure.text,
            "HTTP 403 AuthenticationFailed: Server failed to authenticate the request."
        );
        assert_eq!(failure.scope, Scope::Store);
        let failure = Failure::of(&answered("503 Service Unavailable", ""));
        assert_eq!(failure.text, "HTTP 503 Service Unavailable");
        assert_eq!(failure.scope, Scope::Store);
        let gcs = r#"{"error": {"code": 404, "message": "No such object: b/k", "errors": [{"reason": "notFound"}]}}"#;
        let failure = Failure::of(&answered("404 Not Found", gcs));
        assert_eq!(failure.text, "HTTP 404 notFound: No such object: b/k");
        assert_eq!(failure.scope, Scope::Object, "an object's 404");
        let failure = Failure::of(&answered("400 Bad Request", "<html><body>no</body></html>"));
        assert_eq!(failure.text, "HTTP 400 Bad Request");
        assert_eq!(failure.scope, Scope::Object);
    }

    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    #[test]
    fn no_answer_is_why_and_always_the_stores() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Layer(
                "Error performing GET http://h/b?sig=SECRET in 1s, after 4 retries, max_retries: 4, retry_timeout: 60s  - HTTP error: x".into(),
                Some(Box::new(HttpError::new(HttpErrorKind::Connect, refused))),
            )),
        };
        let failure = Failure::of(&err);
        assert_eq!(failure.scope, Scope::Store);
        assert_eq!(
            failure.text,
            "cannot connect: Connection refused, after 4 retries"
        );
    }

    #[test]
    fn causes_are_capped_and_carry_no_markup_or_query() {
        let long = format!(
            "<Error><Code>X</Code><Message>see http://h/p?sig=SECRET {}</Message></Error>",
            "word ".repeat(100)
        );
        let text = Failure::of(&answered("400 Bad Request", &long)).text;
        assert_eq!(text.chars().count(), MAX_CAUSE);
        assert!(text.ends_with('…'));
        assert!(!text.contains("SECRET") && !text.contains('<'), "{text}");
        let unknown = object_store::Error::Generic {
            store: "S3",
            source: Box::new(Layer("odd: https://h/p?sig=SECRET".into(), None)),
        };
        let failure = Failure::of(&unknown);
        assert_eq!(failure.scope, Scope::Object);
        assert!(!failure.text.contains("SECRET"), "{}", failure.text);
        assert_eq!(
            without_queries("via http://user:SECRET@proxy:3128/x?k=SECRET and s3://b/k"),
            "via http://proxy:3128/x and s3://b/k"
        );
    }

    #[test]
    fn the_breaker_names_the_first_failed_wal() {
        let breaker = Breaker::default();
        assert!(
            breaker
                .check("s3://b/p/pg/wals/0000000100000000/000000010000000000000002")
                .is_ok()
        );
        breaker.trip(
            "p/pg/wals/0000000100000000/000000010000000000000001.zst",
            "HTTP 403 AccessDenied",
        );
        breaker.trip(
            "p/pg/wals/0000000100000000/000000010000000000000003",
            "later",
        );
        let err = breaker
            .check("s3://b/p/pg/wals/0000000100000000/000000010000000000000002")
            .unwrap_err();
        assert_eq!(err.kind(), wal_core::ErrorKind::Temporary);
        assert_eq!(
            err.to_string(),
            "s3://b/p/pg/wals/0000000100000000/000000010000000000000002: not tried: the store \
             failed for an earlier WAL, 000000010000000000000001 (HTTP 403 AccessDenied)"
        );
    }
}
