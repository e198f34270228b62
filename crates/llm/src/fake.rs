//! A scripted model behind a local HTTP server, speaking either wire format, for
//! tests: it answers requests with the replies it was given, in order, and
//! records what it was sent.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

/// One scripted HTTP answer.
#[derive(Clone, Debug)]
pub struct FakeReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to exercise timeouts).
    pub delay: Duration,
}

impl FakeReply {
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        FakeReply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// A Messages API answer with `text` as its only block.
    pub fn anthropic(text: &str) -> Self {
        FakeReply::raw(
            200,
            json!({
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-20250514",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 100, "output_tokens": 20}
            })
            .to_string(),
        )
    }

    /// A Chat Completions answer with `text` as the first choice.
    pub fn openai(text: &str) -> Self {
        FakeReply::raw(
            200,
            json!({
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": "fake-model",
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop"
                }],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
            })
            .to_string(),
        )
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The server; stops when dropped.
pub struct FakeServer {
    url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Listens on 127.0.0.1 at a free port. Once the script is used up, every
    /// further request gets a 400 saying so (a 4xx, so clients do not retry).
    pub fn start(script: Vec<FakeReply>) -> FakeServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a local port"));
        let url = format!("http://{}", server.server_addr());
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let server = Arc::clone(&server);
            let recorded = Arc::clone(&recorded);
            std::thread::spawn(move || {
                let mut script = script.into_iter();
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    recorded.lock().unwrap().push(Recorded {
                        method: request.method().to_string(),
                        path: request.url().to_string(),
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect(),
                        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                    });
                    let reply = script.next().unwrap_or_else(|| {
                        FakeReply::raw(
                            400,
                            r#"{"error":{"message":"the fake model has no more scripted replies"}}"#,
                        )
                    });
                    std::thread::sleep(reply.delay);
                    let mut response =
                        tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
                    for (name, value) in &reply.headers {
                        if let Ok(h) =
                            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
                        {
                            response.add_header(h);
                        }
                    }
                    let _ = request.respond(response);
                }
            })
        };
        FakeServer {
            url,
            recorded,
            server,
            thread: Some(thread),
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
