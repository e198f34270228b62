//! Both providers against a local server speaking their wire formats.

use std::time::{Duration, Instant};

use rehearse_llm::fake::{FakeReply, FakeServer};
use rehearse_llm::{Anthropic, LlmError, Message, OpenAi, Provider, Request, RetryPolicy};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(20),
        max_wait: Duration::from_secs(2),
    }
}

fn request(json: bool) -> Request {
    Request {
        system: Some("You write shell scripts.".into()),
        messages: vec![Message::user("install nginx")],
        max_tokens: 512,
        json,
    }
}

fn anthropic(server: &FakeServer) -> Anthropic {
    Anthropic::new(
        server.url(),
        "claude-sonnet-4-20250514",
        "sk-test",
        Duration::from_secs(5),
        fast_retry(),
    )
    .unwrap()
}

fn openai(server: &FakeServer, timeout: Duration) -> OpenAi {
    OpenAi::new(
        &format!("{}/v1/", server.url()),
        "gpt-4o-mini",
        Some("sk-openai"),
        timeout,
        fast_retry(),
    )
    .unwrap()
}

#[test]
fn anthropic_request_and_answer_follow_the_messages_api() {
    let server = FakeServer::start(vec![FakeReply::anthropic("apt-get install -y nginx")]);
    let response = anthropic(&server).complete(&request(true)).unwrap();
    assert_eq!(response.text, "apt-get install -y nginx");
    assert_eq!(response.usage.input_tokens, 100);
    assert_eq!(response.usage.output_tokens, 20);
    assert_eq!(response.attempts, 1);
    // 100 in at $3/M + 20 out at $15/M.
    let cost = response.cost_usd.unwrap();
    assert!((cost - 0.0006).abs() < 1e-12, "{cost}");

    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("sk-test"));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.body["model"], "claude-sonnet-4-20250514");
    assert_eq!(sent.body["max_tokens"], 512);
    assert_eq!(sent.body["messages"][0]["role"], "user");
    assert_eq!(sent.body["messages"][0]["content"], "install nginx");
    let system = sent.body["system"].as_str().unwrap();
    assert!(system.starts_with("You write shell scripts."));
    assert!(
        system.contains("JSON object"),
        "json mode asks in the system prompt"
    );
}

#[test]
fn openai_request_and_answer_follow_chat_completions() {
    let server = FakeServer::start(vec![FakeReply::openai("{\"done\": true}")]);
    let response = openai(&server, Duration::from_secs(5))
        .complete(&request(true))
        .unwrap();
    assert_eq!(response.text, "{\"done\": true}");
    assert_eq!(response.usage.total(), 120);
    assert_eq!(response.model, "fake-model");
    assert_eq!(response.cost_usd, None, "unknown model, no guessed price");

    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-openai"));
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][1]["content"], "install nginx");
    assert_eq!(sent.body["response_format"]["type"], "json_object");
}

#[test]
fn rate_limit_then_success_is_retried_honouring_retry_after() {
    let server = FakeServer::start(vec![
        FakeReply::raw(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        )
        .header("retry-after", "0.3"),
        FakeReply::raw(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error"}}"#,
        ),
        FakeReply::anthropic("ok"),
    ]);
    let started = Instant::now();
    let response = anthropic(&server).complete(&request(false)).unwrap();
    assert_eq!(response.text, "ok");
    assert_eq!(response.attempts, 3);
    assert_eq!(server.requests().len(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "retry-after was not honoured"
    );
}

#[test]
fn client_errors_are_not_retried() {
    let server = FakeServer::start(vec![
        FakeReply::raw(401, r#"{"error":{"message":"invalid x-api-key"}}"#),
        FakeReply::anthropic("never reached"),
    ]);
    let error = anthropic(&server).complete(&request(false)).unwrap_err();
    assert!(
        matches!(error, LlmError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("invalid x-api-key"), "{error}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn persistent_server_errors_give_up_after_the_budget() {
    let server = FakeServer::start(vec![FakeReply::raw(503, "down"); 5]);
    let error = openai(&server, Duration::from_secs(5))
        .complete(&request(false))
        .unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Unavailable {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn garbage_bodies_are_reported_as_bad_json() {
    let server = FakeServer::start(vec![
        FakeReply::raw(200, "<html>502 Bad Gateway</html>"),
        FakeReply::raw(200, r#"{"choices": []}"#),
    ]);
    let client = openai(&server, Duration::from_secs(5));
    let error = client.complete(&request(false)).unwrap_err();
    assert!(matches!(error, LlmError::BadJson { .. }), "{error}");
    assert!(error.to_string().contains("<html>"), "{error}");
    let error = client.complete(&request(false)).unwrap_err();
    assert!(error.to_string().contains("no message content"), "{error}");
}

#[test]
fn slow_answers_time_out() {
    let server = FakeServer::start(vec![
        FakeReply::openai("late").delayed(Duration::from_secs(3))
    ]);
    let error = openai(&server, Duration::from_millis(500))
        .complete(&request(false))
        .unwrap_err();
    assert!(matches!(error, LlmError::Timeout { .. }), "{error}");
}

#[test]
fn unreachable_server_is_named() {
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = OpenAi::new(
        &format!("http://127.0.0.1:{port}"),
        "m",
        None,
        Duration::from_secs(2),
        fast_retry(),
    )
    .unwrap();
    let error = client.complete(&request(false)).unwrap_err();
    assert!(matches!(error, LlmError::Unreachable { .. }), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}
