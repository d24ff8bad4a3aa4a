//! Checks every request passes before routing, and the one rule every error
//! response follows: whatever answered it (a handler, the router, a body
//! limit, an extractor), a client gets `application/problem+json`.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::{Code, Problem};

/// Longest request target (path and query) served; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8192;

/// The media types a write endpoint reads. A browser can send `text/plain`,
/// form encodings and `multipart/form-data` to any site without asking
/// first, so refusing them makes a cross-site write impossible even where no
/// API key is required.
fn accepted_types(path: &str) -> &'static [&'static str] {
    match path {
        "/v1/plans" => &["application/toml", "application/json"],
        "/v1/advice" => &["text/csv", "application/json"],
        "/v1/esim/profiles" => &["text/csv"],
        // The console's forms; each carries the session's CSRF token, and
        // the session cookie is SameSite=Strict.
        path if path.starts_with("/console/") => &["application/x-www-form-urlencoded"],
        _ => &["application/json"],
    }
}

/// The media type of a `Content-Type` value, parameters dropped, lower case.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

pub async fn check(State(limits): State<crate::Limits>, request: Request, next: Next) -> Response {
    let target_bytes = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let body_sent = has_body(request.headers());
    if target_bytes > MAX_URI_BYTES {
        let problem = Problem::new(Code::UriTooLong, format!("the request target is {target_bytes} bytes; at most {MAX_URI_BYTES}"), None);
        return closing(problem.into_response(), body_sent);
    }
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if writes && body_sent {
        let accepted = accepted_types(request.uri().path());
        match media_type(request.headers()) {
            Some(media) if accepted.contains(&media.as_str()) => {}
            found => {
                let found = found.map_or("no Content-Type".to_string(), |m| format!("Content-Type {m}"));
                let detail = format!("{found}: send the body as {}", accepted.join(" or "));
                return closing(Problem::new(Code::UnsupportedMediaType, detail, Some("Content-Type".into())).into_response(), true);
            }
        }
    }
    // A body the handler leaves unread makes hyper close the connection
    // after the answer; the answer then says so, or a client would send its
    // next request on a connection that is about to go away.
    let read_to_end = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| axum::body::Body::new(TrackEnd { inner: body, read_to_end: read_to_end.clone() }));
    // A customer page's path holds its token: logs get the route only.
    let path = request.uri().path();
    let path = if path.starts_with("/my/") { "/my/{token}".to_string() } else { path.to_string() };
    let method = request.method().clone();
    let response = match tokio::time::timeout(limits.request_timeout, CatchPanic(Box::pin(next.run(request)))).await {
        Ok(Ok(response)) => as_problem(response).await,
        Ok(Err(panic)) => {
            let what = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("a panic");
            tracing::error!(%method, path = %path.escape_debug(), failure = %what.escape_debug(), "a handler panicked; answered 500");
            Problem::new(Code::Internal, "the server failed an internal check while handling this request; the failure is logged", None).into_response()
        }
        Err(_) => {
            let seconds = limits.request_timeout.as_secs();
            Problem::new(Code::RequestTimeout, format!("the request was not complete within {seconds} s (server.request_timeout_seconds)"), None)
                .into_response()
        }
    };
    closing(response, body_sent && !read_to_end.load(Ordering::Acquire))
}

