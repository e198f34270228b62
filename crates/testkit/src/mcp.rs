//! One MCP tool call with the real MCP client (rmcp over streamable HTTP),
//! for tests of `rehearse serve`.

use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::Value;

/// Calls `tool` with `args` on the server at `base` (e.g.
/// `http://127.0.0.1:8787`) with the bearer `token`: (is_error, structured
/// content). Runs on the calling thread, so sockets are opened in the
/// calling thread's network namespace.
pub fn call(base: &str, token: &str, tool: &str, args: Value) -> (bool, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config =
            StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(token);
        let client = ()
            .serve(StreamableHttpClientTransport::from_config(config))
            .await
            .unwrap_or_else(|e| panic!("connecting to {base}/mcp: {e}"));
        let Value::Object(args) = args else {
            panic!("arguments are an object")
        };
        let result = client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("calling {tool} on {base}: {e}"));
        let _ = client.cancel().await;
        (
            result.is_error.unwrap_or(false),
            result.structured_content.unwrap_or_default(),
        )
    })
}