/// The answer, saying `Connection: close` if `unread`: a request body left
/// unread means hyper closes the connection after this answer.
fn closing(mut response: Response, unread: bool) -> Response {
    if unread {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that notes when it has been read to its end.
struct TrackEnd {
    inner: axum::body::Body,
    read_to_end: Arc<AtomicBool>,
}

impl axum::body::HttpBody for TrackEnd {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        if let Poll::Ready(None) = polled {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            self.read_to_end.store(true, Ordering::Release);
        }
        end
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A handler's future whose panic becomes an `Err`, so that a bug answers
/// one request 500 (and is logged) instead of dropping the connection
/// without a word. The connection's task and every other request go on.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.get_mut().0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(context))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// An error response that is not yet problem details becomes one: the
/// router's 405, the body limit's 413, a path that is not UTF-8.
async fn as_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // Problem details already, or a page (a refused customer link answers
    // the visitor with a page in their language).
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json") || v.as_bytes().starts_with(b"text/html"));
    if is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    // These bodies come from axum's own rejections: short plain text.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            (Code::MethodNotAllowed, format!("this endpoint does not take that method; it takes {allow}"))
        }
        StatusCode::PAYLOAD_TOO_LARGE => (Code::BodyTooLarge, "the body is larger than the limit (limits.max_body_bytes)".to_string()),
        // Axum's path extractor: a segment that is not UTF-8.
        StatusCode::BAD_REQUEST if text.contains("UTF-8") || text.contains("utf-8") => (Code::InvalidPath, text),
        StatusCode::NOT_FOUND => (Code::NoSuchEndpoint, "no such endpoint".to_string()),
        status if status.is_server_error() => {
            tracing::error!(%status, body = %text, "an error answer without problem details");
            (Code::Unavailable, "the service is not available".to_string())
        }
        _ if text.is_empty() => (Code::BadRequest, status.canonical_reason().unwrap_or("error").to_string()),
        _ => (Code::BadRequest, text),
    };
    let mut problem = Problem::new(code, detail, None).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *problem.status_mut() = status;
    problem
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use axum::Router;
    use axum::routing::get;

    use super::*;

    async fn boom() -> &'static str {
        panic!("an internal check failed")
    }

    /// A handler that panics answers 500 `internal` as problem details, and
    /// the server goes on answering, on the same connection too.
    #[test]
    fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(axum::middleware::from_fn_with_state(crate::Limits::default(), check));
        runtime.spawn(async move { axum::serve(listener, app).await });
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut answer = |path: &str| {
            write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            let mut buffer = vec![0; 4096];
            let n = stream.read(&mut buffer).unwrap();
            String::from_utf8_lossy(&buffer[..n]).to_string()
        };
        let boom = answer("/boom");
        assert!(boom.starts_with("HTTP/1.1 500"), "{boom}");
        assert!(boom.contains("application/problem+json") && boom.contains("\"code\":\"internal\""), "{boom}");
        let fine = answer("/fine");
        assert!(fine.starts_with("HTTP/1.1 200") && fine.ends_with("fine"), "{fine}");
    }

    /// An answer to a request whose body the handler did not read says
    /// `Connection: close`, since hyper closes that connection; an answer
    /// to a request read to its end keeps the connection for the next one.
    #[test]
    fn an_unread_body_closes_the_connection_and_says_so() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/ignore", axum::routing::post(|| async { "ignored" }))
            .route("/read", axum::routing::post(|body: axum::body::Bytes| async move { format!("read {}", body.len()) }))
            .layer(axum::middleware::from_fn_with_state(crate::Limits::default(), check));
        runtime.spawn(async move { axum::serve(listener, app).await });
        let answer = |stream: &mut std::net::TcpStream, request: &str| {
            stream.write_all(request.as_bytes()).unwrap();
            let mut buffer = vec![0; 4096];
            let n = stream.read(&mut buffer).unwrap();
            String::from_utf8_lossy(&buffer[..n]).to_ascii_lowercase()
        };
        let head = |path: &str| format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        // The body is still on its way when the handler answers.
        let ignored = answer(&mut stream, &head("/ignore"));
        assert!(ignored.starts_with("http/1.1 200") && ignored.contains("connection: close"), "{ignored}");
        // Media type refused before any handler runs: the same.
        let refused = answer(&mut std::net::TcpStream::connect(address).unwrap(), &head("/read").replace("application/json", "text/plain"));
        assert!(refused.starts_with("http/1.1 415") && refused.contains("connection: close"), "{refused}");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        for _ in 0..2 {
            let read = answer(&mut stream, &format!("{}{{}}", head("/read")));
            assert!(read.starts_with("http/1.1 200") && !read.contains("connection: close") && read.ends_with("read 2"), "{read}");
        }
    }
}
